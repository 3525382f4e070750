"""One benchmark run: build (or load) a model, train it, sample PNGs, time it.

Every run uses the package's own classes; DDPM and the SSD runs share the backbone width, and
Spectral Diffusion's slim net is a quarter of it.
"""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
import torch
from tqdm.auto import tqdm

from scale_space_diffusion import DDPM, FlexiUNet, ScaleSpaceDiffusion, SpectralDiffusion, SpectralUNet, UNet
from scale_space_diffusion.images import save_png, to_uint8
from scale_space_diffusion.diffusion.rng import sample_generators
from scale_space_diffusion.diffusion.schedule import NoiseSchedule
from scale_space_diffusion.models.base import DiffusionModule
from scale_space_diffusion.models.settings import Optimization, Sampling

from .presets import Preset

RUNS = ("ddpm", "ssd_convex", "ssd_equal", "ssd_full_unet", "sd_distilled", "sd_plain")
DESCRIPTIONS = {
    "ddpm": "DDPM, eps-prediction, ADM UNet (the reference)",
    "ssd_convex": "SSD, 3 levels 32/16/8, convex-0.5 ladder, Flexi-UNet",
    "ssd_equal": "SSD, 3 levels, equal ladder, Flexi-UNet",
    "ssd_full_unet": "SSD, 3 levels, convex-0.5, full UNet at every step (ablation)",
    "sd_distilled": "Spectral Diffusion, 1/4-width wavelet-gated UNet, distilled from the ddpm run",
    "sd_plain": "the same slim net without a teacher",
}
_SSD = {  # run -> ScaleSpaceDiffusion arguments
    "ssd_convex": dict(ladder_schedule="convex", unet_mode="flexi"),
    "ssd_equal": dict(ladder_schedule="equal", unet_mode="flexi"),
    "ssd_full_unet": dict(ladder_schedule="convex", unet_mode="full"),
}
SSD_LEVELS = 3


def net_kwargs(p: Preset, width: int) -> dict:
    return dict(image_size=p.image_size, in_channels=1, model_channels=width, channel_mult=p.channel_mult,
                num_res_blocks=p.num_res_blocks, attention_resolutions=p.attention_resolutions, num_heads=p.num_heads)  # fmt: skip


def build(name: str, p: Preset, teacher: str | None = None) -> DiffusionModule:
    """A fresh model for run ``name``; ``teacher`` is the DDPM checkpoint ``sd_distilled`` needs."""
    common = dict(schedule=NoiseSchedule("linear", p.timesteps),
                  optim=Optimization(lr=p.lr, ema_decay=p.ema_decay, ema_start_step=p.ema_start_step),
                  sampling=Sampling(steps=p.sample_steps, seed=p.seed, grid_every_n_epochs=0, grid_size=0))  # fmt: skip
    if name == "ddpm":
        return DDPM(UNet(**net_kwargs(p, p.model_channels)), **common)
    if name in _SSD:
        net = FlexiUNet(**net_kwargs(p, p.model_channels))
        return ScaleSpaceDiffusion(net, num_levels=SSD_LEVELS, gamma=0.5, **_SSD[name], **common)
    if name in ("sd_distilled", "sd_plain"):
        if name == "sd_distilled" and teacher is None:
            raise ValueError("sd_distilled needs the ddpm run's checkpoint (run ddpm too, or pass --ckpt ddpm=PATH)")
        net = SpectralUNet(**net_kwargs(p, p.slim_channels), gating=True)
        return SpectralDiffusion(net, teacher=teacher if name == "sd_distilled" else None, **common)
    raise ValueError(f"unknown run {name!r}; choose from {', '.join(RUNS)}")


class StepTimer(L.Callback):
    """Wall-clock of ``fit`` and the images/s of the optimisation steps after ``warmup``.

    A step is timed from one batch start to the next, so it holds data loading, forward,
    backward, the optimizer and the EMA update: the throughput of the real training loop.
    """

    def __init__(self, warmup: int):
        self.warmup = warmup
        self.starts: list[float] = []
        self.batch_size = 0
        self.fit_seconds = float("nan")

    def on_train_start(self, trainer, pl_module):
        self._fit_start = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._sync(pl_module)
        self.starts.append(time.perf_counter())
        self.batch_size = len(batch[0])

    def on_train_end(self, trainer, pl_module):
        self._sync(pl_module)
        self.starts.append(time.perf_counter())
        self.fit_seconds = self.starts[-1] - self._fit_start

    @staticmethod
    def _sync(pl_module):
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    @property
    def images_per_s(self) -> float:
        warm = min(self.warmup, len(self.starts) - 2)  # keep at least one timed step
        timed = self.starts[warm:]
        return (len(timed) - 1) * self.batch_size / (timed[-1] - timed[0])


def fit(model: DiffusionModule, data: L.LightningDataModule, steps: int, warmup: int, root: Path,
        seed: int) -> tuple[StepTimer, L.Trainer]:  # fmt: skip
    """``steps`` optimisation steps through a Lightning Trainer (no validation, no logger).

    Afterwards the model holds its EMA weights, and ``trainer.save_checkpoint(path)`` writes a
    checkpoint that ``load_model`` rebuilds.
    """
    L.seed_everything(seed, verbose=False)  # the same data order for every run
    timer = StepTimer(warmup)
    trainer = L.Trainer(max_steps=steps, accelerator="auto", devices=1, logger=False, enable_checkpointing=False,
                        limit_val_batches=0, num_sanity_val_steps=0, enable_model_summary=False,
                        gradient_clip_val=1.0, callbacks=[timer], default_root_dir=str(root))  # fmt: skip
    trainer.fit(model, data)
    return timer, trainer


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sample_pngs(model: DiffusionModule, p: Preset, out: Path, name: str) -> dict:
    """``p.num_samples`` PNGs ``out/000000.png``...; image i from a generator seeded by (seed, i).

    Only ``model.sample`` is timed (not the PNG writing): ``images_per_s`` is sampling throughput
    at batch ``p.sample_batch``.
    """
    out.mkdir(parents=True, exist_ok=True)
    dev = device()
    model.to(dev).eval()
    seconds = 0.0
    chunks = torch.arange(p.num_samples).split(p.sample_batch)
    for chunk in tqdm(chunks, desc=f"{name}: sampling {p.num_samples} images", unit="batch"):
        gens = sample_generators(p.seed, chunk)
        start = time.perf_counter()
        images = model.sample(gens, model.sample_labels(chunk), steps=p.sample_steps)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        seconds += time.perf_counter() - start
        for i, image in zip(chunk.tolist(), to_uint8(images).cpu()):
            save_png(image, out / f"{i:06d}.png")
    model.cpu()
    return {"sample_seconds": seconds, "sample_images_per_s": p.num_samples / seconds}
