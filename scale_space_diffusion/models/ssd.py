"""Scale Space Diffusion (arXiv 2603.08709, CVPR 2026): noisy steps run at low resolution."""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from ..diffusion.degradation import Resize, ResizeKind
from ..diffusion.ladder import LadderSchedule, ResolutionLadder
from ..diffusion.loss import DiffusionLoss
from ..diffusion.process import ScaleSpaceProcess
from ..diffusion.schedule import NoiseSchedule
from ..images import ladder_strip
from ..networks import official
from ..networks.contract import check_network
from ..networks.flexi_unet import FlexiUNet
from .base import CompileMode, DiffusionModule
from .settings import Optimization, Sampling

UNetMode = Literal["flexi", "full"]


def upsample(x: Tensor, size: int) -> Tensor:
    """Bilinear (antialiased, as the authors call it) resize up to ``size``."""
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


class ScaleSpaceDiffusion(DiffusionModule):
    """x_t = a_t R_{1:t} x_0 + sigma_t eps (P1) on a resolution ladder, denoised by a Flexi-UNet.

    The network predicts x_0 at the output resolution r(t-1), trained with weight min(SNR_t, snr_gamma).
    With ``num_levels = 1`` this is DDPM with x0-prediction (the SSD paper's DDPM-x0 baseline).

    Args:
        net: a FlexiUNet; any UNet with unet_mode="full".
        num_levels: L, the resolutions R, R/2, ..., R/2^(L-1) of the ladder.
        ladder_schedule: which timesteps live at which resolution: "convex" (official) or "equal".
        gamma: convexity of the "convex" resolution schedule; the official "ConvexDecay 0.5".
        resize: the degradation R: antialiased bilinear (official) or 2x2 box averaging.
        unet_mode: "flexi" runs only the blocks a step's resolution needs; "full" (the paper's ablation) runs the
            whole UNet at R every step.
        official_top_transition: at the transition into the top resolution, upsample x_t and run the R path, as the
            authors' code does.
        official_checkpoint: the authors' released weights: a local .pt file or "prateksha-u/ssd/<file>".
        schedule: the noise schedule (kind and timesteps T).
        loss: the weighting of the x0-prediction loss (prediction must be x0).
        optim: AdamW and EMA settings.
        sampling: sampler steps, seeds and sample grids.
        torch_compile: torch.compile the network and its EMA, one static-shape graph per network path: true (mode
            "default") or a mode; "reduce-overhead" runs each path as a CUDA graph (the GPU's fast path). Off on
            CPU unless measured faster there; the first step of each path prints its compile time.
    """

    training_files = ("official_checkpoint",)

    def __init__(
        self,
        net: FlexiUNet,
        num_levels: int = 3,
        ladder_schedule: LadderSchedule = "convex",
        gamma: float = 0.5,
        resize: ResizeKind = "bilinear",
        unet_mode: UNetMode = "flexi",
        official_top_transition: bool = True,
        official_checkpoint: str | None = None,
        schedule: NoiseSchedule = NoiseSchedule(),
        loss: DiffusionLoss = DiffusionLoss("x0", "min_snr", 5.0),
        optim: Optimization = Optimization(),
        sampling: Sampling = Sampling(),
        torch_compile: bool | CompileMode = False,
    ):
        if unet_mode not in ("flexi", "full"):
            raise ValueError(f"unknown unet_mode {unet_mode!r}; use 'flexi' or 'full'")
        if num_levels > len(check_network(net).levels):
            raise ValueError(
                f"num_levels={num_levels} but the UNet has only {len(net.levels)} levels {net.levels}; "
                f"use num_levels <= {len(net.levels)} or a longer channel_mult"
            )
        if unet_mode == "flexi" and not isinstance(net, FlexiUNet):
            raise TypeError(
                f"unet_mode='flexi' needs a FlexiUNet, got {type(net).__name__}; use a FlexiUNet or unet_mode='full'"
            )
        if loss.prediction != "x0":
            raise ValueError(
                f"loss.prediction={loss.prediction!r}: Scale Space Diffusion predicts x_0 at the output resolution; "
                "set --model.init_args.loss.prediction=x0"
            )
        ladder = ResolutionLadder(net.image_size, num_levels, schedule.T, ladder_schedule, gamma)
        process = ScaleSpaceProcess(schedule, ladder, Resize(resize))
        super().__init__(net, process, loss, optim=optim, sampling=sampling, torch_compile=torch_compile)
        self.save_hyperparameters(ignore=["net"])
        self.unet_mode, self.official_top_transition = unet_mode, official_top_transition
        self.pretrained = official_checkpoint is not None
        if official_checkpoint is not None:
            state = official.load_official_state(official.resolve(official_checkpoint))
            net.load_state_dict(official.to_ours(state, net))

    @classmethod
    def from_official(cls, checkpoint: str, image_size: int | None = None, num_levels: int | None = None,
                      num_heads: int = 4, sample_steps: int | None = 100) -> "ScaleSpaceDiffusion":  # fmt: skip
        """Build the released architecture from the checkpoint's shapes and file name, and load it."""
        path = official.resolve(checkpoint)
        cfg = official.infer_config(official.load_official_state(path), path, image_size, num_heads)
        levels = num_levels or cfg.pop("num_levels", None)
        cfg.pop("num_levels", None)
        if levels is None:
            raise ValueError(f"cannot tell the number of levels from {path!r}; pass num_levels")
        return cls(FlexiUNet(**cfg), num_levels=levels, official_checkpoint=path, optim=Optimization(ema_decay=None),
                   sampling=Sampling(steps=sample_steps))

    def net_path(self, in_res: int, out_res: int) -> tuple[int, int]:
        R = self.image_size
        if self.unet_mode == "full" or (self.official_top_transition and out_res == R and in_res != R):
            return (R, R)
        return (in_res, out_res)

    def raw_network(self, x_t: Tensor, t: Tensor, out_res: int, labels: Tensor | None, net: nn.Module | None = None) -> Tensor:
        net = self.net if net is None else net
        R, r = self.image_size, x_t.shape[-1]
        if self.unet_mode == "full":  # ablation: whole UNet at R, output resized down to out_res
            return self.process.resize.down(net(upsample(x_t, R), t, labels), out_res)
        if self.net_path(r, out_res) != (r, out_res):  # into the top level: upsample x_t, run the R path
            return net(upsample(x_t, R), t, labels)
        return net(x_t, t, labels, out_res=out_res)

    def predict_trace(self, batch_idx: int):
        """The first predict batch also returns a ladder strip: x_t and x0_hat at the end of each level."""
        if batch_idx != 0:
            return None, dict
        last_at_res: dict[int, tuple[Tensor, Tensor]] = {}

        def keep(d: dict) -> None:  # the last state seen at each resolution, first four images (on the device)
            last_at_res[d["x"].shape[-1]] = (d["x"][:4].clone(), d["denoised"][:4].clone())

        def finish() -> dict:
            res = sorted(last_at_res)
            n = len(next(iter(last_at_res.values()))[0]) if res else 0
            rows = [[last_at_res[r][k][i].cpu() for r in res] for i in range(n) for k in (0, 1)]
            return {"ladder": ladder_strip(rows, max(64, self.image_size))} if rows else {}  # upscaled for viewing

        return keep, finish
