"""DDPM (Ho et al. 2020) with an ADM UNet: the reference both cheaper models are measured against."""

from __future__ import annotations

from torch import nn

from ..diffusion.ladder import ResolutionLadder
from ..diffusion.loss import DiffusionLoss
from ..diffusion.process import ScaleSpaceProcess
from ..diffusion.schedule import NoiseSchedule
from ..networks.contract import check_network
from .base import CompileMode, DiffusionModule
from .settings import Optimization, Sampling


class DDPM(DiffusionModule):
    """Plain pixel-space DDPM: a one-level scale-space process, so R = I at every step.

    Args:
        net: a UNet (or any DenoisingNetwork called as net(x, t, labels)).
        schedule: the noise schedule (kind and timesteps T).
        loss: what the network predicts (eps or x0) and the per-timestep weighting.
        optim: AdamW and EMA settings.
        sampling: sampler steps, seeds and sample grids.
        torch_compile: torch.compile the network and its EMA, one static-shape graph per network path: true (mode
            "default") or a mode; "reduce-overhead" runs each path as a CUDA graph (the GPU's fast path). Off on
            CPU unless measured faster there; the first step of each path prints its compile time.
    """

    def __init__(
        self,
        net: nn.Module,
        schedule: NoiseSchedule = NoiseSchedule(),
        loss: DiffusionLoss = DiffusionLoss("eps", "constant"),
        optim: Optimization = Optimization(),
        sampling: Sampling = Sampling(),
        torch_compile: bool | CompileMode = False,
    ):
        process = ScaleSpaceProcess(schedule, ResolutionLadder(check_network(net).image_size, 1, schedule.T))
        super().__init__(net, process, loss, optim=optim, sampling=sampling, torch_compile=torch_compile)
        self.save_hyperparameters(ignore=["net"])
