"""Multi-head self-attention over pixels (ADM's AttentionBlock), with the CPU kernel picked by token count."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import group_norm, zero_init
from .linear import linear

# At most this many tokens (8 x 8 pixels), CPU attention runs as two matmuls and a softmax instead of SDPA's flash
# kernel, whose blocking does not pay off on short sequences: at 64 tokens, heads of 16 or 32 channels, batch 8 or
# 32, the explicit form takes 0.55-0.7x the flash kernel's forward time and 0.63-0.72x its forward + backward. At
# 256 tokens the two are within 20 % either way (explicit ahead with 16-channel heads, flash with 32), and flash
# never builds the (tokens x tokens) matrix, so from there on it is SDPA.
MATMUL_MAX_TOKENS = 64


def attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """softmax(q k^T / sqrt(d)) v for (B, heads, N, d) q, k, v -> (B, heads, N, d)."""
    if q.device.type != "cpu" or q.shape[-2] > MATMUL_MAX_TOKENS:
        return F.scaled_dot_product_attention(q, k, v)
    scores = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-1, -2))  # (B, heads, N, N)
    return torch.matmul(scores.softmax(-1, dtype=torch.float32).to(v.dtype), v)


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
        # Token-major: q, k, v are views of one (B, HW, 3C) matmul with unit stride along the head dim, which is
        # what SDPA's fused kernels need (CPU flash; CUDA flash / memory-efficient). Transposed (B, heads, HW, ch)
        # views of the channel-major conv output have stride HW there and fall back to the math kernel, 1.3-1.8x
        # slower on CPU. Same 1x1-conv weights, used as (out, in) matrices, so checkpoints are unchanged.
        B, C, H, W = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C); a free view for channels_last x
        qkv = linear(tokens, self.qkv.weight.squeeze(-1), self.qkv.bias)  # (B, HW, 3C), channels (heads, 3, ch)
        q, k, v = qkv.view(B, H * W, self.num_heads, 3, C // self.num_heads).permute(3, 0, 2, 1, 4)
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu") and torch.is_grad_enabled():
            # CPU SDPA's bf16 backward is slower than fp32's (1.05x at 256 tokens, 2.3x at 64, batch 32), so under
            # autocast the training pass runs it in fp32; forward alone is as fast in bf16 and stays there.
            with torch.autocast("cpu", enabled=False):
                h = attention(q.float(), k.float(), v.float())
        else:
            h = attention(q, k, v)  # (B, heads, HW, ch)
        h = linear(h.transpose(1, 2).reshape(B, H * W, C), self.proj.weight.squeeze(-1), self.proj.bias)
        return x + h.transpose(1, 2).reshape(B, C, H, W)
