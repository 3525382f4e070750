"""A network and a model defined outside the package, as a user's project would: the contract, nothing registered."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scale_space_diffusion.diffusion.ladder import ResolutionLadder
from scale_space_diffusion.diffusion.loss import DiffusionLoss
from scale_space_diffusion.diffusion.process import ScaleSpaceProcess
from scale_space_diffusion.diffusion.schedule import NoiseSchedule
from scale_space_diffusion.models.base import DiffusionModule
from scale_space_diffusion.models.settings import Optimization, Sampling
from scale_space_diffusion.networks.contract import records_config


class TinyNet(nn.Module):
    """Two convolutions and a timestep bias: a DenoisingNetwork (image_size, in_channels, num_classes, levels, config)."""

    @records_config
    def __init__(self, image_size: int = 8, in_channels: int = 1, hidden: int = 4):
        super().__init__()
        self.image_size, self.in_channels, self.num_classes, self.levels = image_size, in_channels, None, [image_size]
        self.inp, self.time, self.out = nn.Conv2d(in_channels, hidden, 3, padding=1), nn.Linear(1, hidden), nn.Conv2d(hidden, in_channels, 3, padding=1)

    def forward(self, x: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.out(F.silu(self.inp(x) + self.time(t.float()[:, None] / 1000)[:, :, None, None]))


class TinyModel(DiffusionModule):
    """A one-level model with a setting of its own, ``blur``, that a resumed run may change.

    Args:
        net: a TinyNet.
        blur: a made-up run setting (unused by the math).
        schedule: the noise schedule.
        optim: AdamW and EMA settings.
        sampling: sampler settings.
    """

    run_settings = DiffusionModule.run_settings + ("blur",)

    def __init__(self, net: nn.Module, blur: float = 0.0, schedule: NoiseSchedule = NoiseSchedule(timesteps=30),
                 optim: Optimization = Optimization(ema_decay=0.5), sampling: Sampling = Sampling(steps=2, grid_size=0)):  # fmt: skip
        process = ScaleSpaceProcess(schedule, ResolutionLadder(net.image_size, 1, schedule.T))
        super().__init__(net, process, DiffusionLoss("eps", "constant"), optim=optim, sampling=sampling)
        self.save_hyperparameters(ignore=["net"])
        self.blur = blur


def tiny(seed: int = 0) -> TinyModel:
    torch.manual_seed(seed)
    return TinyModel(TinyNet())
