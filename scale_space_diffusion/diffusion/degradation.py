"""The linear downsampling operator R of Scale Space Diffusion and its exact adjoint.

Every operator here is separable, R = R_h (x) R_w, so an image X (.., n, n) maps to
R_1 X R_1^T with one small per-axis matrix R_1 (n/2^k, n). Composition R_{1:t} multiplies the
single-step (factor-2) matrices, never a direct resize; the adjoint is R_1^T Y R_1.

Kinds:
- ``bilinear``: ``F.interpolate(mode="bilinear", antialias=True, align_corners=False)`` by 2,
  i.e. the stride-2 filter [1,3,3,1]/8, renormalised where it overhangs the border.
  lambda_max(R R^T) ~ 1/4.
- ``box``: 2x2 averaging; R R^T = I/4 exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import torch
from torch import Tensor

from .precision import full_precision

ResizeKind = Literal["bilinear", "box"]


def step_matrix(kind: ResizeKind, n: int) -> Tensor:
    """The 1-D factor-2 downsampling matrix (n/2, n), float64."""
    if n % 2:
        raise ValueError(f"cannot halve an axis of odd size {n}")
    if kind == "box":
        taps = {0: 0.5, 1: 0.5}
    elif kind == "bilinear":
        taps = {-1: 1 / 8, 0: 3 / 8, 1: 3 / 8, 2: 1 / 8}
    else:
        raise ValueError(f"unknown resize kind {kind!r}; use 'bilinear' or 'box'")
    M = torch.zeros(n // 2, n, dtype=torch.float64)
    for i in range(n // 2):
        for offset, w in taps.items():
            j = 2 * i + offset
            if 0 <= j < n:
                M[i, j] = w
    return M / M.sum(dim=1, keepdim=True)  # antialiased interpolate renormalises at borders


@lru_cache(maxsize=None)
def axis_matrix(kind: ResizeKind, n_in: int, n_out: int) -> Tensor:
    """R_1 for n_in -> n_out (n_out = n_in / 2^k) as a product of step matrices, float64."""
    if n_out > n_in or n_in % n_out or (n_in // n_out) & (n_in // n_out - 1):
        raise ValueError(f"{n_in} -> {n_out} is not a downsampling by a power of 2")
    M = torch.eye(n_in, dtype=torch.float64)
    n = n_in
    while n > n_out:
        M = step_matrix(kind, n) @ M
        n //= 2
    return M


@lru_cache(maxsize=None)
def gram_eigh(kind: ResizeKind, n_in: int, n_out: int) -> tuple[Tensor, Tensor]:
    """Eigendecomposition of the 1-D Gram R_1^T R_1 = U diag(lam) U^T, float64 (n_in,), (n_in, n_in)."""
    M = axis_matrix(kind, n_in, n_out)
    lam, U = torch.linalg.eigh(M.T @ M)
    return lam.clamp_min(0), U


@lru_cache(maxsize=64)
def _on(kind: ResizeKind, n_in: int, n_out: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    return axis_matrix(kind, n_in, n_out).to(device=device, dtype=dtype)


@dataclass(frozen=True)
class Resize:
    """R as a pure object: ``down`` applies R_{n_in -> n_out}, ``adjoint`` applies its transpose."""

    kind: ResizeKind = "bilinear"

    def __post_init__(self):
        if self.kind not in ("bilinear", "box"):
            raise ValueError(f"unknown resize kind {self.kind!r}; use 'bilinear' or 'box'")

    def matrix(self, x: Tensor, n_in: int, n_out: int) -> Tensor:
        return _on(self.kind, n_in, n_out, x.device, x.dtype)

    @full_precision
    def down(self, x: Tensor, size: int) -> Tensor:
        """R x: (..., n, n) -> (..., size, size)."""
        n = x.shape[-1]
        if size == n:
            return x
        M = self.matrix(x, n, size)
        return M @ x @ M.T

    @full_precision
    def adjoint(self, y: Tensor, size: int) -> Tensor:
        """R^T y: (..., m, m) -> (..., size, size), the exact transpose of ``down(., m)``."""
        m = y.shape[-1]
        if size == m:
            return y
        M = self.matrix(y, size, m)
        return M.T @ y @ M
