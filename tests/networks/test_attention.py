import pytest
import torch
import torch.nn.functional as F

from scale_space_diffusion.networks import attention as attention_module
from scale_space_diffusion.networks.attention import MATMUL_MAX_TOKENS, Attention, attention
from test_unet import perturbed  # shifts every weight, so the zero-initialised projection hides nothing


class SdpaSpy:
    """Records the dtype of q at each F.scaled_dot_product_attention call."""

    def __init__(self, monkeypatch):
        self.dtypes, self._sdpa = [], F.scaled_dot_product_attention
        monkeypatch.setattr(attention_module.F, "scaled_dot_product_attention", self)

    def __call__(self, q, k, v, *args, **kwargs):
        self.dtypes.append(q.dtype)
        return self._sdpa(q, k, v, *args, **kwargs)


@pytest.mark.parametrize("tokens", [16, MATMUL_MAX_TOKENS, 256])
def test_attention_is_softmax_qk_v_in_float64(tokens):
    """Both kernels (explicit matmuls up to MATMUL_MAX_TOKENS, SDPA beyond) against the definition in float64."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, tokens, 16, generator=g) for _ in range(3))
    want = torch.softmax(q.double() @ k.double().transpose(-1, -2) / 4, -1) @ v.double()
    torch.testing.assert_close(attention(q, k, v).double(), want, rtol=1e-5, atol=1e-5)


def test_short_sequences_skip_sdpa_and_long_ones_use_it(monkeypatch):
    spy = SdpaSpy(monkeypatch)
    attn = perturbed(Attention(32, num_heads=2))
    attn(torch.randn(2, 32, 8, 8))  # 64 tokens: explicit matmuls
    assert spy.dtypes == []
    attn(torch.randn(2, 32, 16, 16))  # 256 tokens: SDPA (CPU flash)
    assert spy.dtypes == [torch.float32]


@pytest.mark.parametrize("side", [8, 16])  # the explicit kernel, and SDPA
def test_cpu_autocast_attention_trains_in_fp32_and_samples_in_bf16(side, monkeypatch):
    """Under CPU bf16 autocast, attention's training pass runs in fp32 (CPU SDPA's bf16 backward is slower) and its
    no-grad pass in bf16; either way the block's gradients and outputs match the fp32 ones to bf16 tolerance."""
    attn = perturbed(Attention(32, num_heads=2))
    x = torch.randn(2, 32, side, side, requires_grad=True)
    ref = attn(x)
    (gx_ref,) = torch.autograd.grad(ref.square().sum(), x)
    seen = []
    real = attention_module.attention
    monkeypatch.setattr(attention_module, "attention", lambda q, k, v: seen.append(q.dtype) or real(q, k, v))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attn(x)
        (gx,) = torch.autograd.grad(out.float().square().sum(), x)
        with torch.no_grad():
            sampled = attn(x)
    assert seen == [torch.float32, torch.bfloat16]
    torch.testing.assert_close(out.float(), ref, rtol=0.05, atol=0.05)
    torch.testing.assert_close(sampled.float(), ref, rtol=0.05, atol=0.05)
    torch.testing.assert_close(gx, gx_ref, rtol=0.05, atol=0.1)


def test_attention_checks_heads_divide_channels():
    with pytest.raises(ValueError, match="not divisible by num_heads=3"):
        Attention(32, num_heads=3)
