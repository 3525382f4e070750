"""`ssd export`: a checkpoint written by a real Trainer.fit (EMA on, so raw != EMA) becomes a save_pretrained folder
that samples exactly the images the checkpoint samples, for DDPM, Scale Space Diffusion and Spectral Diffusion."""

import json
import shutil
import sys

import lightning as L
import pytest
import torch
from safetensors import safe_open
from torch.utils.data import DataLoader, TensorDataset

from scale_space_diffusion.cli import main
from scale_space_diffusion.diffusion.rng import image_noise
from scale_space_diffusion.diffusion.schedule import NoiseSchedule
from scale_space_diffusion.models.base import DiffusionModule
from scale_space_diffusion.models.ddpm import DDPM
from scale_space_diffusion.io.loading import load_model
from scale_space_diffusion.models.settings import Optimization, Sampling
from scale_space_diffusion.models.spectral import SpectralDiffusion
from scale_space_diffusion.models.ssd import ScaleSpaceDiffusion
from scale_space_diffusion.networks.flexi_unet import FlexiUNet
from scale_space_diffusion.networks.spectral_unet import SpectralUNet
from scale_space_diffusion.networks.unet import UNet

NET = dict(image_size=16, in_channels=1, model_channels=8, channel_mult=(1, 2), num_res_blocks=1,
           attention_resolutions=(), num_heads=2)  # fmt: skip
SETTINGS = dict(schedule=NoiseSchedule(timesteps=100), optim=Optimization(lr=1e-2, ema_decay=0.5),
                sampling=Sampling(steps=4, grid_size=0))  # fmt: skip


def fit(model, path, steps=3) -> str:
    """``steps`` optimizer steps through a Trainer (the EMA then trails the raw weights), then a checkpoint."""
    data = TensorDataset(torch.rand(8, 1, 16, 16) * 2 - 1, torch.zeros(8, dtype=torch.long))
    trainer = L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, accelerator="cpu")  # fmt: skip
    trainer.fit(model, DataLoader(data, batch_size=4))
    trainer.save_checkpoint(path)
    return str(path)


def build(name, teacher=None):
    torch.manual_seed(0)
    if name == "ddpm":
        return DDPM(UNet(**NET), **SETTINGS)
    if name == "ssd":
        return ScaleSpaceDiffusion(FlexiUNet(**NET), num_levels=2, **SETTINGS)
    return SpectralDiffusion(SpectralUNet(**NET), teacher=teacher, **SETTINGS)


def export(monkeypatch, *args) -> None:
    monkeypatch.setattr(sys, "argv", ["ssd", "export", *map(str, args)])
    main()


def images(model):
    return model.sample(image_noise(0, range(3)), model.sample_labels(torch.arange(3)))


@pytest.mark.parametrize("name", ["ddpm", "ssd", "spectral"])
def test_an_exported_folder_samples_what_the_checkpoint_samples(name, tmp_path, monkeypatch, tiny_teacher, capsys):
    teacher = str(shutil.copy(tiny_teacher, tmp_path / "teacher.ckpt")) if name == "spectral" else None
    ckpt = fit(build(name, teacher), tmp_path / "model.ckpt")
    if teacher is not None:
        (tmp_path / "teacher.ckpt").unlink()  # a distilled student needs no teacher file
    reference = load_model(ckpt)
    state = reference.state_dict()
    assert reference.weights_used == "EMA"
    assert any(not torch.equal(state[k], state[f"net_ema.module.{k[4:]}"]) for k in state if k.startswith("net."))

    export(monkeypatch, "--ckpt_path", ckpt, "--out", tmp_path / "ema")
    export(monkeypatch, "--ckpt_path", ckpt, "--out", tmp_path / "raw", "--weights", "raw")
    assert f"exported {ckpt} to {tmp_path / 'raw'}" in capsys.readouterr().out
    for folder in ("ema", "raw"):
        files = sorted(p.name for p in (tmp_path / folder).iterdir())
        assert files == ["README.md", "config.json", "model.safetensors"]  # no .ckpt / .pt / .bin pickle
        config = json.loads((tmp_path / folder / "config.json").read_text())
        assert config["weights"] == folder and config["model_class_path"].endswith(type(reference).__name__)
        with safe_open(tmp_path / folder / "model.safetensors", "pt") as f:
            assert all(k.startswith("net.") for k in f.keys())  # no net_ema.*, no align.*
    ema, raw = (DiffusionModule.from_pretrained(tmp_path / f) for f in ("ema", "raw"))
    assert type(ema) is type(reference) is type(raw) and not ema.training
    assert torch.equal(images(ema), images(reference))
    reference.net_ema = None  # the checkpoint's raw weights
    assert torch.equal(images(raw), images(reference))
    assert not torch.equal(images(raw), images(ema))
    if name == "spectral":
        assert any(k.startswith("align.") for k in torch.load(ckpt, weights_only=True)["state_dict"])
        assert config["hparams"]["teacher"] is None and ema.teacher_path is None and ema.teacher is None
        assert type(SpectralDiffusion.from_pretrained(tmp_path / "ema")) is SpectralDiffusion


def test_export_errors_are_one_line(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_:
        export(monkeypatch, "--ckpt_path", tmp_path / "gone.ckpt", "--out", tmp_path / "out")
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: checkpoint") and "gone.ckpt' does not exist" in err and "\n" not in err
    with pytest.raises(SystemExit):
        export(monkeypatch, "--ckpt_path", tmp_path / "gone.ckpt")  # argparse: --out is required
    assert "the following arguments are required: --out" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
