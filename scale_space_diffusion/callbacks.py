"""Callbacks: the prediction writer (one lossless PNG per sample, named by sample index, in a fresh directory)
and the checkpoint written when training is interrupted."""

from __future__ import annotations

import os
import re
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info

from .images import grid, save_png


def next_run_dir(parent: Path) -> Path:
    """parent/run_NNN with NNN one past the largest existing run."""
    runs = [int(m[1]) for p in parent.glob("run_*") if (m := re.fullmatch(r"run_(\d+)", p.name))]
    return parent / f"run_{max(runs, default=-1) + 1:03d}"


class SampleWriter(BasePredictionWriter):
    """Writes ``predict`` samples as ``<run>/<index:06d>.png`` plus ``grid.png`` (and SSD's ``ladder_strip.png``).

    Every predict run gets a new numbered directory ``<output_dir>/run_NNN``, or ``<output_dir>/<run_name>``
    if given, which must not already hold samples. Nothing is ever overwritten.
    """

    def __init__(
        self,
        output_dir: str | None = None,  # parent of the run directories; default <trainer.default_root_dir>/samples
        run_name: str | None = None,  # fixed run directory name instead of run_NNN
        grid_size: int = 64,  # images in grid.png
    ):
        super().__init__(write_interval="batch")
        self.output_dir, self.run_name, self.grid_size = output_dir, run_name, grid_size
        self.run_dir: Path | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "predict":
            return
        parent = Path(self.output_dir or Path(trainer.default_root_dir) / "samples")
        run_dir = None
        if trainer.is_global_zero:
            run_dir = parent / self.run_name if self.run_name else next_run_dir(parent)
            if run_dir.exists() and any(run_dir.glob("*.png")):
                raise FileExistsError(
                    f"{run_dir} already holds samples; choose another --sample_writer.run_name or remove it"
                )
            run_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir = Path(trainer.strategy.broadcast(str(run_dir) if run_dir else None, src=0))

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        for index, image in zip(prediction["index"].tolist(), prediction["images"]):
            path = self.run_dir / f"{index:06d}.png"
            if path.exists():
                raise FileExistsError(f"refusing to overwrite {path}")
            save_png(image, path)
        if "ladder" in prediction:
            save_png(prediction["ladder"], self.run_dir / f"ladder_strip_{batch_idx:03d}.png")

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.strategy.barrier()
        if not trainer.is_global_zero:
            return
        from PIL import Image
        import numpy as np

        files = sorted(self.run_dir.glob("[0-9]*.png"))[: self.grid_size]
        if not files:
            return
        images = [torch.from_numpy(np.array(Image.open(f))) for f in files]
        images = torch.stack([im[None] if im.ndim == 2 else im.permute(2, 0, 1) for im in images])
        if images.shape[-1] < 64:  # a grid is for people: nearest-upscale small images (sample PNGs stay native)
            images = images.repeat_interleave(64 // images.shape[-1], -1).repeat_interleave(64 // images.shape[-1], -2)
        save_png(grid(images), self.run_dir / "grid.png")
        print(f"Wrote {len(list(self.run_dir.glob('[0-9]*.png')))} samples and a grid to {self.run_dir}/grid.png")


class InterruptCheckpoint(L.Callback):
    """On Ctrl-C during ``fit``, saves ``<dirpath>/interrupted.ckpt`` and prints how to resume from it.

    A plain callback, not a ``Checkpoint``: ``enable_checkpointing=false`` stays allowed.

    Errors (a NaN loss, say) save nothing: the checkpoints written before them are the last good state.
    A resumed run continues exactly where the interrupted one stopped (see ``EpochSampler``).
    """

    def __init__(self, dirpath: str | None = None):  # default: the ModelCheckpoint's dirpath, else <root>/checkpoints
        self.dirpath = dirpath

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, KeyboardInterrupt) or trainer.state.fn != "fit":
            return
        dirpath = self.dirpath or getattr(trainer.checkpoint_callback, "dirpath", None)
        path = os.path.join(dirpath or os.path.join(trainer.default_root_dir, "checkpoints"), "interrupted.ckpt")
        trainer.save_checkpoint(path)
        rank_zero_info(f"Interrupted after step {trainer.global_step}; resume with `fit ... --ckpt_path={path}`")
