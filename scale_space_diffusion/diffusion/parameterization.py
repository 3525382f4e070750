"""What the raw network predicts, and how its output becomes the denoised estimate x0_hat.

Two callables with distinct contracts meet here:

    RawNetwork(x_t, t, out_res, labels) -> eps_hat or x0_hat at out_res   (what the loss trains)
    Denoiser(x_t, t, out_res, labels)   -> x0_hat at out_res              (what samplers call; :mod:`.denoiser`)

:meth:`Parameterization.x0` turns the first's output into the second's. With eps-prediction,
x0_hat = (x_t - sigma_t eps_hat) / a_t (Ho et al. 2020, Eq. 15), which needs out_res = r(t).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from torch import Tensor

from .schedule import NoiseSchedule

Prediction = Literal["eps", "x0"]



class RawNetwork(Protocol):
    """What the loss trains: eps_hat or x0_hat (B,C,out_res,out_res) for x_t (B,C,r,r), t (B,) and labels (B,)."""

    def __call__(self, x_t: Tensor, t: Tensor, out_res: int, labels: Tensor | None) -> Tensor: ...


@dataclass(frozen=True)
class Parameterization:
    prediction: Prediction = "eps"  # what the network outputs

    def __post_init__(self):
        if self.prediction not in ("eps", "x0"):
            raise ValueError(f"unknown prediction {self.prediction!r}; use 'eps' or 'x0'")

    def target(self, x0_out: Tensor, noise: Tensor) -> Tensor:
        """The regression target: eps (Ho et al. 2020, Eq. 14) or x_0 at the output resolution."""
        return noise if self.prediction == "eps" else x0_out

    def x0(self, raw: Tensor, x_t: Tensor, t: Tensor, schedule: NoiseSchedule) -> Tensor:
        """x0_hat (B,C,r,r) from the raw output; eps: (x_t - sigma_t eps_hat) / a_t (Ho et al. 2020, Eq. 15)."""
        if self.prediction == "x0":
            return raw
        if raw.shape[-1] != x_t.shape[-1]:
            raise ValueError("eps-prediction cannot change resolution; use prediction='x0'")
        return (x_t - schedule.at("sigma", t, x_t) * raw) / schedule.at("a", t, x_t)

    def from_x0(self, x0_hat: Tensor, x_t: Tensor, t: Tensor, schedule: NoiseSchedule) -> Tensor:
        """The raw output that gives ``x0_hat``: the inverse of :meth:`x0`. eps: (x_t - a_t x0_hat) / sigma_t (Ho et
        al. 2020, Eq. 4 solved for eps), which needs x0_hat at x_t's resolution."""
        if self.prediction == "x0":
            return x0_hat
        if x0_hat.shape[-1] != x_t.shape[-1]:
            raise ValueError("eps-prediction cannot change resolution; use prediction='x0'")
        return (x_t - schedule.at("a", t, x_t) * x0_hat) / schedule.at("sigma", t, x_t)

    def convert(self, raw: Tensor, x_t: Tensor, t: Tensor, schedule: NoiseSchedule, to: Parameterization) -> Tensor:
        """This parameterisation's raw output as ``to``'s (eps <-> x0 through x0_hat)."""
        return raw if to == self else to.from_x0(self.x0(raw, x_t, t, schedule), x_t, t, schedule)

