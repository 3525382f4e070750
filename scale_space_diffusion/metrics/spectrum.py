"""Radially averaged power spectra of images: the bands the frequency analysis (:mod:`.analysis`) and the sample
sharpness (:mod:`.sharpness`) both measure."""

from __future__ import annotations

import torch
from torch import Tensor


def radial_bins(size: int, num_bins: int) -> Tensor:
    """Band index (size, size) of each FFT frequency, by radius |k| / k_max, in ``num_bins`` bands."""
    k = torch.fft.fftfreq(size)
    radius = (k[:, None] ** 2 + k[None, :] ** 2).sqrt() / (0.5 * 2**0.5)
    return (radius * num_bins).long().clamp(max=num_bins - 1)


def radial_power_spectrum(images: Tensor, num_bins: int = 16) -> Tensor:
    """Mean power |FFT2|^2 per radial band (num_bins,) of images (B,C,H,W); the mean image is removed."""
    x = images.double() - images.double().mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(x, norm="ortho").abs().square().mean(dim=(0, 1))
    bins = radial_bins(images.shape[-1], num_bins).flatten()
    return torch.zeros(num_bins, dtype=torch.float64).index_add_(0, bins, power.flatten()) / torch.bincount(
        bins, minlength=num_bins
    ).clamp(min=1)
