"""Issue 25 item 1: lr and weight_decay given for a resumed run reach the optimizer. Lightning restores the
optimizer after the model, with the checkpoint's values; the model sets this run's values on every param group when
training starts, with one log line (checkpoint value -> new value)."""

import logging

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from extension_classes import TinyModel, TinyNet, tiny
from scale_space_diffusion.io import AtomicCheckpointIO
from scale_space_diffusion.models.settings import Optimization, Sampling
from test_extension import fit


class Groups(L.Callback):
    """The optimizer's (lr, weight_decay) per param group after each training step."""

    def __init__(self):
        self.seen = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.seen.append([(g["lr"], g["weight_decay"]) for g in trainer.optimizers[0].param_groups])


def resume(model, ckpt, steps: int) -> Groups:
    data = TensorDataset(torch.rand(8, 1, 8, 8) * 2 - 1, torch.zeros(8, dtype=torch.long))
    groups = Groups()
    trainer = L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, accelerator="cpu", callbacks=[groups],
                        plugins=[AtomicCheckpointIO()])  # fmt: skip
    trainer.fit(model, DataLoader(data, batch_size=4), ckpt_path=ckpt)
    return groups


def test_lr_and_weight_decay_of_a_resumed_run_reach_every_param_group(tmp_path, caplog):
    ckpt = fit(tiny(), tmp_path / "a.ckpt")  # lr 2e-4, weight_decay 0
    assert torch.load(ckpt, weights_only=True)["optimizer_states"][0]["param_groups"][0]["lr"] == 2e-4
    lower = TinyModel(TinyNet(), optim=Optimization(lr=1e-5, weight_decay=0.1, ema_decay=0.5),
                      sampling=Sampling(steps=2, grid_size=0))  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="scale_space_diffusion"):
        groups = resume(lower, ckpt, steps=3)
    assert groups.seen[0] == [(1e-5, 0.1)]  # the first resumed step already ran at the new values
    lines = [r.getMessage() for r in caplog.records if "optimizer restored" in r.getMessage()]
    assert lines == ["optimizer restored from the checkpoint, set to this run's optim: lr 0.0002 -> 1e-05, weight_decay 0 -> 0.1"]


def test_an_unchanged_resume_logs_nothing_and_keeps_the_values(tmp_path, caplog):
    ckpt = fit(tiny(), tmp_path / "a.ckpt")
    with caplog.at_level(logging.WARNING, logger="scale_space_diffusion"):
        groups = resume(tiny(), ckpt, steps=3)
    assert groups.seen[0] == [(2e-4, 0.0)]
    assert not [r for r in caplog.records if "optimizer restored" in r.getMessage()]
