"""What a training run tells you: one summary at the start of ``fit`` (data, sizes, precision, steps, where the outputs
go), then learning rate, step time, images/s and gradient norm in the logger (TensorBoard) every
``log_every_n_steps``; and a model summary that needs no warning under mixed precision.

``ssd`` adds both callbacks to every Trainer; in your own script pass ``callbacks=[RunReport()]``.
"""

from __future__ import annotations

import logging
import os
import time

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, ModelSummary
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.model_summary.model_summary import get_human_readable_count

from .lightning_internals import summary_table


class RunReport(L.Callback):
    """Prints the fit summary and logs ``train/lr``, ``train/step_time_s``, ``train/images_per_s`` and
    ``train/grad_norm`` (the global L2 norm of the gradients before clipping) every ``log_every_n_steps``."""

    def __init__(self) -> None:
        self._start: float | None = None
        self._grad_norm: torch.Tensor | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        rank_zero_info(fit_summary(trainer, pl_module))

    def _logging_step(self, trainer: L.Trainer) -> bool:
        return trainer.logger is not None and (trainer.global_step + 1) % max(trainer.log_every_n_steps, 1) == 0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        self._start = time.perf_counter() if self._logging_step(trainer) else None

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        if self._start is None:
            return
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        self._grad_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])) \
            if grads else None  # fmt: skip

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        if self._start is None:
            return
        seconds = time.perf_counter() - self._start  # after the optimizer step and the loss's host read
        images = len(batch[0]) if isinstance(batch, (tuple, list)) else len(batch)
        metrics = {"train/lr": trainer.optimizers[0].param_groups[0]["lr"], "train/step_time_s": seconds,
                   "train/images_per_s": images * trainer.world_size / seconds}  # fmt: skip
        if self._grad_norm is not None:
            metrics["train/grad_norm"] = float(self._grad_norm)
        trainer.logger.log_metrics(metrics, step=trainer.global_step - 1)  # the batch's index, as Lightning logs
        self._start = self._grad_norm = None


def fit_summary(trainer: L.Trainer, pl_module: L.LightningModule) -> str:
    """Dataset and source, train/val counts, image size and how images were fitted, precision, steps, outputs."""
    dm = trainer.datamodule
    lines = []
    if dm is not None and getattr(dm, "splits", None):
        hp, train = dm.hparams, dm.splits["train"]
        where = f" ({dm.location})" if getattr(dm, "location", None) else ""
        lines.append(f"data: {hp.dataset}{where}: {len(train)} train, {len(dm.splits['val'])} val images")
        lines.append(f"images: {hp.image_size}x{hp.image_size}, {hp.channels} channel(s); {_fitted(train, hp)}")
    steps = f"{trainer.max_steps} steps" if trainer.max_steps and trainer.max_steps > 0 else f"{trainer.max_epochs} epochs"
    batch = getattr(getattr(dm, "hparams", None), "batch_size", None)
    lines.append(f"training: {type(pl_module).__name__}, {steps}" + (f" at batch {batch}" if batch else "") +
                 f", precision {trainer.precision}, on {trainer.num_devices} {_device(trainer)}")  # fmt: skip
    ckpt = [cb.dirpath for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint) and cb.dirpath]
    logs = trainer.log_dir if trainer.logger is not None else None
    lines.append("outputs: checkpoints " + (", ".join(map(str, ckpt)) or "none") +
                 f"; logs {logs or 'none'}; sample grids {os.path.join(logs or trainer.default_root_dir, 'samples')}")  # fmt: skip
    return "\n".join(["fit summary:", *(f"  {line}" for line in lines)])


def _device(trainer: L.Trainer) -> str:
    return type(trainer.accelerator).__name__.replace("Accelerator", "").upper() or "device"


def _fitted(train, hp) -> str:
    """How the stored images became image_size (read from the first training image's header)."""
    if not len(train):
        return "no training images"
    h, w = train.sizes([0])[0]
    s = hp.image_size
    if (h, w) == (s, s):
        return f"stored at {h}x{w}, used as they are"
    if min(h, w) < s:
        how = "upscaled bicubically" if hp.small_images == "resize" else "padded with background"
        return f"stored at {h}x{w}, {how} to {s}x{s} (data.small_images={hp.small_images or 'pad'})"
    which = "" if train.same_size else " (the first)"
    return f"stored at {h}x{w}{which}, resized and centre-cropped to {s}x{s}"


class ParamSummary(ModelSummary):
    """Lightning's model summary of the top-level modules, without its FLOPs column (Lightning counts FLOPs only from
    an ``example_input_array``, which a diffusion model has none of) and with the size of the parameters as they
    are stored: under mixed precision they are float32 master weights, which Lightning's summary warns about."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        children = list(pl_module.named_children())
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        columns = [(" ", [str(i) for i in range(len(children))]), ("Name", [n for n, _ in children]),
                   ("Type", [type(m).__name__ for _, m in children]),
                   ("Params", [get_human_readable_count(count(m)) for _, m in children]),
                   ("Mode", ["train" if m.training else "eval" for _, m in children])]  # fmt: skip
        params = list(pl_module.parameters())
        modules = list(pl_module.modules())
        modes = {"train": sum(m.training for m in modules), "eval": sum(not m.training for m in modules)}
        megabytes = sum(p.numel() * p.element_size() for p in params) * 1e-6
        table = summary_table(sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad),
                              megabytes, modes, 0, *columns)  # fmt: skip
        logging.getLogger("lightning.pytorch.callbacks.model_summary").info("\n" + table.rsplit("\n", 1)[0])


def cli_trainer_kwargs(trainer_init, subcommand: str | None) -> dict:
    """What ``ssd`` adds to the config's Trainer: the run report (fit), the model summary, and for fit/validate/test
    a TensorBoard logger without ``hp_metric`` (when the config names no logger)."""
    callbacks = list(trainer_init.get("callbacks") or [])
    if subcommand == "fit":
        callbacks.append(RunReport())
    out = {"callbacks": callbacks}
    if trainer_init.get("enable_model_summary") is not False and not any(isinstance(c, ModelSummary) for c in callbacks):
        callbacks.append(ParamSummary())
        out["enable_model_summary"] = False  # Lightning adds no default summary (and says nothing about ours)
    if subcommand != "predict" and trainer_init.get("logger") in (None, True):
        from lightning.pytorch.loggers import TensorBoardLogger

        out["logger"] = TensorBoardLogger(trainer_init.get("default_root_dir") or ".", default_hp_metric=False)
    return out
