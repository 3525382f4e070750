"""Multi-head self-attention over pixels (ADM's AttentionBlock), with the CPU layout picked by token count."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import group_norm, zero_init
from .linear import linear

# At most this many tokens (8 x 8 pixels), CPU attention runs channel-major, as ADM's QKVAttentionLegacy: batched
# matmuls over (channels, tokens) blocks of the 1x1 projections' output, which BLAS reads transposed in place, so
# nothing is copied. On short sequences the copies and SDPA's blocking cost more than the math: for the block at 64
# tokens and 128 channels, timed alone on a 2-core AVX2 EPYC, the channel-major form took 0.6x the time of the
# token-major one at batch 8 without gradients and 0.75x at batch 32 with them. From 256 tokens on it is SDPA,
# which never builds the (tokens x tokens) matrix.
MATMUL_MAX_TOKENS = 64


def qkv_attention(qkv: Tensor, num_heads: int) -> Tensor:
    """softmax(q^T k / sqrt(ch)) per head, channel-major: qkv (B, heads * 3 * ch, N) -> (B, heads * ch, N)."""
    B, width, N = qkv.shape
    ch = width // (3 * num_heads)
    q, k, v = qkv.reshape(B * num_heads, 3 * ch, N).split(ch, dim=1)  # (B * heads, ch, N) views
    scores = torch.bmm(q.transpose(1, 2), k * ch**-0.5)  # (B * heads, N, N)
    weights = scores.softmax(-1, dtype=torch.float32).to(v.dtype)
    return torch.bmm(v, weights.transpose(1, 2)).reshape(B, num_heads * ch, N)


def project(h: Tensor, conv: nn.Conv1d) -> Tensor:
    """A 1x1 Conv1d on channel-major (B, C_in, N) -> (B, C_out, N), as one batched matmul."""
    weight = conv.weight.squeeze(-1)
    return torch.baddbmm(conv.bias[:, None], weight.expand(len(h), -1, -1), h)


def _core(fn, *tensors: Tensor) -> Tensor:
    """fn(*tensors); in fp32 for a CPU bf16-autocast training pass: CPU SDPA's bf16 backward was measured slower
    than fp32's (1.05x at 256 tokens, 2.3x at 64, batch 32, AVX512-BF16). Forward alone is as fast in bf16 and stays
    there. The channel-major kernel keeps the same rule; its bf16 backward is not measured separately."""
    if tensors[0].device.type == "cpu" and torch.is_autocast_enabled("cpu") and torch.is_grad_enabled():
        with torch.autocast("cpu", enabled=False):
            return fn(*(t.float() for t in tensors))
    return fn(*tensors)


class Attention(nn.Module):
    """Multi-head self-attention over pixels, (B, C, H, W) -> (B, C, H, W), as a residual block.

    qkv channels are split heads-first, (heads, 3, C/heads), as ADM's QKVAttentionLegacy, so
    released guided-diffusion weights load unchanged.
    """

    def __init__(self, channels: int, num_heads: int = 4):
        super().__init__()
        if channels % num_heads:
            raise ValueError(
                f"attention channels {channels} not divisible by num_heads={num_heads}; use a num_heads that divides "
                "model_channels * channel_mult at every attention resolution and the middle"
            )
        self.num_heads = num_heads
        self.norm = group_norm(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj = zero_init(nn.Conv1d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        if x.device.type == "cpu" and H * W <= MATMUL_MAX_TOKENS:
            qkv = project(self.norm(x).reshape(B, C, H * W), self.qkv)  # (B, 3C, HW)
            h = _core(functools.partial(qkv_attention, num_heads=self.num_heads), qkv)  # (B, C, HW)
            return x + project(h, self.proj).reshape(B, C, H, W)
        # Token-major: q, k, v are views of one (B, HW, 3C) matmul with unit stride along the head dim, which is
        # what SDPA's fused kernels need (CPU flash; CUDA flash / memory-efficient). Transposed (B, heads, HW, ch)
        # views of the channel-major conv output have stride HW there and fall back to the math kernel, 1.3-1.8x
        # slower on CPU. Same 1x1-conv weights, used as (out, in) matrices, so checkpoints are unchanged.
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C); a free view for channels_last x
        qkv = linear(tokens, self.qkv.weight.squeeze(-1), self.qkv.bias)  # (B, HW, 3C), channels (heads, 3, ch)
        q, k, v = qkv.view(B, H * W, self.num_heads, 3, C // self.num_heads).permute(3, 0, 2, 1, 4)
        h = _core(F.scaled_dot_product_attention, q, k, v)  # (B, heads, HW, ch)
        h = linear(h.transpose(1, 2).reshape(B, H * W, C), self.proj.weight.squeeze(-1), self.proj.bias)
        return x + h.transpose(1, 2).reshape(B, C, H, W)
