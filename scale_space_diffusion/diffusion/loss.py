"""Denoising loss: eps- or x0-prediction with constant or min-SNR-gamma weights.

min-SNR-gamma (Hang et al. 2023, Sec. 3.4: w_t = min(SNR_t, gamma)) weights the x0 loss by min(SNR_t, gamma), which is the
eps loss weighted by min(SNR_t, gamma) / SNR_t. Scale Space Diffusion uses x0 with gamma = 5,
its target being x_0 at the *output* resolution r(t-1): R_{1:t-1} x_0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from .parameterization import Parameterization, Prediction, RawNetwork
from .process import ScaleSpaceProcess

Weighting = Literal["constant", "min_snr"]


@dataclass(frozen=True)
class DiffusionLoss:
    prediction: Prediction = "eps"  # what the network outputs
    weighting: Weighting = "constant"  # per-timestep loss weight
    snr_gamma: float = 5.0  # gamma of min-SNR-gamma

    def __post_init__(self):
        Parameterization(self.prediction)  # validates
        if self.weighting not in ("constant", "min_snr"):
            raise ValueError(f"unknown weighting {self.weighting!r}; use 'constant' or 'min_snr'")
        if not self.snr_gamma > 0:
            raise ValueError(f"snr_gamma must be > 0, got {self.snr_gamma}")

    @property
    def parameterization(self) -> Parameterization:
        return Parameterization(self.prediction)

    def weight(self, process: ScaleSpaceProcess, t: Tensor) -> Tensor:
        """Per-sample weights (B,), float64 (float32 on MPS), on t's device."""
        snr = process.schedule.table("snr", t.device)[t]
        if self.weighting == "constant":
            return torch.ones_like(snr)
        w = snr.clamp(max=self.snr_gamma)
        return w if self.prediction == "x0" else w / snr

    def __call__(
        self,
        raw_network: RawNetwork,
        process: ScaleSpaceProcess,
        x0: Tensor,
        t: Tensor,
        noise: Tensor,
        labels: Tensor | None = None,
        out_res: int | None = None,
    ) -> Tensor:
        """Per-sample weighted MSE (B,). x0 (B,C,R,R); t (B,) at one resolution r(t); noise (B,C,r(t),r(t));
        out_res = r(t-1): a caller whose t lives on a device passes it, read from its host copy of t; None reads t itself
        (which must then be on the CPU)."""
        x_t = process.q_sample(x0, t, noise)
        r_out = process.batch_res(t - 1) if out_res is None else out_res
        if self.prediction == "eps" and r_out != x_t.shape[-1]:
            raise ValueError("eps-prediction cannot change resolution; use prediction='x0'")
        target = self.parameterization.target(process.degrade(x0, r_out), noise)  # x_0 target: R_{1:t-1} x_0
        pred = raw_network(x_t, t, r_out, labels)
        mse = (pred.float() - target.float()).square().mean(dim=(1, 2, 3))
        return mse * self.weight(process, t).to(mse)
