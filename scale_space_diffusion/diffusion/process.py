"""The Scale Space Diffusion forward process and its exact posterior (arXiv 2603.08709).

The paper writes the resize as M and the signal scale as a_t; we write R (our :class:`Resize`) and a_t. Equation
tags (P1)-(P4) are ours (the paper's numbering could not be checked offline); with one ladder level, R = I and
they reduce to DDPM (Ho et al. 2020) Eq. 4 and Eqs. 6-7.

    (P1) forward marginal:  x_t = a_t R_{1:t} x_0 + sigma_t eps,  at resolution r(t)
For s < t, with c = a_t / a_s, rho = sigma_s^2 / sigma_t^2, mu_s = a_s x0_hat^{r(s)} and R = R_{r(s) -> r(t)}
(the identity away from transitions):
    (P2) posterior mean:    mu_s + rho c R^T (x_t - c R mu_s)
    (P3) posterior cov:     sigma_s^2 (I - rho c^2 R^T R)
    (P4) exact noise:       R = R_1 (x) R_1 is separable, so R^T R has eigenvectors u_i (x) u_j with eigenvalues
                            lam_i lam_j of the 1-D Gram R_1^T R_1 = U diag(lam) U^T; a draw of (P3) is
                            sigma_s U (S * (U^T Z U)) U^T with S_ij = sqrt(1 - rho c^2 lam_i lam_j) and Z ~ N(0, I):
                            two small matmuls per axis (the authors' code uses 40 Lanczos iterations instead).
s = -1 denotes the clean data (a = 1, sigma = 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from .degradation import Resize, axis_matrix, gram_eigh
from .ladder import ResolutionLadder
from .precision import full_precision
from .schedule import NoiseSchedule


@dataclass(frozen=True)
class ScaleSpaceProcess:
    schedule: NoiseSchedule
    ladder: ResolutionLadder
    resize: Resize = Resize("bilinear")

    def __post_init__(self):
        if self.schedule.T != self.ladder.T:
            raise ValueError(f"schedule has T={self.schedule.T} but ladder has T={self.ladder.T}")

    @property
    def T(self) -> int:
        return self.schedule.T

    def batch_res(self, t: Tensor) -> int:
        """The single resolution r(t) of a training batch (B,) of host timesteps (the host decides the network path,
        so it reads the timesteps it drew, never the copy on the device)."""
        if t.device.type != "cpu":
            raise ValueError(f"batch_res reads timesteps on the host; pass the CPU copy of t, not one on {t.device}")
        res = {self.ladder.res(ti) for ti in t.tolist()}
        if len(res) != 1:
            raise ValueError(f"a batch must live at one resolution, got timesteps at {sorted(res)}")
        return res.pop()

    def degrade(self, x0: Tensor, size: int) -> Tensor:
        """R_{1:t} x_0 at ``size`` (B,C,R,R) -> (B,C,size,size)."""
        return self.resize.down(x0, size)

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """(P1): x_t = a_t R_{1:t} x_0 + sigma_t eps. x0 (B,C,R,R), t (B,), noise (B,C,r,r)."""
        s = self.schedule
        return s.at("a", t, x0) * self.degrade(x0, noise.shape[-1]) + s.at("sigma", t, noise) * noise

    def _coeffs(self, t: int, s: int) -> tuple[float, float, float]:
        a_t, sigma_t = self.schedule.host_a_sigma(t)
        a_s, sigma_s = self.schedule.host_a_sigma(s)
        return a_t / a_s, sigma_s**2 / sigma_t**2, a_s  # c, rho, a_s

    def posterior_mean(self, x_t: Tensor, x0_hat: Tensor, t: int, s: int | None = None) -> Tensor:
        """(P2) E[x_s | x_t, x_0 = x0_hat]. x_t (B,C,r(t),r(t)), x0_hat (B,C,r(s),r(s)) -> (B,C,r(s),r(s))."""
        s = t - 1 if s is None else s
        c, rho, a_s = self._coeffs(t, s)
        mu_s = a_s * x0_hat
        r_t = x_t.shape[-1]
        residual = x_t - c * self.resize.down(mu_s, r_t)
        return mu_s + rho * c * self.resize.adjoint(residual, mu_s.shape[-1])

    @full_precision
    def posterior_noise(self, z: Tensor, t: int, s: int | None = None) -> Tensor:
        """(P4) Sigma^{1/2} z, an exact draw from (P3) N(0, sigma_s^2 (I - rho c^2 R^T R)) given z ~ N(0, I) at r(s)."""
        s = t - 1 if s is None else s
        if s < 0:
            return torch.zeros_like(z)
        c, rho, _ = self._coeffs(t, s)
        sigma_s = self.schedule.host_a_sigma(s)[1]
        n_s, n_t = self.ladder.res(s), self.ladder.res(t)
        if n_s == n_t:  # R = I: the DDPM posterior variance
            return sigma_s * max(1 - rho * c * c, 0.0) ** 0.5 * z
        U, scale = _noise_tables(self, t, s, z.device, z.dtype)
        return sigma_s * (U @ (scale * (U.T @ z @ U)) @ U.T)

    def posterior_cov(self, t: int, s: int | None = None) -> Tensor:
        """(P3) as a dense covariance (n^2, n^2) of one channel at r(s), row-major pixels; for tests."""
        s = t - 1 if s is None else s
        c, rho, _ = self._coeffs(t, s)
        sigma_s = self.schedule.host_a_sigma(s)[1]
        n_s, n_t = self.ladder.res(s), self.ladder.res(t)
        M = axis_matrix(self.resize.kind, n_s, n_t)
        R = torch.kron(M, M)
        return sigma_s**2 * (torch.eye(n_s * n_s, dtype=torch.float64) - rho * c * c * R.T @ R)


@lru_cache(maxsize=256)
def _noise_tables(process: ScaleSpaceProcess, t: int, s: int, device: torch.device, dtype: torch.dtype):
    """(P4)'s U and S = sqrt(1 - rho c^2 lam_i lam_j) of a transition t -> s on ``device``: copied once, not per draw."""
    c, rho, _ = process._coeffs(t, s)
    lam, U = gram_eigh(process.resize.kind, process.ladder.res(s), process.ladder.res(t))
    scale = (1 - rho * c * c * torch.outer(lam, lam)).clamp_min(0).sqrt()
    return U.to(device=device, dtype=dtype), scale.to(device=device, dtype=dtype)
