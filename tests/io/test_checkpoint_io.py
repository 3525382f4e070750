"""The Trainer's checkpoint IO (issue 26 item 5, issue 25 item 5): a Lightning plugin that ``ssd`` passes to the
Trainer; a failed save leaves the previous file intact; temporary files of dead processes go at the next run's first
save; exports and checkpoints get the umask's mode; another model's config.json is refused naming the fix."""

import errno
import json
import os
import stat
import subprocess
import sys

import lightning as L
import pytest
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.plugins.precision import Precision

from conftest import ROOT
from extension_classes import tiny
from scale_space_diffusion.io import AtomicCheckpointIO, checkpoint_io, from_pretrained, save_pretrained
from scale_space_diffusion.io.integrity import KEY


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_the_plugin_joins_the_trainers_plugins_unless_one_is_given():
    assert [type(p) for p in checkpoint_io.with_atomic_io(None)] == [AtomicCheckpointIO]
    precision, mine = Precision(), TorchCheckpointIO()
    assert checkpoint_io.with_atomic_io(precision)[0] is precision and len(checkpoint_io.with_atomic_io([precision])) == 2
    assert checkpoint_io.with_atomic_io([mine]) == [mine]  # the user's own checkpoint IO stays the only one
    trainer = L.Trainer(plugins=[AtomicCheckpointIO()], logger=False, accelerator="cpu")
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


def test_a_failed_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 1}, path)

    def full_disk(obj, f):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_io.torch, "save", full_disk)
    with pytest.raises(OSError) as err:
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "global_step": 2}, path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message and "No space left" in message and "is intact" in message
    assert io.load_checkpoint(path)["global_step"] == 1 and os.listdir(tmp_path) == ["last.ckpt"]


def test_a_failed_export_leaves_the_previous_export_intact(tmp_path, monkeypatch):
    model = tiny()
    folder = save_pretrained(model, tmp_path / "export")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def broken(path, write, what="file"):
        raise OSError(errno.EROFS, f"could not save {what} {path} (Read-only file system); the previous file there, if any, is intact")

    monkeypatch.setattr("scale_space_diffusion.io.pretrained.atomic_write", broken)
    with torch.no_grad():
        model.net.inp.weight.add_(1)
    with pytest.raises(OSError, match="is intact"):
        save_pretrained(model, folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_temp_files_of_dead_processes_are_removed_at_the_first_save_and_live_ones_kept(tmp_path):
    dead, live = tmp_path / f".last.ckpt.tmp-{dead_pid()}", tmp_path / f".last.ckpt.tmp-{os.getppid()}"
    other = tmp_path / ".notes.tmp-x"  # not a temp name of ours
    for p in (dead, live, other):
        p.write_bytes(b"partial")
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {}}, tmp_path / "step=1.ckpt")
    assert not dead.exists() and live.exists() and other.exists()
    dead2 = tmp_path / f".step=1.ckpt.tmp-{dead_pid()}"
    dead2.write_bytes(b"partial")
    io.save_checkpoint({"state_dict": {}}, tmp_path / "step=2.ckpt")  # once per folder and run, at its first save
    assert dead2.exists()


def test_checkpoints_and_exports_get_the_umasks_mode(tmp_path):
    old = os.umask(0o022)
    try:
        AtomicCheckpointIO().save_checkpoint({"state_dict": {}}, tmp_path / "last.ckpt")
        folder = save_pretrained(tiny(), tmp_path / "export")
    finally:
        os.umask(old)
    for path in [tmp_path / "last.ckpt", *folder.iterdir()]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_another_models_config_json_names_what_it_is_and_the_fix(tmp_path):
    for config, what in [({"_class_name": "UNet2DModel", "_diffusers_version": "0.30.0"}, "a diffusers UNet2DModel config (load it with diffusers)"),
                         ({"model_type": "vit", "architectures": ["ViTModel"]}, "a transformers ViTModel config (load it with transformers)"),
                         ({"hidden": 3}, "another model's config")]:  # fmt: skip
        (tmp_path / "config.json").write_text(json.dumps(config))
        with pytest.raises(ValueError) as err:
            from_pretrained(tmp_path)
        message = str(err.value)
        assert what in message and "pass a folder written by save_pretrained or `ssd export`" in message
        assert "\n" not in message


def test_ssd_fit_passes_the_plugin_and_its_checkpoints_carry_checksums(tmp_path, fmnist_idx, cache_dir, monkeypatch):
    from scale_space_diffusion.cli import run

    monkeypatch.setattr(sys, "argv", ["ssd"])
    stale = tmp_path / "checkpoints" / f".last.ckpt.tmp-{dead_pid()}"
    stale.parent.mkdir()
    stale.write_bytes(b"left by a killed run")
    cli = run(["fit", f"--config={ROOT / 'configs/smoke/ddpm_tiny.yaml'}", f"--data.idx_dir={fmnist_idx}",
               f"--data.cache_dir={cache_dir}", f"--trainer.default_root_dir={tmp_path}", "--trainer.max_steps=1",
               "--trainer.limit_val_batches=0"])  # fmt: skip
    assert isinstance(cli.trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    last = torch.load(tmp_path / "checkpoints/last.ckpt", weights_only=True)
    assert "state_dict/net.out_conv.weight" in last[KEY] and not stale.exists()
