"""One run: build a model (DDPM, DDPM-x0 and SSD share the backbone width, the SD students the slim one), train it
with timed milestone checkpoints, sample it."""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
import torch
from tqdm.auto import tqdm

from scale_space_diffusion import DDPM, FlexiUNet, ScaleSpaceDiffusion, SpectralDiffusion, SpectralUNet, UNet
from scale_space_diffusion.diffusion.rng import image_noise
from scale_space_diffusion.diffusion.schedule import NoiseSchedule
from scale_space_diffusion.images import save_grid, save_png, to_uint8
from scale_space_diffusion.models.base import DiffusionModule
from scale_space_diffusion.models.settings import Optimization, Sampling

from ..machine import load
from .presets import PRECISIONS, RUNS, Preset

_SSD = {  # run -> ScaleSpaceDiffusion arguments
    "ddpm_x0": dict(num_levels=1, ladder_schedule="convex", unet_mode="flexi"),
    "ssd_convex": dict(num_levels=3, ladder_schedule="convex", unet_mode="flexi"),
    "ssd_equal": dict(num_levels=3, ladder_schedule="equal", unet_mode="flexi"),
    "ssd_full_unet": dict(num_levels=3, ladder_schedule="convex", unet_mode="full"),
}
_SD = {"sd_distilled": (True, True), "sd_plain": (True, False), "sd_nogate_distilled": (False, True),
       "sd_nogate": (False, False)}  # run -> (gating, distilled)  # fmt: skip


def distilled(name: str) -> bool:
    return name in _SD and _SD[name][1]


def net_kwargs(p: Preset, width: int) -> dict:
    heads = p.num_heads
    while heads > 1 and any(width * m % heads for m in p.channel_mult):
        heads //= 2
    return dict(image_size=p.image_size, in_channels=p.channels, model_channels=width, channel_mult=p.channel_mult,
                num_res_blocks=p.num_res_blocks, attention_resolutions=p.attention_resolutions, num_heads=heads)  # fmt: skip


def sampling_settings(p: Preset, sampler: str | None = None, steps: int | None = None) -> Sampling:
    return Sampling(steps=steps or p.sample_steps, sampler=sampler or p.sampler, eta=0.0, seed=p.run_seed,
                    grid_every_n_epochs=0, grid_size=0)  # fmt: skip


def build(name: str, p: Preset, teacher: str | None = None) -> DiffusionModule:
    """A fresh model for run ``name``; ``teacher`` is the DDPM checkpoint the distilled students need."""
    common = dict(schedule=NoiseSchedule("linear", p.timesteps),
                  optim=Optimization(lr=p.lr, ema_decay=p.ema_decay, ema_start_step=p.ema_start_step),
                  sampling=sampling_settings(p))  # fmt: skip
    if name == "ddpm":
        return DDPM(UNet(**net_kwargs(p, p.model_channels)), **common)
    if name in _SSD:
        return ScaleSpaceDiffusion(FlexiUNet(**net_kwargs(p, p.model_channels)), gamma=0.5, **_SSD[name], **common)
    if name in _SD:
        gating, distil = _SD[name]
        if distil and teacher is None:
            raise ValueError(f"{name} needs the ddpm run's checkpoint (run ddpm too, or pass --ckpt ddpm=PATH)")
        net = SpectralUNet(**net_kwargs(p, p.slim_channels), gating=gating)
        return SpectralDiffusion(net, teacher=teacher if distil else None, **common)
    raise ValueError(f"unknown run {name!r}; choose from {', '.join(RUNS)}")


class StepTimer(L.Callback):
    """Training wall-clock (saves excluded), images/s after ``warmup`` (batch start to batch start: data, forward,
    backward, optimizer, EMA), and every step's loss."""

    def __init__(self, warmup: int):
        self.warmup, self.starts, self.batch_size, self.paused, self.losses = warmup, [], 0, 0.0, []
        self.fit_seconds = self.fit_cpu_seconds = float("nan")
        self.load_start = self.load_end = None

    def on_train_start(self, trainer, pl_module):
        self._fit_start, self._cpu_start, self.load_start = time.perf_counter(), time.process_time(), load()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._sync(pl_module)
        self.starts.append(time.perf_counter() - self.paused)
        self.batch_size = len(batch[0])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(outputs["loss"].detach() if isinstance(outputs, dict) else outputs.detach())

    def loss_curve(self, window: int = 50) -> list[float]:
        """The training loss averaged over consecutive windows of ``window`` steps (the last one may be shorter)."""
        losses = torch.stack(self.losses).float().cpu() if self.losses else torch.zeros(0)
        return [round(float(w.mean()), 6) for w in losses.split(window)]

    def elapsed(self, pl_module) -> float:
        self._sync(pl_module)
        return time.perf_counter() - self.paused - self._fit_start

    def on_train_end(self, trainer, pl_module):
        self.fit_seconds = self.elapsed(pl_module)
        self.fit_cpu_seconds = time.process_time() - self._cpu_start  # this process, all threads, saves included
        self.starts.append(self._fit_start + self.fit_seconds)
        self.load_end = load()

    @staticmethod
    def _sync(pl_module):
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    @property
    def images_per_s(self) -> float:
        warm = min(self.warmup, len(self.starts) - 2)  # keep at least one timed step
        timed = self.starts[warm:]
        return (len(timed) - 1) * self.batch_size / (timed[-1] - timed[0])


class Milestones(L.Callback):
    """Checkpoints at fixed steps and at the first step past ``seconds`` (DDPM's wall-clock); stops once both pass."""

    def __init__(self, folder: Path, steps: dict[int, list[str]], timer: StepTimer, seconds: float | None = None):
        self.folder, self.steps, self.timer, self.seconds = folder, steps, timer, seconds
        self.saved: list[dict] = []

    def _save(self, trainer, pl_module, labels: list[str]) -> None:
        step = trainer.global_step
        if self.saved and self.saved[-1]["step"] == step:
            self.saved[-1]["labels"] += labels
            return
        elapsed, start = self.timer.elapsed(pl_module), time.perf_counter()
        path = self.folder / f"step{step:06d}.ckpt"
        trainer.save_checkpoint(path)
        self.timer.paused += time.perf_counter() - start
        self.saved.append({"step": step, "labels": labels, "path": str(path), "train_seconds": elapsed, "load": load()})

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step
        if step in self.steps:
            self._save(trainer, pl_module, list(self.steps[step]))
        wall_done = self.seconds is None or any("DDPM wall-clock" in s["labels"] for s in self.saved)
        if not wall_done and self.timer.elapsed(pl_module) >= self.seconds:
            self._save(trainer, pl_module, ["DDPM wall-clock"])
            wall_done = True
        if step >= max(self.steps) and wall_done:
            trainer.should_stop = True


def fit(model: DiffusionModule, data: L.LightningDataModule, max_steps: int, warmup: int, root: Path, seed: int,
        milestones: dict[int, list[str]] | None = None, seconds: float | None = None,
        precision: str = "32-true") -> tuple[StepTimer, list[dict]]:  # fmt: skip
    """Train with a Lightning Trainer (no validation or logger), saving ``milestones`` under ``root/checkpoints``."""
    L.seed_everything(seed, verbose=False)  # the same data order for every run
    timer = StepTimer(warmup)
    callbacks: list[L.Callback] = [timer]
    saver = None
    if milestones:
        (root / "checkpoints").mkdir(parents=True, exist_ok=True)
        saver = Milestones(root / "checkpoints", milestones, timer, seconds)
        callbacks.append(saver)
    trainer = L.Trainer(max_steps=max_steps, accelerator="auto", devices=1, logger=False, enable_checkpointing=False,
                        limit_val_batches=0, num_sanity_val_steps=0, enable_model_summary=False,
                        gradient_clip_val=1.0, callbacks=callbacks, default_root_dir=str(root), precision=precision)  # fmt: skip
    trainer.fit(model, data)
    return timer, (saver.saved if saver else [])


def sample_images(model: DiffusionModule, sampling: Sampling, n: int, batch: int, desc: str, out: Path | None = None,
                  precision: str = "32-true") -> tuple[torch.Tensor, float, float]:  # fmt: skip
    """(uint8 (n, C, S, S), wall and CPU seconds in ``model.sample``): image i seeded by (sampling.seed, i), under
    bf16 autocast for "bf16-mixed"; PNGs ``out/000000.png``... when ``out`` is given."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not benchmarked; use one of {', '.join(PRECISIONS)}")
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(dev).eval()
    seconds, cpu, images = 0.0, 0.0, []
    for chunk in tqdm(torch.arange(n).split(batch), desc=desc, unit="batch"):
        start, cpu_start = time.perf_counter(), time.process_time()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
            x = model.sample(image_noise(sampling.seed, chunk), model.sample_labels(chunk), sampling=sampling)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        seconds += time.perf_counter() - start
        cpu += time.process_time() - cpu_start
        images.append(to_uint8(x).cpu())
        for i, image in zip(chunk.tolist(), images[-1]) if out is not None else ():
            out.mkdir(parents=True, exist_ok=True)
            save_png(image, out / f"{i:06d}.png")
    model.cpu()
    return torch.cat(images), seconds, cpu


def write_grid(images: torch.Tensor, path: Path) -> Path:
    """The first 64 samples as one PNG grid (upscaled to about 128 px per image, at most 4x)."""
    return save_grid(images[:64], path, nrow=8, upscale=max(1, min(4, 128 // images.shape[-1])))
