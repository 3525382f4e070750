"""Callbacks: the prediction writer (one lossless PNG per sample, named by sample index, in a fresh directory)
and the run lifecycle (the end of fit, Ctrl-C and SIGTERM all leave a checkpoint that resumes exactly)."""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, ModelCheckpoint, ModelSummary
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException

from . import run_lock
from .diffusion.rng import image_noise
from .images import grid, save_grid, save_png, to_uint8
from .lightning_internals import summary_table


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
        weights = getattr(pl_module, "weights_used", "the model's")
        print(f"Wrote {len(list(self.run_dir.glob('[0-9]*.png')))} samples ({weights} weights) and a grid to "
              f"{self.run_dir}/grid.png")


class RunLifecycle(L.Callback):
    """Every way a ``fit`` can stop leaves a checkpoint that resumes exactly.

    - **End of fit**: ``last.ckpt`` is written at the final step in every ``ModelCheckpoint(save_last=True)``
      folder, whatever the periodic schedule (Lightning's own callback keeps the last periodic one).
    - **Ctrl-C / SIGINT**: the first one stops at the next step boundary (so no step is half-counted); a second
      one stops at once. **SIGTERM** (``docker stop``, Kubernetes, SLURM): Lightning stops after the step in
      progress by raising ``SIGTERMException``.
    - Both write ``<dirpath>/interrupted.ckpt`` and print the command that resumes from it; ``ssd`` then exits
      with status 1 (Ctrl-C) or 143 (SIGTERM; Lightning's own exit status would be 0). Errors (a NaN loss, a
      full disk) save nothing: the checkpoints written before them are the last good state.
    - **One run per folder**: each checkpoint folder is locked for the run (``.run.lock``, run_lock.py); only this
      run removes its lock, a stale one (its process gone) is taken over with a warning. A dry run
      (``fast_dev_run``) takes no lock and leaves no checkpoint behind.

    Args:
        dirpath: where ``interrupted.ckpt`` goes; default the ModelCheckpoint's folder, else <root>/checkpoints.
    """

    def __init__(self, dirpath: str | None = None):
        self.dirpath = dirpath
        self._stop: str | None = None  # "SIGINT" once Ctrl-C was pressed
        self._previous_handler = None
        self._last_saved_step = -1
        self._locks: list[tuple[Path, run_lock.Owner]] = []  # (folder, the owner line this run wrote there)
        self._save_last_was: list[tuple[ModelCheckpoint, bool]] = []  # a dry run's ModelCheckpoints, restored after

    # -- the run's folders -----------------------------------------------------------------------------------------
    def _folders(self, trainer: L.Trainer) -> list[Path]:
        return [Path(cb.dirpath) for cb in trainer.checkpoint_callbacks if getattr(cb, "dirpath", None)]

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Lock every checkpoint folder for this process (run_lock.py); a dry run (``fast_dev_run``) writes none."""
        if trainer.fast_dev_run:  # Lightning 2.6's ModelCheckpoint still saves `last` at its end: not for a dry run
            self._save_last_was = [(cb, cb.save_last) for cb in trainer.checkpoint_callbacks
                                   if isinstance(cb, ModelCheckpoint)]
            for cb, _ in self._save_last_was:
                cb.save_last = False
            return
        if not trainer.is_global_zero:
            return
        for folder in self._folders(trainer):
            self._locks.append((folder, run_lock.acquire(folder)))

    def _unlock(self, trainer: L.Trainer) -> None:
        """Remove the locks this run took, and only those: a run refused at start leaves the owner's lock alone."""
        while self._locks:
            run_lock.release(*self._locks.pop())

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        while self._save_last_was:
            cb, save_last = self._save_last_was.pop()
            cb.save_last = save_last

    # -- stop requests ---------------------------------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop = None
        if threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum, frame) -> None:
        if self._stop is not None:
            raise KeyboardInterrupt
        self._stop = "SIGINT"
        print("\nCtrl-C: stopping after this step (press Ctrl-C again to stop at once)", flush=True)

    def _honour_stop(self, trainer: L.Trainer) -> None:
        if self._stop == "SIGINT":  # SIGTERM: Lightning itself raises SIGTERMException after the step in progress
            raise KeyboardInterrupt

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._honour_stop(trainer)  # the previous step is complete: weights, EMA, counters, periodic checkpoint

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if trainer.state.fn == "fit":
            self._honour_stop(trainer)

    def _restore_handler(self) -> None:
        if self._previous_handler is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._previous_handler)
        self._previous_handler = None

    # -- checkpoints -----------------------------------------------------------------------------------------------
    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        self._last_saved_step = checkpoint["global_step"]

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handler()
        if self._last_saved_step != trainer.global_step and not trainer.fast_dev_run:
            self._save_last(trainer)
        self._unlock(trainer)

    def _save_last(self, trainer: L.Trainer) -> None:
        for cb in trainer.checkpoint_callbacks:
            if isinstance(cb, ModelCheckpoint) and cb.save_last and cb.dirpath:
                path = os.path.join(cb.dirpath, cb.CHECKPOINT_NAME_LAST + cb.FILE_EXTENSION)
                trainer.save_checkpoint(path, weights_only=False)
                cb.last_model_path = path
                rank_zero_info(f"Saved the end of fit (step {trainer.global_step}) as {path}")

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore_handler()
        self._unlock(trainer)
        if not isinstance(exception, (KeyboardInterrupt, SIGTERMException)) or trainer.state.fn != "fit":
            return
        if trainer.fast_dev_run:  # a dry run leaves no checkpoint behind
            return
        dirpath = self.dirpath or getattr(trainer.checkpoint_callback, "dirpath", None)
        path = os.path.join(dirpath or os.path.join(trainer.default_root_dir, "checkpoints"), "interrupted.ckpt")
        trainer.save_checkpoint(path, weights_only=False)
        why = "SIGTERM" if isinstance(exception, SIGTERMException) else "Ctrl-C"
        rank_zero_info(f"{why}: stopped after step {trainer.global_step}; saved {path}; resume with "
                       f"`ssd fit ... --ckpt_path={path}` (the same config)")  # fmt: skip


InterruptCheckpoint = RunLifecycle  # its name before it also saved the end of fit


class SampleGrids(L.Callback):
    """PNG grids of ``sampling.grid_size`` images with fixed seeds (the sampling weights, i.e. EMA once it started)
    every ``sampling.grid_every_n_epochs`` validation epochs and at the end of fit, under ``<log dir>/samples/``;
    TensorBoard gets each grid under one tag, ``samples``, with the global step."""

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        every = pl_module.sampling.grid_every_n_epochs
        if every and trainer.state.fn == "fit" and not trainer.sanity_checking and (trainer.current_epoch + 1) % every == 0:
            self.save(trainer, pl_module, f"epoch{trainer.current_epoch:03d}_step{trainer.global_step:06d}")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        path = self.save(trainer, pl_module, f"final_step{trainer.global_step:06d}")
        if path is not None:
            rank_zero_info(f"Sample grid ({pl_module.weights_used} weights): {path}")

    @staticmethod
    def save(trainer: L.Trainer, pl_module: L.LightningModule, name: str) -> Path | None:
        size = pl_module.sampling.grid_size
        log_dir = trainer.log_dir  # a collective call: every rank must make it
        if size <= 0 or not trainer.is_global_zero:
            return None
        indices = torch.arange(size)
        images = to_uint8(pl_module.sample(image_noise(pl_module.sampling.seed, indices),
                                           pl_module.sample_labels(indices))).cpu()  # fmt: skip
        path = save_grid(images, Path(log_dir or trainer.default_root_dir) / "samples" / f"{name}.png",
                         upscale=max(1, 128 // pl_module.image_size))  # fmt: skip
        experiment = getattr(pl_module.logger, "experiment", None)
        if hasattr(experiment, "add_image"):  # TensorBoard: the whole grid, one tag, a step slider
            experiment.add_image("samples", grid(images), trainer.global_step)
        return path


class QuietModelSummary(ModelSummary):
    """Lightning's model summary without its FLOPs column and "Total Flops 0" line: Lightning counts FLOPs only from
    an ``example_input_array``, which a diffusion model has none of (``python -m benchmarks`` counts them)."""

    @staticmethod
    def summarize(summary_data, total_parameters, trainable_parameters, model_size, total_training_modes,
                  total_flops, **summarize_kwargs) -> None:  # fmt: skip
        columns = [c for c in summary_data if c[0] != "FLOPs"]
        table = summary_table(total_parameters, trainable_parameters, model_size, total_training_modes, 0, *columns)
        logging.getLogger("lightning.pytorch.callbacks.model_summary").info("\n" + table.rsplit("\n", 1)[0])
