"""One run's model (DDPM, DDPM-x0 and SSD share the backbone width, the SD students the slim one) and its training
with timed milestone checkpoints."""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
import torch

from scale_space_diffusion import DDPM, FlexiUNet, ScaleSpaceDiffusion, SpectralDiffusion, SpectralUNet, UNet
from scale_space_diffusion.diffusion.loss import DiffusionLoss
from scale_space_diffusion.diffusion.schedule import NoiseSchedule
from scale_space_diffusion.models.settings import Optimization, Sampling
from scale_space_diffusion.posthoc_ema import PowerEMA

from .presets import Preset

SSD = {"ssd_convex": (3, "convex", "flexi"), "ssd_2l": (2, "convex", "flexi"),
       "ssd_equal": (3, "equal", "flexi"), "ssd_full_unet": (3, "convex", "full")}  # run -> (levels, ladder, unet_mode)
SD = {"sd_distilled": (True, True), "sd_plain": (True, False), "sd_nogate_distilled": (False, True),
      "sd_nogate": (False, False)}  # run -> (gating, distilled)  # fmt: skip
X0_LOSS = DiffusionLoss("x0", "min_snr", 5.0)  # SSD's loss; DDPM-x0 and the SD students train with it too
TEACHERS = ("ddpm", "ddpm_x0")  # the distilled students learn from the one with the lower FID in the same run
LOSS_WINDOW = 50  # training steps per point of the loss curve


def distilled(name: str) -> bool:
    return SD.get(name, (False, False))[1]


def build(name: str, p: Preset, teacher: str | None):
    """A fresh model for run ``name``; ``teacher`` is the checkpoint of the DDPM the distilled students learn from."""
    width = p.slim_channels if name in SD else p.model_channels
    heads = p.num_heads
    while heads > 1 and any(width * m % heads for m in p.channel_mult):
        heads //= 2
    net = dict(image_size=p.image_size, in_channels=p.channels, model_channels=width, channel_mult=p.channel_mult,
               num_res_blocks=p.num_res_blocks, attention_resolutions=p.attention_resolutions, num_heads=heads)
    common = dict(schedule=NoiseSchedule("linear", p.timesteps), sampling=Sampling(grid_every_n_epochs=0, grid_size=0),
                  optim=Optimization(lr=p.lr, ema_decay=p.ema_decay, ema_start_step=p.ema_start_step))  # fmt: skip
    if name in TEACHERS:  # DDPM-x0 is SSD with 1 level, written as a DDPM so that it can teach
        return DDPM(UNet(**net), loss=X0_LOSS, **common) if name == "ddpm_x0" else DDPM(UNet(**net), **common)
    if name in SSD:
        levels, ladder, mode = SSD[name]
        return ScaleSpaceDiffusion(FlexiUNet(**net), num_levels=levels, gamma=0.5, ladder_schedule=ladder,
                                   unet_mode=mode, **common)  # fmt: skip
    if distilled(name) and teacher is None:
        raise ValueError(f"{name} needs a teacher: run ddpm or ddpm_x0 too, or pass --ckpt ddpm_x0=PATH")
    return SpectralDiffusion(SpectralUNet(**net, gating=SD[name][0]), teacher=teacher if distilled(name) else None,
                             loss=X0_LOSS, **common)  # fmt: skip


class Milestones(L.Callback):
    """Training seconds (checkpoint saves excluded) at every batch start, every step's loss, and checkpoints at
    ``steps`` and at the first step past ``seconds`` (DDPM's wall-clock); stops once both are passed."""

    def __init__(self, folder: Path, steps: dict[int, list[str]], seconds: float | None):
        self.folder, self.steps, self.seconds = folder, steps, seconds
        self.starts, self.losses, self.saved, self.paused, self.batch = [], [], [], 0.0, 0

    def elapsed(self, pl_module) -> float:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter() - self.paused - self.start

    def on_train_start(self, trainer, pl_module):
        self.start = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.starts.append(self.elapsed(pl_module))
        self.batch = len(batch[0])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(outputs["loss"].detach())
        step, labels = trainer.global_step, list(self.steps.get(trainer.global_step, []))
        wall_done = self.seconds is None or any("DDPM wall-clock" in c["labels"] for c in self.saved)
        if not wall_done and self.elapsed(pl_module) >= self.seconds:
            labels, wall_done = [*labels, "DDPM wall-clock"], True
        if labels:
            seconds, start = self.elapsed(pl_module), time.perf_counter()
            trainer.save_checkpoint(path := self.folder / f"step{step:06d}.ckpt")
            self.paused += time.perf_counter() - start
            self.saved.append({"step": step, "labels": labels, "path": str(path), "train_seconds": seconds})
        if self.steps and step >= max(self.steps) and wall_done:
            trainer.should_stop = True

    def on_train_end(self, trainer, pl_module):
        self.starts.append(self.elapsed(pl_module))

    def images_per_s(self, warmup: int) -> float:
        """From one batch start to the next after ``warmup`` steps (data, forward, backward, optimizer, EMA)."""
        timed = self.starts[min(warmup, len(self.starts) - 2) :]  # at least one timed step
        return (len(timed) - 1) * self.batch / (timed[-1] - timed[0])

    def loss_curve(self) -> list[float]:
        """The training loss averaged over windows of ``LOSS_WINDOW`` steps (the last one may be shorter)."""
        return [round(float(w.mean()), 6) for w in torch.stack(self.losses).float().cpu().split(LOSS_WINDOW)]


def fit(model, data: L.LightningDataModule, max_steps: int, p: Preset, folder: Path, steps: dict[int, list[str]],
        seconds: float | None) -> Milestones:  # fmt: skip
    """Train with a Lightning Trainer (no validation or logger), saving ``steps`` under ``folder`` and, for the EMA
    length chosen after training, power-EMA snapshots (EDM2's sigma_rel 0.05 and 0.10) every tenth of ``p.steps``
    under ``folder/phema``."""
    L.seed_everything(p.run_seed, verbose=False)  # the same data order for every run
    folder.mkdir(parents=True, exist_ok=True)
    milestones = Milestones(folder, steps, seconds)
    snapshots = [PowerEMA(every_n_steps=max(1, p.steps // 10), dirpath=str(folder / "phema"))] if p.ema_lengths else []
    L.Trainer(max_steps=max_steps, accelerator="auto", devices=1, logger=False, enable_checkpointing=False,
              limit_val_batches=0, num_sanity_val_steps=0, enable_model_summary=False, gradient_clip_val=1.0,
              callbacks=[milestones, *snapshots], default_root_dir=str(folder),
              precision=p.precision).fit(model, data)  # fmt: skip
    return milestones
