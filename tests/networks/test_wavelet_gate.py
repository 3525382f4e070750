"""Wavelet gating: shapes, gate range, the gated-sum identity, gradient flow."""

import pytest
import torch

from scale_space_diffusion.networks.wavelet_gate import WaveletGate, WGDown, WGUp
from scale_space_diffusion.networks.wavelets import dwt2


def fix_gates(gate: WaveletGate, value: float) -> None:
    """Make g == value exactly: zero last weight, bias = logit(value) (large for value 1)."""
    last = gate.mlp[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(100.0 if value == 1 else torch.logit(torch.tensor(value)).item())


def test_gate_shape_and_range():
    gate = WaveletGate(8, bands=4, reduction=4)
    torch.nn.init.normal_(gate.mlp[-1].weight)
    g = gate(torch.randn(3, 8, 5, 5))
    assert g.shape == (3, 4, 8, 1, 1)
    assert (g > 0).all() and (g < 1).all()


def test_gate_starts_at_half():
    g = WaveletGate(16)(torch.randn(2, 16, 4, 4))
    assert torch.equal(g, torch.full_like(g, 0.5))


def test_gate_pools_other_width():
    g = WaveletGate(6, in_channels=24)(torch.randn(2, 24, 3, 3))
    assert g.shape == (2, 4, 6, 1, 1)


def test_wgdown_sum_with_unit_gates_is_band_sum():
    down = WGDown(5)
    fix_gates(down.gate, 1.0)
    x = torch.randn(2, 5, 8, 6)
    torch.testing.assert_close(down(x), sum(dwt2(x)))


def test_wgdown_at_init_is_strided_subsample():
    x = torch.randn(2, 4, 8, 8)
    torch.testing.assert_close(WGDown(4)(x), x[..., ::2, ::2])


@pytest.mark.parametrize("mode", ["sum", "concat"])
@pytest.mark.parametrize("out_channels", [None, 12])
def test_wgdown_shape(mode, out_channels):
    y = WGDown(6, out_channels, mode=mode)(torch.randn(2, 6, 8, 10))
    assert y.shape == (2, out_channels or 6, 4, 5)


def test_wgdown_bad_mode():
    with pytest.raises(ValueError):
        WGDown(4, mode="max")


@pytest.mark.parametrize("out_channels", [None, 3])
def test_wgup_shape(out_channels):
    y = WGUp(6, out_channels)(torch.randn(2, 6, 4, 5))
    assert y.shape == (2, out_channels or 6, 8, 10)


def test_wgup_is_idwt_of_gated_conv():
    up = WGUp(4, 2)
    fix_gates(up.gate, 1.0)
    x = torch.randn(1, 4, 3, 3)
    h = up.conv(x)  # (1, 8, 3, 3)
    back = dwt2(up(x))  # DWT inverts the IDWT exactly
    torch.testing.assert_close(torch.cat(back, dim=1), h, atol=1e-5, rtol=0)


@pytest.mark.parametrize("module", [WGDown(4), WGDown(4, 8, mode="concat"), WGUp(4, 2)])
def test_gradients_reach_gate_mlp(module):
    torch.nn.init.normal_(module.gate.mlp[-1].weight, std=0.1)  # leave the zero-init point
    module(torch.randn(2, 4, 8, 8)).square().sum().backward()
    for name, p in module.gate.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
