"""Scale Space Diffusion (arXiv 2603.08709, CVPR 2026): noisy steps run at low resolution."""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor

from ..networks import official
from ..diffusion.degradation import Resize, ResizeKind
from ..images import ladder_strip, to_uint8
from ..diffusion.ladder import LadderSchedule, ResolutionLadder
from ..diffusion.loss import DiffusionLoss, Weighting
from ..networks.flexi_unet import FlexiUNet
from ..diffusion.process import ScaleSpaceProcess
from ..diffusion.schedule import BetaSchedule, NoiseSchedule
from .base import DiffusionModule, sample_generators

UNetMode = Literal["flexi", "full"]


def upsample(x: Tensor, size: int) -> Tensor:
    """Bilinear (antialiased, as the authors call it) resize up to ``size``."""
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


class ScaleSpaceDiffusion(DiffusionModule):
    """x_t = a_t R_{1:t} x_0 + sigma_t eps on a resolution ladder, denoised by a Flexi-UNet.

    The network predicts x_0 at the output resolution r(t-1) (Eq. x0-prediction), trained with
    weight min(SNR_t, snr_gamma). With ``num_levels = 1`` this is DDPM with x0-prediction.
    """

    def __init__(
        self,
        net: FlexiUNet,  # FlexiUNet; any UNet with unet_mode="full"
        num_levels: int = 3,  # L: resolutions R, R/2, ..., R/2^(L-1)
        ladder_schedule: LadderSchedule = "convex",  # t -> level: "convex" (official) or "equal"
        gamma: float = 0.5,  # convexity; the official default "ConvexDecay 0.5"
        resize: ResizeKind = "bilinear",  # the degradation R: antialiased bilinear or 2x2 box
        unet_mode: UNetMode = "flexi",  # "full": the paper's ablation, every step runs the whole UNet at R
        official_top_transition: bool = True,  # into the top level, upsample x_t and run the R path (authors' code)
        official_checkpoint: str | None = None,  # authors' released weights: a local .pt or "prateksha-u/ssd/<file>"
        beta_schedule: BetaSchedule = "linear",
        timesteps: int = 1000,
        weighting: Weighting = "min_snr",
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
        if unet_mode not in ("flexi", "full"):
            raise ValueError(f"unknown unet_mode {unet_mode!r}; use 'flexi' or 'full'")
        levels = getattr(net, "levels", [])
        if num_levels > len(levels):
            raise ValueError(
                f"num_levels={num_levels} but the UNet has only {len(levels)} levels {levels}; "
                f"use num_levels <= {len(levels)} or a longer channel_mult"
            )
        if unet_mode == "flexi" and not isinstance(net, FlexiUNet):
            raise TypeError(
                f"unet_mode='flexi' needs a FlexiUNet, got {type(net).__name__}; use a FlexiUNet or unet_mode='full'"
            )
        self.unet_mode, self.official_top_transition = unet_mode, official_top_transition
        ladder = ResolutionLadder(net.image_size, num_levels, timesteps, ladder_schedule, gamma)
        self.process = ScaleSpaceProcess(NoiseSchedule.make(beta_schedule, timesteps), ladder, Resize(resize))
        self.loss_fn = DiffusionLoss("x0", weighting, snr_gamma)
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
        return cls(FlexiUNet(**cfg), num_levels=levels, official_checkpoint=path, ema_decay=None, sample_steps=sample_steps)

    def net_path(self, in_res: int, out_res: int) -> tuple[int, int]:
        R = self.image_size
        if self.unet_mode == "full" or (self.official_top_transition and out_res == R and in_res != R):
            return (R, R)
        return (in_res, out_res)

    def network(self, x_t: Tensor, t: Tensor, out_res: int, labels: Tensor | None) -> Tensor:
        R, r = self.image_size, x_t.shape[-1]
        if self.unet_mode == "full":  # ablation: whole UNet at R, output resized down to out_res
            return self.process.resize.down(self.net(upsample(x_t, R), t, labels), out_res)
        if self.net_path(r, out_res) != (r, out_res):  # into the top level: upsample x_t, run the R path
            return self.net(upsample(x_t, R), t, labels)
        return self.net(x_t, t, labels, out_res=out_res)

    def predict_step(self, batch: Tensor, batch_idx: int) -> dict:
        """Samples per index; the first batch also returns a ladder strip of x_t and x0_hat at each level."""
        indices = batch.cpu()
        last_at_res: dict[int, tuple[Tensor, Tensor]] = {}

        def keep(d):  # the last state seen at each resolution
            last_at_res[d["x"].shape[-1]] = (d["x"][:4].cpu(), d["denoised"][:4].cpu())

        images = self.sample(sample_generators(self.sample_seed, indices), self.sample_labels(indices),
                             callback=keep if batch_idx == 0 else None)  # fmt: skip
        out = {"index": indices, "images": to_uint8(images).cpu()}
        if last_at_res:
            res = sorted(last_at_res)
            rows = [[last_at_res[r][k][i] for r in res] for i in range(min(4, len(indices))) for k in (0, 1)]
            out["ladder"] = ladder_strip(rows, max(64, self.image_size))  # upscaled for viewing
        return out
