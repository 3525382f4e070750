"""Spectrum-aware distillation: the weight omega and the two distillation terms."""

import pytest
import torch

from scale_space_diffusion.diffusion.spectral_loss import SpectralDistillationLoss, spectral_weight


@pytest.mark.parametrize("size", [(16, 16), (8, 8), (4, 6)])
def test_weight_finite_mean_one(size):
    x0 = torch.rand(3, 3, 16, 16) * 2 - 1
    w = spectral_weight(x0, size)
    assert w.shape == (3, 1, *size)
    assert torch.isfinite(w).all() and (w > 0).all()
    torch.testing.assert_close(w.mean(dim=(-2, -1)), torch.ones(3, 1))


def test_weight_constant_image_uses_eps_floor():
    x0 = torch.full((2, 3, 8, 8), 0.7)  # only the DC bin is non-zero
    w = spectral_weight(x0, (8, 8), alpha=-1.0, eps=1e-3)
    assert torch.isfinite(w).all()
    torch.testing.assert_close(w.mean(dim=(-2, -1)), torch.ones(2, 1))
    # all non-DC bins are floored to eps, so they share one weight; DC is down-weighted
    ac = w[..., 1:, :].flatten(), w[..., 0, 1:].flatten()
    assert torch.allclose(torch.cat(ac), ac[0][0])
    assert (w[..., 0, 0] < ac[0][0]).all()


def test_weight_inverse_amplitude():
    # alpha = -1: omega is proportional to 1 / |FFT2(x0)| where that exceeds eps
    x0 = torch.randn(1, 1, 8, 8)
    amp = torch.fft.fft2(x0, norm="ortho").abs()
    w = spectral_weight(x0, (8, 8), alpha=-1.0, eps=1e-8)
    ratio = w * amp
    torch.testing.assert_close(ratio, ratio.mean().expand_as(ratio), rtol=1e-4, atol=0)


def feats(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 8, 16, 16, generator=g), torch.randn(2, 16, 8, 8, generator=g)]


def test_zero_when_student_equals_teacher():
    x0 = torch.rand(2, 3, 32, 32) * 2 - 1
    t = feats()
    out = SpectralDistillationLoss()([f.clone() for f in t], t, x0)
    assert out["spatial"] == 0 and out["freq"] == 0 and out["total"] == 0


def test_total_is_weighted_sum():
    x0 = torch.rand(2, 3, 32, 32) * 2 - 1
    out = SpectralDistillationLoss(0.3, 0.05)(feats(1), feats(2), x0)
    torch.testing.assert_close(out["total"], 0.3 * out["spatial"] + 0.05 * out["freq"])
    assert out["spatial"] > 0 and out["freq"] > 0


def test_flat_weight_gives_parseval():
    # x0 = 0 floors every bin to eps, so omega = 1 and L_freq = L_spatial (ortho FFT)
    out = SpectralDistillationLoss()(feats(1), feats(2), torch.zeros(2, 3, 32, 32))
    torch.testing.assert_close(out["freq"], out["spatial"])


def test_gradient_reaches_student_not_teacher():
    x0 = torch.rand(2, 3, 32, 32) * 2 - 1
    s = [f.requires_grad_() for f in feats(1)]
    t = [f.requires_grad_() for f in feats(2)]
    SpectralDistillationLoss()(s, t, x0)["total"].backward()
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in s)
    assert all(f.grad is None for f in t)


def test_mismatched_pairs_raise():
    loss = SpectralDistillationLoss()
    x0 = torch.zeros(2, 3, 32, 32)
    with pytest.raises(ValueError):
        loss(feats()[:1], feats(), x0)
    with pytest.raises(ValueError):
        loss(feats()[::-1], feats(), x0)
