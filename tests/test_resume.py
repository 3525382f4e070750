"""Exact resume and crash safety: fit 2k steps == fit k, stop (or Ctrl-C), resume for k more; NaN keeps the last
good checkpoint; checkpoint writes are atomic."""

import hashlib
import signal
import sys

import fsspec.implementations.local

import lightning as L
import pytest
import torch
import yaml

from conftest import ROOT, train_and_save

from scale_space_diffusion.cli import run
from scale_space_diffusion.diffusion.schedule import NoiseSchedule
from scale_space_diffusion.models.ddpm import DDPM
from scale_space_diffusion.models.settings import Optimization, Sampling
from scale_space_diffusion.networks.unet import UNet

K = 5  # steps before the stop; 8 batches per epoch, so the resumed run crosses an epoch end and its validation
MODELS = ["ddpm", "ssd", "spectral"]


class BatchLog(L.Callback):
    """Records a hash of every training batch; presses Ctrl-C before step ``interrupt_at``; poisons ``nan_at``."""

    def __init__(self, interrupt_at: int | None = None, nan_at: int | None = None):
        self.interrupt_at, self.nan_at, self.hashes = interrupt_at, nan_at, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.interrupt_at:
            raise KeyboardInterrupt
        if trainer.global_step == self.nan_at:
            batch[0][0, 0, 0, 0] = float("nan")
        self.hashes.append(hashlib.sha256(batch[0].numpy().tobytes()).hexdigest())


@pytest.fixture(autouse=True)
def plain_argv_and_sigint(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["ssd"])  # LightningCLI warns when args and argv both exist
    handler = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, handler)  # Lightning ignores SIGINT after a KeyboardInterrupt


def fit(name, root, fmnist_idx, cache_dir, teacher, ckpt_path=None, interrupt_at=None, nan_at=None):
    """``fit`` a smoke config for 2K steps into ``root``, checkpointing every K; returns the batch hashes."""
    callbacks = [
        {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
         "init_args": {"dirpath": str(root / "ckpt"), "filename": "{step}", "every_n_train_steps": K, "save_top_k": -1}},
        {"class_path": "test_resume.BatchLog", "init_args": {"interrupt_at": interrupt_at, "nan_at": nan_at}},
    ]  # fmt: skip
    root.mkdir(parents=True, exist_ok=True)
    (root / "override.yaml").write_text(yaml.safe_dump({"trainer": {"callbacks": callbacks}}))
    args = [
        "fit", f"--config={ROOT / f'configs/smoke/{name}_tiny.yaml'}", f"--config={root / 'override.yaml'}",
        f"--data.idx_dir={fmnist_idx}", f"--data.cache_dir={cache_dir}", f"--trainer.default_root_dir={root}",
        f"--trainer.max_steps={2 * K}", "--data.num_workers=0", "--model.init_args.sampling.grid_every_n_epochs=0",
    ]  # fmt: skip
    args += [f"--model.init_args.teacher={teacher}"] if name == "spectral" else []
    args += [f"--ckpt_path={ckpt_path}"] if ckpt_path else []
    if interrupt_at is not None:  # Lightning saves via InterruptCheckpoint, then exits with status 1
        with pytest.raises(SystemExit):
            run(args)
        return None
    cli = run(args)
    return next(cb for cb in cli.trainer.callbacks if isinstance(cb, BatchLog)).hashes


def states(path):
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return {
        "ema": ckpt["state_dict"],  # EMAWeightAveraging stores the averaged weights here
        "raw": ckpt["current_model_state"],
        "optimizer": {f"{i}.{k}": v for i, s in ckpt["optimizer_states"][0]["state"].items() for k, v in s.items()},
        "step": ckpt["global_step"],
    }


def assert_same_state(a, b):
    assert a["step"] == b["step"] == 2 * K
    for part in ("ema", "raw", "optimizer"):
        assert a[part].keys() == b[part].keys() and a[part]
        for key in a[part]:
            torch.testing.assert_close(a[part][key], b[part][key], rtol=1e-6, atol=1e-7, msg=f"{part} {key}")


@pytest.mark.parametrize("name", MODELS)
def test_resume_equals_uninterrupted(name, tmp_path, fmnist_idx, cache_dir, tiny_teacher):
    """Weights, EMA, optimizer state and data order match after a stop at K (a checkpoint) or a Ctrl-C at K."""
    whole = fit(name, tmp_path / "whole", fmnist_idx, cache_dir, tiny_teacher)
    assert len(whole) == 2 * K and len(set(whole)) == 2 * K
    reference = states(tmp_path / f"whole/ckpt/step={2 * K}.ckpt")

    resumed = fit(name, tmp_path / "resumed", fmnist_idx, cache_dir, tiny_teacher, ckpt_path=tmp_path / f"whole/ckpt/step={K}.ckpt")
    assert resumed == whole[K:]
    assert_same_state(states(tmp_path / f"resumed/ckpt/step={2 * K}.ckpt"), reference)

    fit(name, tmp_path / "stopped", fmnist_idx, cache_dir, tiny_teacher, interrupt_at=K)
    interrupted = tmp_path / "stopped/ckpt/interrupted.ckpt"
    assert torch.load(interrupted, weights_only=False)["global_step"] == K
    after = fit(name, tmp_path / "after", fmnist_idx, cache_dir, tiny_teacher, ckpt_path=interrupted)
    assert after == whole[K:]
    assert_same_state(states(tmp_path / f"after/ckpt/step={2 * K}.ckpt"), reference)


def test_nan_loss_stops_with_step_and_t_and_keeps_the_last_good_checkpoint(tmp_path, fmnist_idx, cache_dir):
    with pytest.raises(FloatingPointError, match=rf"non-finite train loss nan at global step {K + 2} with t in \[\d+, \d+\]"):
        fit("ssd", tmp_path, fmnist_idx, cache_dir, None, nan_at=K + 2)
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [f"step={K}.ckpt"]  # nothing saved after
    ckpt = torch.load(tmp_path / f"ckpt/step={K}.ckpt", weights_only=False)
    assert ckpt["global_step"] == K and all(v.isfinite().all() for v in ckpt["state_dict"].values())


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    """Lightning serialises to memory, then writes inside an fsspec transaction: a torn write leaves the old file."""
    path = tmp_path / "last.ckpt"
    model = DDPM(UNet(16, 1, None, 8, (1, 2), 1, (), 4), NoiseSchedule(timesteps=100), optim=Optimization(ema_decay=None),
                 sampling=Sampling(grid_size=0))
    train_and_save(model, path)
    good = path.read_bytes()

    def torn_write(self, data):  # the disk fills up half-way through the new checkpoint
        self.f.write(data[: len(data) // 2])
        raise OSError("No space left on device")

    monkeypatch.setattr(fsspec.implementations.local.LocalFileOpener, "write", torn_write)
    model.trainer.fit_loop.epoch_loop._batches_that_stepped += 1  # the new checkpoint would differ
    with pytest.raises(OSError, match="No space left"):
        model.trainer.save_checkpoint(path)
    assert path.read_bytes() == good
