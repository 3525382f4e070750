"""Denoising loss: eps- or x0-prediction with constant or min-SNR-gamma weights.

min-SNR-gamma (Hang et al. 2023, Eq. 9) weights the x0 loss by min(SNR_t, gamma), which is the
eps loss weighted by min(SNR_t, gamma) / SNR_t. Scale Space Diffusion uses x0 with gamma = 5,
its target being x_0 at the *output* resolution r(t-1): R_{1:t-1} x_0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import Tensor

from .process import ScaleSpaceProcess

Prediction = Literal["eps", "x0"]
Weighting = Literal["constant", "min_snr"]

# model(x_t, t, out_res, labels) -> raw prediction at out_res
Denoiser = Callable[[Tensor, Tensor, int, "Tensor | None"], Tensor]


@dataclass(frozen=True)
class DiffusionLoss:
    prediction: Prediction = "eps"  # what the network outputs
    weighting: Weighting = "constant"  # per-timestep loss weight
    snr_gamma: float = 5.0  # gamma of min-SNR-gamma

    def __post_init__(self):
        if self.prediction not in ("eps", "x0"):
            raise ValueError(f"unknown prediction {self.prediction!r}; use 'eps' or 'x0'")
        if self.weighting not in ("constant", "min_snr"):
            raise ValueError(f"unknown weighting {self.weighting!r}; use 'constant' or 'min_snr'")
        if not self.snr_gamma > 0:
            raise ValueError(f"snr_gamma must be > 0, got {self.snr_gamma}")

    def weight(self, process: ScaleSpaceProcess, t: Tensor) -> Tensor:
        """Per-sample weights (B,), float64."""
        if self.weighting == "constant":
            return torch.ones(len(t), dtype=torch.float64)
        snr = process.schedule.snr[t.cpu()]
        w = snr.clamp(max=self.snr_gamma)
        return w if self.prediction == "x0" else w / snr

    def __call__(
        self,
        model: Denoiser,
        process: ScaleSpaceProcess,
        x0: Tensor,
        t: Tensor,
        noise: Tensor,
        labels: Tensor | None = None,
    ) -> Tensor:
        """Per-sample weighted MSE (B,). x0 (B,C,R,R); t (B,) at one resolution; noise (B,C,r(t),r(t))."""
        x_t = process.q_sample(x0, t, noise)
        r_out = process.batch_res(t - 1)
        if self.prediction == "eps":
            if r_out != x_t.shape[-1]:
                raise ValueError("eps-prediction cannot change resolution; use prediction='x0'")
            target = noise
        else:
            target = process.degrade(x0, r_out)  # x0_hat^{r(s)} = R_{1:s} x_0
        pred = model(x_t, t, r_out, labels)
        mse = (pred.float() - target.float()).square().mean(dim=(1, 2, 3))
        return mse * self.weight(process, t).to(mse)
