"""Haar DWT: exact inverse, orthonormality, agreement with PyWavelets."""

import numpy as np
import pytest
import pywt
import torch

from scale_space_diffusion.networks.wavelets import dwt2, haar_kernels, idwt2


@pytest.mark.parametrize("shape", [(2, 1, 4, 4), (3, 3, 8, 6), (1, 7, 16, 2), (2, 64, 10, 12)])
def test_perfect_reconstruction(shape):
    x = torch.randn(shape)
    bands = dwt2(x)
    assert all(b.shape == (shape[0], shape[1], shape[2] // 2, shape[3] // 2) for b in bands)
    torch.testing.assert_close(idwt2(*bands), x, atol=1e-6, rtol=0)


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 5, 6, 10)])
def test_energy_preserved(shape):
    x = torch.randn(shape, dtype=torch.float64)
    energy = sum(b.square().sum() for b in dwt2(x))
    torch.testing.assert_close(energy, x.square().sum())
    # synthesis is orthonormal too: a random band tuple keeps its energy
    bands = [torch.randn(2, 3, 4, 5, dtype=torch.float64) for _ in range(4)]
    torch.testing.assert_close(idwt2(*bands).square().sum(), sum(b.square().sum() for b in bands))


def test_matches_pywt():
    a = np.random.default_rng(0).standard_normal((6, 8))
    cA, (cH, cV, cD) = pywt.dwt2(a, "haar")
    ll, lh, hl, hh = dwt2(torch.from_numpy(a)[None, None])
    for ours, ref in zip((ll, lh, hl, hh), (cA, cH, cV, cD)):
        np.testing.assert_allclose(ours[0, 0].numpy(), ref, atol=1e-12)


def test_band_naming_on_edges():
    # a horizontal edge (varies along H only) lives in lh; a vertical edge in hl
    rows = torch.tensor([1.0, -1.0]).repeat(4)[:, None].expand(8, 8)[None, None]
    _, lh, hl, hh = dwt2(rows)
    assert lh.abs().min() > 0 and hl.abs().max() == 0 and hh.abs().max() == 0
    _, lh, hl, hh = dwt2(rows.transpose(-1, -2))
    assert hl.abs().min() > 0 and lh.abs().max() == 0 and hh.abs().max() == 0


def test_band_sum_is_twice_strided_sample():
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(sum(dwt2(x)), 2 * x[..., ::2, ::2])


def test_synthesis_kernel_is_analysis_kernel():
    analysis, synthesis = haar_kernels()
    assert analysis.shape == (4, 1, 2, 2)
    torch.testing.assert_close(analysis, synthesis)


@pytest.mark.parametrize("shape", [(1, 2, 5, 4), (1, 2, 4, 7)])
def test_odd_size_raises(shape):
    with pytest.raises(ValueError, match="must be even") as err:
        dwt2(torch.randn(shape))
    assert str(tuple(shape)) in str(err.value)
