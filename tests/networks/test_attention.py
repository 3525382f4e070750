import pytest
import torch
import torch.nn.functional as F

from scale_space_diffusion.networks import attention as attention_module
from scale_space_diffusion.networks.attention import MATMUL_MAX_TOKENS, Attention, qkv_attention
from test_unet import perturbed  # shifts every weight, so the zero-initialised projection hides nothing


class SdpaSpy:
    """Records the dtype of q at each F.scaled_dot_product_attention call."""

    def __init__(self, monkeypatch):
        self.dtypes, self._sdpa = [], F.scaled_dot_product_attention
        monkeypatch.setattr(attention_module.F, "scaled_dot_product_attention", self)

    def __call__(self, q, k, v, *args, **kwargs):
        self.dtypes.append(q.dtype)
        return self._sdpa(q, k, v, *args, **kwargs)


@pytest.mark.parametrize("tokens", [16, MATMUL_MAX_TOKENS])
def test_channel_major_qkv_attention_is_softmax_qk_v_in_float64(tokens):
    """qkv (B, heads * 3 * ch, N), channels split (heads, 3, ch), against the definition per head in float64."""
    B, heads, ch = 2, 3, 16
    qkv = torch.randn(B, heads * 3 * ch, tokens, generator=torch.Generator().manual_seed(0))
    q, k, v = qkv.double().view(B, heads, 3, ch, tokens).unbind(2)  # (B, heads, ch, N)
    want = torch.softmax(q.transpose(-1, -2) @ k / ch**0.5, -1) @ v.transpose(-1, -2)  # (B, heads, N, ch)
    got = qkv_attention(qkv, heads)
    assert got.shape == (B, heads * ch, tokens)
    torch.testing.assert_close(got.double(), want.transpose(-1, -2).reshape(B, heads * ch, tokens), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("grad", [False, True])
def test_the_channel_major_block_is_the_token_major_sdpa_one(grad, monkeypatch):
    """At 64 tokens the CPU block runs channel-major; forced token-major (SDPA), outputs and gradients agree."""
    attn = perturbed(Attention(32, num_heads=2))
    x = torch.randn(3, 32, 8, 8, requires_grad=True)
    outs = []
    for most in (MATMUL_MAX_TOKENS, 0):
        monkeypatch.setattr(attention_module, "MATMUL_MAX_TOKENS", most)
        out = attn(x)
        outs.append((out, *torch.autograd.grad(out.square().sum(), [x, *attn.parameters()])) if grad else (out,))
    for cm, tm in zip(*outs):
        torch.testing.assert_close(cm, tm, rtol=1e-5, atol=1e-5)


def test_short_sequences_skip_sdpa_and_long_ones_use_it(monkeypatch):
    spy = SdpaSpy(monkeypatch)
    attn = perturbed(Attention(32, num_heads=2))
    attn(torch.randn(2, 32, 8, 8))  # 64 tokens: channel-major matmuls
    assert spy.dtypes == []
    attn(torch.randn(2, 32, 16, 16))  # 256 tokens: SDPA (CPU flash)
    assert spy.dtypes == [torch.float32]


@pytest.mark.parametrize("side", [8, 16])  # channel-major matmuls, and SDPA
def test_cpu_autocast_attention_trains_in_fp32_and_samples_in_bf16(side, monkeypatch):
    """Under CPU bf16 autocast, attention's training pass runs in fp32 (CPU SDPA's bf16 backward is slower) and its
    no-grad pass in bf16; either way the block's gradients and outputs match the fp32 ones to bf16 tolerance."""
    attn = perturbed(Attention(32, num_heads=2))
    x = torch.randn(2, 32, side, side, requires_grad=True)
    ref = attn(x)
    (gx_ref,) = torch.autograd.grad(ref.square().sum(), x)
    spy = SdpaSpy(monkeypatch)
    real = attention_module.qkv_attention
    monkeypatch.setattr(attention_module, "qkv_attention", lambda qkv, num_heads: spy.dtypes.append(qkv.dtype) or real(qkv, num_heads))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attn(x)
        (gx,) = torch.autograd.grad(out.float().square().sum(), x)
        with torch.no_grad():
            sampled = attn(x)
    assert spy.dtypes == [torch.float32, torch.bfloat16]
    torch.testing.assert_close(out.float(), ref, rtol=0.05, atol=0.05)
    torch.testing.assert_close(sampled.float(), ref, rtol=0.05, atol=0.05)
    torch.testing.assert_close(gx, gx_ref, rtol=0.05, atol=0.1)


def test_attention_checks_heads_divide_channels():
    with pytest.raises(ValueError, match="not divisible by num_heads=3"):
        Attention(32, num_heads=3)
