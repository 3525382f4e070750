"""Spectrum-aware distillation loss of Spectral Diffusion (Yang et al., CVPR 2023, arXiv 2211.17106).

    L = L_denoise + lambda_s * L_spatial + lambda_f * L_freq,   lambda_s = lambda_f = 0.1
    L_spatial = sum_pairs MSE(F_s, F_t)
    L_freq    = sum_pairs mean(omega * |FFT2(F_s) - FFT2(F_t)|^2),   omega = |FFT2(x_0)|^alpha

This module computes only the distillation terms; the caller adds L_denoise and aligns the
student features to the teacher width (learned 1x1 convs). Choices the paper leaves open:

- FFT: ``torch.fft.fft2(norm="ortho")`` over (h, w) in float32, unshifted; with omega = 1,
  L_freq equals L_spatial by Parseval.
- omega for a (B, C_feat, h, w) feature: resize x_0 to (h, w) with antialiased bilinear
  interpolation, take |FFT2| per image channel and average over image channels, floor at eps,
  raise to alpha, then divide by its per-sample mean over (h, w) so mean(omega) = 1. The
  (B, 1, h, w) weight is broadcast over feature channels and carries no gradient.
- eps = 1e-3 is absolute on the ortho-normalised amplitude of x_0 in [-1, 1]; it caps the
  weight of frequencies where x_0 has (almost) no energy, e.g. all non-DC bins of a flat image.
- "mean" in both terms averages over batch, channels and positions; the terms are summed over
  pairs. The teacher features are detached.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


@torch.no_grad()
def spectral_weight(x0: Tensor, size: tuple[int, int], alpha: float = -1.0, eps: float = 1e-3) -> Tensor:
    """omega = |FFT2(resize(x_0))|^alpha, normalised to mean 1 per sample.

    x0: (B, C_img, H, W) clean images. size: (h, w) of the feature. Returns (B, 1, h, w) float32.
    """
    x = x0.float()
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    amp = torch.fft.fft2(x, norm="ortho").abs().mean(dim=1, keepdim=True)  # (B, 1, h, w)
    w = amp.clamp_min(eps).pow(alpha)
    return w / w.mean(dim=(-2, -1), keepdim=True)


class SpectralDistillationLoss:
    """Distillation terms of L; call with matched feature lists and x_0.

    student[k], teacher[k]: (B, C_k, h_k, w_k) with equal shapes. x0: (B, C_img, H, W).
    Returns {"spatial", "freq", "total"} scalars; total = lambda_s * spatial + lambda_f * freq.
    """

    def __init__(
        self,
        spatial_weight: float = 0.1,  # lambda_s
        freq_weight: float = 0.1,  # lambda_f
        alpha: float = -1.0,  # exponent of |FFT2(x_0)| in omega
        eps: float = 1e-3,  # floor on |FFT2(x_0)| before the power
    ):
        self.spatial_weight, self.freq_weight = spatial_weight, freq_weight
        self.alpha, self.eps = alpha, eps

    def __call__(self, student: Sequence[Tensor], teacher: Sequence[Tensor], x0: Tensor) -> dict[str, Tensor]:
        if len(student) != len(teacher):
            raise ValueError(f"{len(student)} student features but {len(teacher)} teacher features")
        spatial = freq = x0.new_zeros((), dtype=torch.float32)
        omegas: dict[tuple[int, int], Tensor] = {}  # omega depends on x_0 and (h, w) only
        for k, (fs, ft) in enumerate(zip(student, teacher)):
            if fs.shape != ft.shape:
                raise ValueError(f"pair {k}: student {tuple(fs.shape)} != teacher {tuple(ft.shape)}")
            d = fs.float() - ft.detach().float()  # FFT2 is linear: FFT2(F_s) - FFT2(F_t) = FFT2(d)
            size = (d.shape[-2], d.shape[-1])
            if size not in omegas:
                omegas[size] = spectral_weight(x0, size, self.alpha, self.eps)
            spatial = spatial + d.square().mean()
            freq = freq + (omegas[size] * torch.fft.fft2(d, norm="ortho").abs().square()).mean()
        total = self.spatial_weight * spatial + self.freq_weight * freq
        return {"spatial": spatial, "freq": freq, "total": total}
