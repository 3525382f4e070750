"""Orthonormal single-level 2-D Haar DWT and its inverse, as pure batched tensor functions.

Used by the wavelet gates of Spectral Diffusion (Yang et al., CVPR 2023, arXiv 2211.17106).
The filters are PyWavelets' ``haar`` filters; the analysis is a stride-2 depthwise conv2d and
the synthesis its transpose, which is the exact inverse because the transform is orthonormal.

Sub-band naming: the first letter is the filter along the width W (horizontal axis), the second
the filter along the height H (vertical axis). For a 2x2 block [[a, b], [c, d]]:

    ll = (a + b + c + d) / 2    approximation             pywt cA
    lh = (a + b - c - d) / 2    low in W, high in H        pywt cH (horizontal edges)
    hl = (a - b + c - d) / 2    high in W, low in H        pywt cV (vertical edges)
    hh = (a - b - c + d) / 2    high in both               pywt cD (diagonal)

so ``dwt2(x)`` equals ``pywt.dwt2(x, "haar")`` = (cA, (cH, cV, cD)) value for value.
Note ll + lh + hl + hh = 2a: the sum of all four bands is twice the strided sample x[..., ::2, ::2].
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor


@lru_cache(maxsize=None)
def haar_kernels() -> tuple[Tensor, Tensor]:
    """(analysis, synthesis) 2x2 kernels, each (4, 1, 2, 2) float64 in the order ll, lh, hl, hh.

    Analysis taps are pywt's ``dec_lo``/``dec_hi`` reversed (pywt convolves, conv2d correlates);
    synthesis taps are ``rec_lo``/``rec_hi`` as conv_transpose2d scatters them. For Haar the two
    kernels coincide (orthonormality: rec = reversed dec).
    """
    import pywt  # lazy: only needed once, to build the filters

    w = pywt.Wavelet("haar")
    f64 = lambda taps: torch.tensor(taps, dtype=torch.float64)  # noqa: E731
    dec_lo, dec_hi = f64(w.dec_lo[::-1]), f64(w.dec_hi[::-1])
    rec_lo, rec_hi = f64(w.rec_lo), f64(w.rec_hi)

    def bank(lo: Tensor, hi: Tensor) -> Tensor:
        # k[i, j] = f_H[i] * f_W[j]; name = (f_W, f_H)
        pairs = [(lo, lo), (lo, hi), (hi, lo), (hi, hi)]  # (f_W, f_H) for ll, lh, hl, hh
        return torch.stack([torch.outer(fh, fw) for fw, fh in pairs]).unsqueeze(1)

    return bank(dec_lo, dec_hi), bank(rec_lo, rec_hi)


@lru_cache(maxsize=32)
def _kernel(synthesis: bool, device: torch.device, dtype: torch.dtype) -> Tensor:
    return haar_kernels()[int(synthesis)].to(device=device, dtype=dtype)


# The same taps as plain constants: the products of pywt's +-1/sqrt(2) filter taps, +-0.5 (exactly, in float32).
_HAAR_SIGNS = ((1.0, 1.0, 1.0, 1.0), (1.0, 1.0, -1.0, -1.0), (1.0, -1.0, 1.0, -1.0), (1.0, -1.0, -1.0, 1.0))


def _bank(synthesis: bool, channels: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """The depthwise filter bank (4C, 1, 2, 2). Eager: built once per (channels, device, dtype), so a forward
    allocates nothing for it. While torch.compile traces: from constants (pywt and the caches would break the graph)."""
    if torch.compiler.is_compiling():
        k = 0.5 * torch.tensor(_HAAR_SIGNS, device=device, dtype=dtype)
        return k.view(4, 1, 2, 2).repeat(channels, 1, 1, 1)
    return _cached_bank(synthesis, channels, device, dtype)


@lru_cache(maxsize=64)
def _cached_bank(synthesis: bool, channels: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    with torch.inference_mode(False):  # a normal tensor even if first built under inference mode: autograd saves it
        return _kernel(synthesis, device, dtype).repeat(channels, 1, 1, 1)


def dwt2_stacked(x: Tensor) -> Tensor:
    """Haar DWT with the bands stacked: (B, C, H, W) -> (B, 4, C, H/2, W/2), bands ll, lh, hl, hh."""
    if x.ndim != 4 or x.shape[-2] % 2 or x.shape[-1] % 2:
        raise ValueError(
            f"dwt2 expects (B, C, H, W) with even H and W; got shape {tuple(x.shape)} "
            "(the feature size must be even)"
        )
    B, C, H, W = x.shape
    k = _bank(False, C, x.device, x.dtype)  # (4C, 1, 2, 2)
    y = F.conv2d(x, k, stride=2, groups=C)  # (B, 4C, H/2, W/2), channel-major: c0 ll, c0 lh, ...
    return y.view(B, C, 4, H // 2, W // 2).transpose(1, 2)


def idwt2_stacked(y: Tensor) -> Tensor:
    """Inverse of ``dwt2_stacked``: (B, 4, C, h, w) -> (B, C, 2h, 2w)."""
    if y.ndim != 5 or y.shape[1] != 4:
        raise ValueError(f"idwt2 expects (B, 4, C, h, w); got shape {tuple(y.shape)}")
    B, _, C, h, w = y.shape
    k = _bank(True, C, y.device, y.dtype)  # (4C, 1, 2, 2)
    y = y.transpose(1, 2).reshape(B, 4 * C, h, w)
    return F.conv_transpose2d(y, k, stride=2, groups=C)


def dwt2(x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Single-level orthonormal 2-D Haar DWT.

    x: (B, C, H, W), H and W even. Returns (ll, lh, hl, hh), each (B, C, H/2, W/2).
    Raises ValueError for odd H or W.
    """
    ll, lh, hl, hh = dwt2_stacked(x).unbind(1)
    return ll, lh, hl, hh


def idwt2(ll: Tensor, lh: Tensor, hl: Tensor, hh: Tensor) -> Tensor:
    """Inverse of ``dwt2``: four (B, C, h, w) bands -> x (B, C, 2h, 2w); idwt2(*dwt2(x)) == x."""
    return idwt2_stacked(torch.stack([ll, lh, hl, hh], dim=1))
