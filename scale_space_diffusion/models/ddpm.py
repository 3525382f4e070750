"""DDPM (Ho et al. 2020) with an ADM UNet: the reference both cheaper models are measured against."""

from __future__ import annotations

from torch import nn

from ..diffusion.ladder import ResolutionLadder
from ..diffusion.loss import DiffusionLoss, Prediction, Weighting
from ..diffusion.process import ScaleSpaceProcess
from ..diffusion.schedule import BetaSchedule, NoiseSchedule
from .base import DiffusionModule


class DDPM(DiffusionModule):
    """Plain pixel-space DDPM: a one-level scale-space process, so R = I at every step."""

    def __init__(
        self,
        net: nn.Module,  # a UNet (or any module called as net(x, t, labels))
        beta_schedule: BetaSchedule = "linear",
        timesteps: int = 1000,  # T
        prediction: Prediction = "eps",  # the network predicts eps or x0
        weighting: Weighting = "constant",  # loss weight per timestep; "min_snr" is min(SNR, snr_gamma)
        snr_gamma: float = 5.0,
        lr: float = 2e-4,
        weight_decay: float = 0.0,
        ema_decay: float | None = 0.9999,
        ema_start_step: int = 0,
        sample_steps: int | None = 100,
        sample_seed: int = 0,
        grid_every_n_epochs: int = 1,
        grid_size: int = 16,
        loss_buckets: int = 4,
        torch_compile: bool = False,
    ):
        super().__init__(net, lr, weight_decay, ema_decay, ema_start_step, sample_steps, sample_seed,
                         grid_every_n_epochs, grid_size, loss_buckets, torch_compile)  # fmt: skip
        self.save_hyperparameters(ignore=["net"])
        schedule = NoiseSchedule.make(beta_schedule, timesteps)
        self.process = ScaleSpaceProcess(schedule, ResolutionLadder(net.image_size, 1, timesteps))
        self.loss_fn = DiffusionLoss(prediction, weighting, snr_gamma)
