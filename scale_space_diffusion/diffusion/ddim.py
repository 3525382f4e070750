"""DDIM (Song, Meng & Ermon 2021) for DDPM and its scale-space generalisation: reverse kernels indexed by eta.

A step t -> s < t (s = -1 is the clean data), as in :mod:`.process`: c = a_t / a_s, rho = sigma_s^2 / sigma_t^2,
D = R_{r(s) -> r(t)} (the identity away from transitions), mu_s = a_s R_{1:s} x_0 and mu_t = c D mu_s, so that (P1)
reads x_t = mu_t + sigma_t eps_t and x_s = mu_s + sigma_s eps_s. Tags (D1)-(D6) are ours.

    (D1) kernel:     q_eta(x_s | x_t, x_0) = N(mu_s + A (x_t - mu_t), Sigma)
    (D2) exactness:  x_t ~ N(mu_t, sigma_t^2 I) gives x_s ~ N(mu_s, sigma_s^2 I)  iff  sigma_t^2 A A^T + Sigma = sigma_s^2 I.
                     The exact posterior (P2)-(P3), A = rho c D^T and Sigma = sigma_s^2 (I - rho c^2 D^T D), is one solution.
    (D3) split:      D = sum_k s_k w_k v_k^T (SVD; w_k orthonormal at r(t), v_k orthonormal at r(s), s_k = 0 on the null
                     space of D). With A = sum_k alpha_k v_k w_k^T and Sigma = sum_k var_k v_k v_k^T, (D2) is one 1-D
                     equation per direction: sigma_t^2 alpha_k^2 + var_k = sigma_s^2.
    (D4) family:     s_k > 0:  var_k = eta^2 sigma_s^2 (1 - rho c^2 s_k^2),  alpha_k = sqrt(sigma_s^2 - var_k) / sigma_t
                     s_k = 0:  var_k = sigma_s^2,  alpha_k = 0   (x_t says nothing there: fresh noise for every eta)
                     eta = 1 gives alpha_k = rho c s_k, the exact posterior; eta = 0 makes x_s a function of (x_t, x_0)
                     on the range of D^T, so only the prior and the null-space noise of transitions are random.
    (D5) DDPM:       D = I, s_k = 1: var = eta^2 sigma_s^2 (1 - rho c^2) is DDIM Eq. 16's sigma_t(eta)^2, and
                     x_s = a_s x_0 + sqrt(sigma_s^2 - var) (x_t - a_t x_0) / sigma_t + sqrt(var) z is DDIM Eq. 12.
    (D6) separable:  D = R_1 (x) R_1 and R_1^T R_1 = U diag(lam) U^T (``gram_eigh``; ascending, the top n_t of them > 0),
                     so s_ij^2 = lam_i lam_j, v_ij = u_i (x) u_j and w_ij = w_i (x) w_j with W = R_1 U diag(m / sqrt(lam))
                     (m = 1 on the top n_t, else 0; W (n_t, n_s) has orthonormal columns where m = 1, zero elsewhere):
                         x_s = mu_s + U (alpha * (W^T E W) + sqrt(var) * (U^T Z U)) U^T,   E = x_t - mu_t,  Z ~ N(0, I)
                     with the (n_s, n_s) tables alpha_ij, var_ij of (D4). With the same U and Z as (P4), eta = 1 is
                     (P2) + (P4): alpha_ij W^T E W = rho c U^T D^T(E) U, since W^T E W = diag(m/sqrt(lam)) U^T D^T(E) U.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

from .degradation import ResizeKind, axis_matrix, gram_eigh
from .precision import full_precision
from .process import ScaleSpaceProcess


def check_eta(eta: float) -> float:
    """``eta`` if it lies in [0, 1] (0: deterministic DDIM, 1: the ancestral sampler); else a ValueError."""
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta={eta} must be in [0, 1]: 0 is deterministic DDIM, 1 the ancestral (DDPM) sampler")
    return float(eta)


@lru_cache(maxsize=None)
def range_basis(kind: ResizeKind, n_s: int, n_t: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(D6) (lam (n_s,), U (n_s, n_s), W (n_t, n_s), m (n_s,)), float64: the SVD of R_1 in the basis of ``gram_eigh``.

    R_1 U[:, i] = sqrt(lam_i) W[:, i] for the n_t directions with m_i = 1 (the range of R_1^T); W is zero where m_i = 0.
    """
    lam, U = gram_eigh(kind, n_s, n_t)
    m = torch.zeros(n_s, dtype=torch.float64)
    m[n_s - n_t :] = 1.0  # R_1 (n_t, n_s) has full row rank: exactly n_t eigenvalues are > 0, the largest
    inv_sqrt = torch.where(m > 0, lam.clamp_min(torch.finfo(lam.dtype).tiny).rsqrt(), torch.zeros_like(lam))
    W = axis_matrix(kind, n_s, n_t) @ U * inv_sqrt
    return lam, U, W, m


def ddim_tables(process: ScaleSpaceProcess, t: int, s: int, eta: float) -> tuple[Tensor, Tensor]:
    """(D4) (alpha, std = sqrt(var)) of the step t -> s, float64: scalars (R = I) or (n_s, n_s) tables (D6)."""
    eta = check_eta(eta)
    a_t, sigma_t = process.schedule.host_a_sigma(t)
    a_s, sigma_s = process.schedule.host_a_sigma(s)
    g = (a_t / a_s) ** 2 * sigma_s**2 / sigma_t**2  # rho c^2 = SNR_t / SNR_s <= 1
    n_s, n_t = process.ladder.res(s), process.ladder.res(t)
    if n_s == n_t:
        g = torch.tensor(min(g, 1.0), dtype=torch.float64)
        inform = torch.tensor(1.0, dtype=torch.float64)
    else:
        lam, _, _, m = range_basis(process.resize.kind, n_s, n_t)
        g = (g * torch.outer(lam, lam)).clamp(0, 1)  # rho c^2 s_ij^2
        inform = torch.outer(m, m)  # 1 where s_ij > 0
    # sigma_s^2 - var = sigma_s^2 (1 - eta^2 + eta^2 g) on informed directions, written without cancellation
    alpha = inform * sigma_s * (1 - eta**2 + eta**2 * g).sqrt() / sigma_t
    std = sigma_s * torch.where(inform > 0, eta * (1 - g).sqrt(), torch.ones_like(g))
    return alpha, std


@full_precision
def ddim_step(process: ScaleSpaceProcess, x_t: Tensor, x0_hat: Tensor, t: int, s: int, eta: float, z: Tensor) -> Tensor:
    """(D1) x_s ~ q_eta(x_s | x_t, x_0 = x0_hat) via (D4)/(D6), given the standard-normal draw z.

    x_t (B,C,r(t),r(t)), x0_hat and z (B,C,r(s),r(s)) -> x_s (B,C,r(s),r(s)); s = -1 returns x0_hat (z unused).
    eta = 1 equals ``posterior_mean + posterior_noise(z)`` (the ancestral step) to float tolerance.
    """
    eta = check_eta(eta)
    a_t, _ = process.schedule.host_a_sigma(t)
    a_s, _ = process.schedule.host_a_sigma(s)
    mu_s = a_s * x0_hat
    if s < 0:
        return mu_s
    n_s, n_t = x0_hat.shape[-1], x_t.shape[-1]
    E = x_t - (a_t / a_s) * process.resize.down(mu_s, n_t)  # x_t - mu_t
    if n_s == n_t:  # (D5): scalars, computed on the host
        alpha, std = (float(v) for v in ddim_tables(process, t, s, eta))
        return mu_s + alpha * E + std * z
    alpha, std, U, W = _transition_tables(process, t, s, eta, x_t.device, x_t.dtype)
    return mu_s + U @ (alpha * (W.T @ E @ W) + std * (U.T @ z @ U)) @ U.T


@lru_cache(maxsize=256)
def _transition_tables(process: ScaleSpaceProcess, t: int, s: int, eta: float, device: torch.device, dtype: torch.dtype):
    """(D6)'s (alpha, std, U, W) of a transition t -> s on ``device``: copied once, not at every sampling step."""
    alpha, std = ddim_tables(process, t, s, eta)
    _, U, W, _ = range_basis(process.resize.kind, process.ladder.res(s), process.ladder.res(t))
    return tuple(v.to(device=device, dtype=dtype) for v in (alpha, std, U, W))


def ddim_operators(process: ScaleSpaceProcess, t: int, s: int, eta: float) -> tuple[Tensor, Tensor]:
    """(D1)'s A (n_s^2, n_t^2) and Sigma^{1/2} (n_s^2, n_s^2) as dense float64 matrices of one channel; for tests."""
    n_s, n_t = process.ladder.res(s), process.ladder.res(t)
    zero_s = torch.zeros(1, 1, n_s, n_s, dtype=torch.float64)
    e_t = torch.eye(n_t * n_t, dtype=torch.float64).reshape(-1, 1, n_t, n_t)
    e_s = torch.eye(n_s * n_s, dtype=torch.float64).reshape(-1, 1, n_s, n_s)
    A = ddim_step(process, e_t, zero_s.expand(len(e_t), -1, -1, -1), t, s, eta, zero_s).reshape(len(e_t), -1).T
    zero_t = torch.zeros(len(e_s), 1, n_t, n_t, dtype=torch.float64)
    B = ddim_step(process, zero_t, zero_s.expand(len(e_s), -1, -1, -1), t, s, eta, e_s).reshape(len(e_s), -1).T
    return A, B
