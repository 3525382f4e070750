"""Noise schedules: t -> (a_t, sigma_t) with a_t^2 + sigma_t^2 = 1 (variance preserving).

Timesteps are indexed t = 0..T-1 as in openai/guided-diffusion: x_0 is the data and
step t produces x_{t+1} in DDPM's 1-based notation. ``abar[t]`` is prod_{i<=t} (1 - beta_i).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

import torch
from torch import Tensor

BetaSchedule = Literal["linear", "cosine"]
Table = Literal["a", "sigma", "snr"]


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
    """A variance-preserving schedule of ``timesteps`` steps (Ho et al. 2020, Eq. 4: x_t = a_t x_0 + sigma_t eps).

    A typed argument of every model (``schedule: {kind: linear, timesteps: 1000}`` in YAML). The derived
    tensors are float64 (T,) on the CPU, for host-side math; :meth:`at` gathers coefficients for a batch from a
    copy of the table that lives on the batch's device (made once per device), so a step never reads the device.

    Args:
        kind: "linear" (DDPM / ADM betas) or "cosine" (Nichol & Dhariwal 2021).
        timesteps: T, the number of diffusion steps.
    """

    kind: BetaSchedule = "linear"
    timesteps: int = 1000
    betas: Tensor = field(init=False, repr=False, compare=False)
    abar: Tensor = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        T = self.timesteps
        if self.kind not in ("linear", "cosine"):
            raise ValueError(f"unknown beta schedule {self.kind!r}; use 'linear' or 'cosine'")
        if T < 1:
            raise ValueError(f"timesteps={T} must be >= 1, e.g. 1000")
        if self.kind == "linear" and T <= 20:
            raise ValueError(
                f"timesteps={T} is too few for the linear schedule, whose last beta is 0.02 * 1000 / T and must be "
                "< 1; use timesteps >= 21 (e.g. 1000), or kind='cosine'"
            )
        b = linear_betas(T) if self.kind == "linear" else cosine_betas(T)
        object.__setattr__(self, "betas", b)
        object.__setattr__(self, "abar", torch.cumprod(1 - b, dim=0))

    @classmethod
    def make(cls, kind: BetaSchedule = "linear", T: int = 1000) -> NoiseSchedule:
        return cls(kind, T)

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

    def host_a_sigma(self, t: int) -> tuple[float, float]:
        """(a_t, sigma_t) of one timestep t in -1..T-1 as Python floats, cached: the sampler's host-side coefficients."""
        return _host_a_sigma(self, int(t))

    def table(self, name: Table, device: torch.device | str) -> Tensor:
        """The (T,) table ``a``, ``sigma`` or ``snr`` on ``device``, float64 (float32 on MPS); copied once per device."""
        return _device_table(self, name, torch.device(device))

    def at(self, name: Table, t: Tensor, like: Tensor) -> Tensor:
        """``name``_t for timesteps t (B,) on ``like``'s device, shaped (B,1,...,1) with ``like``'s dtype."""
        out = self.table(name, like.device)[t.to(like.device)].to(like.dtype)
        return out.view(-1, *([1] * (like.ndim - 1)))


@lru_cache(maxsize=65536)
def _host_a_sigma(schedule: NoiseSchedule, t: int) -> tuple[float, float]:
    a, sigma = schedule.a_sigma(t)
    return float(a), float(sigma)


@lru_cache(maxsize=None)
def _device_table(schedule: NoiseSchedule, name: Table, device: torch.device) -> Tensor:
    if name not in ("a", "sigma", "snr"):
        raise ValueError(f"unknown schedule table {name!r}; use 'a', 'sigma' or 'snr'")
    dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
    return getattr(schedule, name).to(device=device, dtype=dtype)
