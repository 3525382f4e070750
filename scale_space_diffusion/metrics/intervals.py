"""FID and KID from features computed once, with 95 % bootstrap intervals over the generated samples.

The reference (e.g. the real test split) is fixed: its mean, covariance, the covariance's square root and the mean
of its kernel matrix are computed once (:func:`reference_stats`). A bootstrap resample draws N generated feature
vectors with replacement (as counts w over the N samples) and recomputes the metric against that fixed reference,
so the interval is the sampling uncertainty of the generated set alone, and costs no network pass.

- **FID** is torch-fidelity's: mu and the unbiased covariance (``np.cov``) in float64, and
  tr sqrt(S1 S2) = sum sqrt(eig(A S1 A)) with A = S2^(1/2) (the same spectrum as S1 S2, as a symmetric matrix).
- **KID** is the unbiased MMD^2 with the polynomial kernel k(x, y) = (x.y / D + 1)^3 over all N x M pairs (the
  estimator torch-fidelity applies to each subset, here on every sample); ``kid_std`` and ``kid_subsets_mean`` are
  torch-fidelity's own subsets (100 of min(1000, N, M)). A resample excludes pairs of the same original sample.
- **Interval**: resampling with replacement duplicates samples, which biases FID upwards (and KID's xx term), so
  the percentile interval is shifted by the bootstrap bias: ci = (q_2.5 - b, q_97.5 - b) with
  b = median(bootstrap) - estimate. It always holds the estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["Reference", "bootstrap_scores", "fid_from_features", "kid_subsets_metric", "rank_by_intervals", "reference_stats", "separable"]

_BLOCK = 1024  # rows of a kernel matrix computed at once


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _eig(fn, a: Tensor) -> tuple[Tensor, ...] | Tensor:
    """``fn`` (eigh or eigvalsh) with one intra-op thread on CPU: batched eigvalsh with 2 threads of a busy machine
    took 35 s where one thread takes 0.1 s (16 matrices of 128 x 128)."""
    if a.is_cuda:
        return fn(a)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn(a)
    finally:
        torch.set_num_threads(n)


def _kernel(x: Tensor, y: Tensor) -> Tensor:
    return (x @ y.T / x.shape[1] + 1) ** 3


@dataclass
class Reference:
    """Fixed statistics of the reference features (float64): mu, sigma, sqrt_sigma and the mean off-diagonal kernel."""

    features: Tensor  # (M, D) float64
    mu: Tensor
    sigma: Tensor
    sqrt_sigma: Tensor
    kernel_mean: float  # mean of k(y_i, y_j) over i != j

    @property
    def num(self) -> int:
        return len(self.features)


def _sqrtm_psd(s: Tensor) -> Tensor:
    vals, vecs = _eig(torch.linalg.eigh, s)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


def reference_stats(features: Tensor) -> Reference:
    """The fixed side of every FID and KID: ``features`` (M, D) of the real reference images."""
    y = features.to(_device(), torch.float64)
    mu = y.mean(0)
    sigma = torch.cov(y.T)
    total, diag = 0.0, 0.0
    for i in range(0, len(y), _BLOCK):
        k = _kernel(y[i : i + _BLOCK], y)
        total += float(k.sum())
        diag += float(torch.diagonal(k, offset=i).sum())
    m = len(y)
    return Reference(y, mu, sigma, _sqrtm_psd(sigma), (total - diag) / (m * (m - 1)))


def _frechet(mu: Tensor, sigma: Tensor, ref: Reference) -> Tensor:
    """FID for a batch of (mu (B, D), sigma (B, D, D)) against ``ref``."""
    a = ref.sqrt_sigma
    tr_covmean = _eig(torch.linalg.eigvalsh, a @ sigma @ a).clamp(min=0).sqrt().sum(-1)
    diff = mu - ref.mu
    return (diff * diff).sum(-1) + torch.diagonal(sigma, dim1=-2, dim2=-1).sum(-1) + ref.sigma.trace() - 2 * tr_covmean


def fid_from_features(features: Tensor, ref: Reference) -> float:
    """FID of generated ``features`` (N, D) against the reference statistics."""
    x = features.to(ref.mu.device, torch.float64)
    return float(_frechet(x.mean(0)[None], torch.cov(x.T)[None], ref)[0])


def _interval(estimate: float, boot: np.ndarray) -> tuple[float, float]:
    lo, med, hi = np.quantile(boot, [0.025, 0.5, 0.975])
    bias = med - estimate
    return float(lo - bias), float(hi - bias)


def _resample_counts(n: int, resamples: int, seed: int) -> Tensor:
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    counts = np.bincount((idx + n * np.arange(resamples)[:, None]).ravel(), minlength=n * resamples)
    return torch.from_numpy(counts.reshape(resamples, n).astype(np.float64))


def _bootstrap_fid(x: Tensor, w: Tensor, ref: Reference, chunk: int = 16) -> Tensor:
    n, out = len(x), []
    for i in range(0, len(w), chunk):
        wb = w[i : i + chunk]  # (b, N), rows sum to N
        mu = wb @ x / n
        second = torch.bmm((x[None] * wb[:, :, None]).transpose(1, 2), x.expand(len(wb), -1, -1))
        sigma = (second - n * mu[:, :, None] * mu[:, None, :]) / (n - 1)
        out.append(_frechet(mu, sigma, ref))
    return torch.cat(out)


def _kid_terms(x: Tensor, w: Tensor, ref: Reference) -> tuple[float, Tensor]:
    """(the KID estimate, the KID of each resample of counts ``w`` (B, N))."""
    n, m = len(x), ref.num
    q = torch.zeros(len(w), dtype=torch.float64, device=x.device)
    diag = torch.empty(n, dtype=torch.float64, device=x.device)
    row_xy = torch.empty(n, dtype=torch.float64, device=x.device)
    total_xx = 0.0
    for i in range(0, n, _BLOCK):
        k = _kernel(x[i : i + _BLOCK], x)
        total_xx += float(k.sum())
        diag[i : i + _BLOCK] = torch.diagonal(k, offset=i)
        q += ((w[:, i : i + _BLOCK] @ k) * w).sum(1)
        row_xy[i : i + _BLOCK] = sum(_kernel(x[i : i + _BLOCK], ref.features[j : j + 4 * _BLOCK]).sum(1)
                                     for j in range(0, m, 4 * _BLOCK))  # fmt: skip
    estimate = (total_xx - float(diag.sum())) / (n * (n - 1)) + ref.kernel_mean - 2 * float(row_xy.sum()) / (n * m)
    w2 = (w * w).sum(1)
    xx = (q - (w * w) @ diag) / (n * n - w2)  # pairs of distinct original samples
    return estimate, xx + ref.kernel_mean - 2 * (w @ row_xy) / (n * m)


def bootstrap_scores(features: Tensor, ref: Reference, resamples: int = 500, seed: int = 0,
                     kid_subsets: int = 100) -> dict:  # fmt: skip
    """FID and KID of generated ``features`` (N, D) against ``ref``, each with its 95 % bootstrap interval.

    Returns ``fid``, ``fid_ci95`` [lo, hi], ``kid``, ``kid_ci95``, ``kid_std`` and ``kid_subsets_mean`` (torch-fidelity's
    subsets), ``num_samples``, ``num_reference``, ``resamples``, ``fid_bootstrap_median``.
    """
    n = len(features)
    if n < 2:
        raise ValueError(f"FID needs at least 2 samples, got {n}")
    x = features.to(ref.mu.device, torch.float64)
    fid = fid_from_features(x, ref)
    w = _resample_counts(n, resamples, seed).to(x.device)
    boot_fid = _bootstrap_fid(x, w, ref).cpu().numpy()
    kid, boot_kid = _kid_terms(x, w, ref)
    size = min(1000, n, ref.num)
    subsets = kid_subsets_metric(features, ref.features, kid_subsets, size, seed)
    return {
        "fid": fid, "fid_ci95": list(_interval(fid, boot_fid)), "fid_bootstrap_median": float(np.median(boot_fid)),
        "kid": kid, "kid_ci95": list(_interval(kid, boot_kid.cpu().numpy())),
        "kid_std": float(subsets.std()), "kid_subsets_mean": float(subsets.mean()),
        "kid_subset_size": size, "num_samples": n, "num_reference": ref.num, "resamples": resamples,
    }  # fmt: skip


def kid_subsets_metric(x: Tensor, y: Tensor, subsets: int = 100, size: int = 1000, seed: int = 0) -> np.ndarray:
    """torch-fidelity's KID subsets, in torch: the same ``RandomState(seed)`` draws of ``size`` generated and ``size``
    reference features, the unbiased MMD^2 of each; their mean and std are torch-fidelity's KID mean and std."""
    rng = np.random.RandomState(seed)
    x32, y32, out = x.float().cpu(), y.float().cpu(), np.zeros(subsets)
    for i in range(subsets):
        f1 = x32[torch.from_numpy(rng.choice(len(x32), size, replace=False))]
        f2 = y32[torch.from_numpy(rng.choice(len(y32), size, replace=False))]
        k11, k22, k12 = _kernel(f1, f1), _kernel(f2, f2), _kernel(f1, f2)
        m = size
        out[i] = float((k11.sum() - k11.diagonal().sum() + k22.sum() - k22.diagonal().sum()) / (m * (m - 1))
                       - 2 * k12.sum() / (m * m))  # fmt: skip
    return out


def separable(a: tuple[float, float], b: tuple[float, float]) -> int:
    """-1 if interval ``a`` lies wholly below ``b`` (a is better), 1 if wholly above, 0 if they overlap."""
    return -1 if a[1] < b[0] else 1 if b[1] < a[0] else 0


def rank_by_intervals(intervals: dict[str, tuple[float, float]]) -> dict[str, int]:
    """Rank = 1 + the number of entries whose interval lies wholly below this one's: overlapping entries can share
    a rank, and an entry is ranked below another only where their intervals do not overlap."""
    return {k: 1 + sum(separable(b, a) == -1 for j, b in intervals.items() if j != k) for k, a in intervals.items()}
