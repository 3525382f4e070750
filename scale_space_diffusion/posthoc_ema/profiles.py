"""Power-function EMA profiles and their post-hoc reconstruction (Karras et al. 2024, "Analyzing and Improving the
Training Dynamics of Diffusion Models" (EDM2), Sec. 3 and App. C). Pure float64 math; tags (E1)-(E6) are ours.

An EMA is a weighted average of the training iterates theta_1..theta_t; its *profile* is the weight on each.
The power function profile of exponent gamma > 0 at step t is

    (E1) profile:     p_t(tau) = (gamma + 1) tau^gamma / t^(gamma + 1) on 0 <= tau <= t   (integrates to 1)
    (E2) width:       sigma_rel = std(tau) / t = sqrt((gamma + 1) / ((gamma + 2)^2 (gamma + 3)))
    (E3) inverse:     gamma is the largest real root of g^3 + 7 g^2 + (16 - s) g + (12 - s), s = sigma_rel^-2
    (E4) update:      ema_t = lerp(ema_{t-1}, theta_t, 1 - beta_t),  beta_t = (1 - 1/t)^(gamma + 1)
                      which makes ema_t = sum_i w_t(i) theta_i with the exact discrete profile
                      w_t(i) = (i^(gamma+1) - (i-1)^(gamma+1)) / t^(gamma+1)  (telescoping; (E1) integrated per step).
    (E5) overlap:     <p_a, p_b> = (g_a + 1)(g_b + 1) / ((g_a + g_b + 1) max(t_a, t_b)) * (t_min/t_max)^(g of the longer)
                      the L2 inner product of two continuous profiles (E1), as in EDM2's power_function_correlation.
    (E6) post hoc:    given snapshots k (profiles q_k: step t_k, exponent g_k), the weights x minimising
                      || sum_k x_k q_k - p_target ||_2 solve G x = b, G_kl = <q_k, q_l>, b_k = <q_k, p_target>;
                      sum_k x_k ema_k is then the EMA of the target profile, up to the residual of that fit.
                      We normalise x to sum 1 (as EDM2) so a constant network is reproduced exactly.

The inner products come either from the continuous profiles (E5) (EDM2's choice; exact as t -> inf) or from the
exact discrete profiles (E4) (``exact=True``, the default: the same solve, exact at any t, O(max step) memory).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor


def _check_sigma_rel(sigma_rel: float) -> float:
    # gamma -> 0 gives sigma_rel -> sqrt(1/12) = 0.2887 (uniform average); gamma -> inf gives 0 (the last iterate)
    if not 0 < sigma_rel < 12**-0.5:
        raise ValueError(f"sigma_rel={sigma_rel} must be in (0, {12**-0.5:.4f}); EDM2 uses 0.05 and 0.10")
    return float(sigma_rel)


def gamma_to_sigma_rel(gamma: float) -> float:
    """(E2) the relative standard deviation of the power profile of exponent ``gamma`` > 0."""
    if not gamma > 0:
        raise ValueError(f"gamma={gamma} must be > 0 (the power profile's exponent), e.g. 6.94 for sigma_rel=0.10")
    g = float(gamma)
    return ((g + 1) / ((g + 2) ** 2 * (g + 3))) ** 0.5


def sigma_rel_to_gamma(sigma_rel: float) -> float:
    """(E3) the exponent gamma of the power profile of relative width ``sigma_rel`` in (0, 12^-1/2)."""
    s = _check_sigma_rel(sigma_rel) ** -2
    roots = np.roots([1.0, 7.0, 16.0 - s, 12.0 - s])
    return float(roots[np.abs(roots.imag) < 1e-9].real.max())


def power_beta(gamma: float, step: int) -> float:
    """(E4) the EMA decay beta_t at optimizer step ``step`` >= 1 (beta_1 = 0: the first update copies theta_1)."""
    if step < 1:
        raise ValueError(f"step={step} must be >= 1 (count optimizer steps from 1)")
    return (1.0 - 1.0 / step) ** (gamma + 1.0)


def discrete_profile(gamma: float, step: int) -> Tensor:
    """(E4) w_t(i) for i = 1..t (step,), float64: the weights ``step`` updates of (E4) put on each iterate."""
    i = torch.arange(1, step + 1, dtype=torch.float64)
    return _increments(gamma, i, step)


def _increments(gamma: float, i: Tensor, t: int) -> Tensor:
    """(i^(g+1) - (i-1)^(g+1)) / t^(g+1), without overflow or cancellation: (i/t)^(g+1) (1 - (1 - 1/i)^(g+1))."""
    g1 = gamma + 1.0
    return (i / t) ** g1 * -torch.expm1(g1 * torch.log1p(-1.0 / i))


@dataclass(frozen=True)
class Profile:
    """A power EMA of width ``sigma_rel`` read at optimizer step ``step``: a snapshot, or a target."""

    step: int  # optimizer steps averaged (t)
    sigma_rel: float  # relative width (E2)

    def __post_init__(self):
        if self.step < 1:
            raise ValueError(f"step={self.step} must be >= 1: an EMA needs at least one update")
        _check_sigma_rel(self.sigma_rel)

    @property
    def gamma(self) -> float:
        return sigma_rel_to_gamma(self.sigma_rel)


def continuous_overlap(a: Profile, b: Profile) -> float:
    """(E5) <p_a, p_b> of two continuous power profiles (E1)."""
    ga, gb = a.gamma, b.gamma
    lo, hi = min(a.step, b.step), max(a.step, b.step)
    g_long = gb if a.step < b.step else ga  # the exponent of the profile that reaches further
    return (ga + 1) * (gb + 1) / ((ga + gb + 1) * hi) * (lo / hi) ** g_long


def gram(rows: Sequence[Profile], cols: Sequence[Profile], exact: bool = True) -> Tensor:
    """(len(rows), len(cols)) inner products: of the discrete profiles (E4) if ``exact``, else (E5).

    Exact: <w_a, w_b> = sum_{i <= min(t_a, t_b)} w_a(i) w_b(i), from one prefix sum per pair of exponents.
    (E5) is the integral the sum approximates (w_t(i) ~ p_t(i) for one step of width 1).
    """
    out = torch.empty(len(rows), len(cols), dtype=torch.float64)
    if not exact:
        for k, a in enumerate(rows):
            for m, b in enumerate(cols):
                out[k, m] = continuous_overlap(a, b)
        return out
    horizon = max(p.step for p in [*rows, *cols])
    i = torch.arange(1, horizon + 1, dtype=torch.float64)
    gammas = {p.sigma_rel: p.gamma for p in [*rows, *cols]}
    # w_t(i) = d_g(i) (T/t)^(g+1) with d_g(i) = _increments(g, i, T): prefix sums of d_ga d_gb per exponent pair
    d = {s: _increments(g, i, horizon) for s, g in gammas.items()}
    prefix: dict[tuple[float, float], Tensor] = {}
    for k, a in enumerate(rows):
        for m, b in enumerate(cols):
            key = (a.sigma_rel, b.sigma_rel)
            if key not in prefix:
                prefix[key] = torch.cumsum(d[key[0]] * d[key[1]], 0)
            lo = min(a.step, b.step)
            scale = (horizon / a.step) ** (gammas[a.sigma_rel] + 1) * (horizon / b.step) ** (gammas[b.sigma_rel] + 1)
            out[k, m] = prefix[key][lo - 1] * scale
    return out


def solve_weights(snapshots: Sequence[Profile], targets: Sequence[Profile], exact: bool = True) -> Tensor:
    """(E6) weights (len(snapshots), len(targets)): column j rebuilds target j as sum_k x_kj snapshot_k.

    Least squares in profile space (EDM2's solve_posthoc_coefficients), solved with ``lstsq`` so repeated or
    nearly equal snapshots do not break it; each column sums to 1.
    """
    if not snapshots:
        raise ValueError("no snapshots to reconstruct from; train with the PowerEMA callback (it saves snapshots)")
    if not targets:
        raise ValueError("no target EMA given; pass at least one Profile(step, sigma_rel)")
    G, b = gram(snapshots, snapshots, exact), gram(snapshots, targets, exact)
    x = torch.linalg.lstsq(G, b, driver="gelsd").solution
    return x / x.sum(dim=0, keepdim=True)


def profile_residual(snapshots: Sequence[Profile], weights: Tensor, target: Profile) -> float:
    """|| sum_k x_k w_k - w_target ||_2 / || w_target ||_2 over the discrete profiles (E4): how well the solve fits."""
    horizon = max(p.step for p in [*snapshots, target])

    def padded(p: Profile) -> Tensor:
        return torch.nn.functional.pad(discrete_profile(p.gamma, p.step), (0, horizon - p.step))

    built = sum(float(x) * padded(p) for x, p in zip(weights, snapshots))
    want = padded(target)
    return float((built - want).norm() / want.norm())
