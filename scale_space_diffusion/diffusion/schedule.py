"""Noise schedules: t -> (a_t, sigma_t) with a_t^2 + sigma_t^2 = 1 (variance preserving).

Timesteps are indexed t = 0..T-1 as in openai/guided-diffusion: x_0 is the data and
step t produces x_{t+1} in DDPM's 1-based notation. ``abar[t]`` is prod_{i<=t} (1 - beta_i).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

BetaSchedule = Literal["linear", "cosine"]


def linear_betas(T: int) -> Tensor:
    """DDPM / ADM linear betas, 1e-4 -> 0.02 at T = 1000 and rescaled for other T."""
    scale = 1000 / T
    return torch.linspace(scale * 1e-4, scale * 0.02, T, dtype=torch.float64)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Nichol & Dhariwal 2021, Eq. 17: abar(t) = cos^2(((t/T + s) / (1 + s)) * pi/2)."""
    f = lambda u: math.cos((u + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    betas = [min(1 - f((i + 1) / T) / f(i / T), max_beta) for i in range(T)]
    return torch.tensor(betas, dtype=torch.float64)


@dataclass(frozen=True)
class NoiseSchedule:
    """A variance-preserving schedule; all tensors are float64 (T,) on the CPU.

    Use :meth:`at` to gather coefficients for a batch of timesteps on the batch's device.
    """

    betas: Tensor
    abar: Tensor = field(init=False, repr=False)

    def __post_init__(self):
        b = self.betas
        if b.ndim != 1 or not bool(((b > 0) & (b < 1)).all()):
            raise ValueError("betas must be a 1-D tensor with 0 < beta < 1")
        object.__setattr__(self, "abar", torch.cumprod(1 - b, dim=0))

    @classmethod
    def make(cls, kind: BetaSchedule = "linear", T: int = 1000) -> NoiseSchedule:
        if T < 1:
            raise ValueError(f"timesteps={T} must be >= 1, e.g. 1000")
        if kind == "linear":
            return cls(linear_betas(T))
        if kind == "cosine":
            return cls(cosine_betas(T))
        raise ValueError(f"unknown beta schedule {kind!r}; use 'linear' or 'cosine'")

    @property
    def T(self) -> int:
        return len(self.betas)

    @property
    def a(self) -> Tensor:
        """a_t = sqrt(abar_t), the signal scale."""
        return self.abar.sqrt()

    @property
    def sigma(self) -> Tensor:
        """sigma_t = sqrt(1 - abar_t), the noise scale."""
        return (1 - self.abar).sqrt()

    @property
    def snr(self) -> Tensor:
        """SNR_t = a_t^2 / sigma_t^2."""
        return self.abar / (1 - self.abar)

    def a_sigma(self, t: Tensor | int) -> tuple[Tensor, Tensor]:
        """(a_t, sigma_t) for t in -1..T-1, where t = -1 is the clean data (a = 1, sigma = 0)."""
        abar = torch.cat([torch.ones(1, dtype=torch.float64), self.abar])[torch.as_tensor(t) + 1]
        return abar.sqrt(), (1 - abar).sqrt()

    def at(self, values: Tensor, t: Tensor, like: Tensor) -> Tensor:
        """Gather ``values[t]`` and shape it (B,1,1,1) with ``like``'s dtype and device."""
        out = values[t.cpu()].to(device=like.device, dtype=like.dtype)
        return out.view(-1, *([1] * (like.ndim - 1)))

    def same_as(self, other: NoiseSchedule) -> bool:
        return self.T == other.T and torch.allclose(self.betas, other.betas)
