"""What a person sees and a classifier-feature FID barely does: blocky samples, and lost or excess detail.

    (B1) blockiness_b(x) = mean (dx)^2 across b x b block boundaries / mean (dx)^2 inside blocks
         with dx the differences of neighbouring pixels along rows and columns, pooled over the batch and channels;
         a boundary difference is one between pixels j and j+1 with (j + 1) % b = 0. Natural images give ~1,
         an image nearest-upsampled by b gives inf (no differences inside blocks), white noise gives 1.
    (B2) spectrum log ratio: log10 P_samples(k) - log10 P_real(k) per radial frequency band k
         (the radially averaged power spectra of :func:`.spectrum.radial_power_spectrum`): < 0 where samples lack
         detail, > 0 where they have too much (noise, or the aliases of blocks).
    (B3) spectrum distance: the root mean square of (B2) over the bands (0 for identical spectra).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .spectrum import radial_power_spectrum


def _check_images(images: Tensor, name: str) -> Tensor:
    """float64 (B,C,H,W) in [-1, 1]: uint8 images are mapped there, float images are taken as in [-1, 1]."""
    if images.ndim != 4:
        raise ValueError(f"{name} must be (B,C,H,W), got shape {tuple(images.shape)}")
    return images.double() / 127.5 - 1 if images.dtype == torch.uint8 else images.to(torch.float64)


def boundary_energy(images: Tensor, block: int) -> tuple[Tensor, Tensor]:
    """(B1)'s two means: squared neighbour differences across b x b block boundaries and inside blocks (scalars)."""
    if block < 2:
        raise ValueError(f"block={block} must be >= 2 (the factor of the upsampling looked for, e.g. 2 or 4)")
    x = _check_images(images, "images")
    if min(x.shape[-2:]) < 2 * block:
        raise ValueError(f"images of {tuple(x.shape[-2:])} px hold no two {block}x{block} blocks; use a smaller block")
    across, inside = [], []
    for d in (x.diff(dim=-1), x.diff(dim=-2).transpose(-1, -2)):  # along rows, then along columns
        at_edge = (torch.arange(d.shape[-1], device=d.device) + 1) % block == 0
        across.append(d[..., at_edge].square().flatten())
        inside.append(d[..., ~at_edge].square().flatten())
    return torch.cat(across).mean(), torch.cat(inside).mean()


def blockiness(images: Tensor, block: int = 2) -> float:
    """(B1) for images (B,C,H,W), uint8 or float: ~1 for natural images, >> 1 for b x b blocks, 0 for flat images."""
    across, inside = boundary_energy(images, block)
    if across == 0:
        return 0.0 if inside == 0 else float(across / inside)
    return float(across / inside) if inside > 0 else float("inf")


def spectrum_log_ratio(samples: Tensor, real: Tensor, num_bins: int = 16) -> Tensor:
    """(B2) (num_bins,) float64: log10 of the samples' radial power over the real images', band by band.

    Either may be uint8 or float in [-1, 1] (uint8 is mapped to [-1, 1] first).
    """
    samples, real = _check_images(samples, "samples"), _check_images(real, "real")
    if samples.shape[1:] != real.shape[1:]:
        raise ValueError(f"samples {tuple(samples.shape[1:])} and real images {tuple(real.shape[1:])} differ in shape; "
                         "compare images of one size and channel count")  # fmt: skip
    return power_log_ratio(radial_power_spectrum(samples, num_bins), radial_power_spectrum(real, num_bins))


def power_log_ratio(power_samples: Tensor, power_real: Tensor) -> Tensor:
    """(B2) from two radial power spectra (num_bins,) already computed, e.g. stored in a benchmark's results."""
    tiny = torch.finfo(torch.float64).tiny
    return power_samples.double().clamp_min(tiny).log10() - power_real.double().clamp_min(tiny).log10()


def spectrum_distance(samples: Tensor, real: Tensor, num_bins: int = 16) -> float:
    """(B3) RMS over radial bands of (B2); 0 when the spectra agree, 1 for a tenfold power error in every band."""
    return float(spectrum_log_ratio(samples, real, num_bins).square().mean().sqrt())


def power_distance(power_samples: Tensor, power_real: Tensor) -> float:
    """(B3) from two radial power spectra already computed."""
    return float(power_log_ratio(power_samples, power_real).square().mean().sqrt())
