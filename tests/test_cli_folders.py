"""`ssd sample`: a save_pretrained folder (written by `ssd export`) to numbered runs of PNGs and a grid, the images the
folder's model generates; bad options are refused before the model is loaded."""

import sys

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from scale_space_diffusion.cli import main
from scale_space_diffusion.diffusion.schedule import NoiseSchedule
from scale_space_diffusion.io.pretrained import from_pretrained
from scale_space_diffusion.models.settings import Optimization, Sampling
from scale_space_diffusion.models.ssd import ScaleSpaceDiffusion
from scale_space_diffusion.networks.flexi_unet import FlexiUNet


def ssd(monkeypatch, *args) -> None:
    monkeypatch.setattr(sys, "argv", ["ssd", *map(str, args)])
    main()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A 2-level SSD trained 2 steps, exported by `ssd export`."""
    tmp = tmp_path_factory.mktemp("folder")
    torch.manual_seed(0)
    net = FlexiUNet(image_size=16, in_channels=1, model_channels=8, channel_mult=(1, 2), num_res_blocks=1,
                    attention_resolutions=(), num_heads=2)  # fmt: skip
    model = ScaleSpaceDiffusion(net, num_levels=2, schedule=NoiseSchedule(timesteps=100), optim=Optimization(ema_decay=0.5),
                                sampling=Sampling(steps=4, grid_size=0))  # fmt: skip
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, accelerator="cpu")  # fmt: skip
    trainer.fit(model, DataLoader(TensorDataset(torch.rand(8, 1, 16, 16) * 2 - 1, torch.zeros(8).long()), batch_size=4))
    trainer.save_checkpoint(tmp / "model.ckpt")
    with pytest.MonkeyPatch.context() as mp:
        ssd(mp, "export", "--ckpt_path", tmp / "model.ckpt", "--out", tmp / "my_model")
    return tmp / "my_model"


def test_sample_writes_the_images_the_model_generates_into_numbered_runs(folder, tmp_path, monkeypatch, capsys):
    ssd(monkeypatch, "sample", "--model", folder, "--out", tmp_path, "--num_images", 3, "--batch_size", 2)
    run = tmp_path / "run_000"
    files = sorted(run.glob("[0-9]*.png"))
    assert [f.name for f in files] == ["000000.png", "000001.png", "000002.png"] and (run / "grid.png").is_file()
    expected = from_pretrained(folder).generate(3, seed=0, output_type="uint8", progress=False)
    written = torch.stack([torch.from_numpy(np.array(Image.open(f)))[None] for f in files])
    assert torch.equal(written, expected)  # image i is the stream (seed 0, i), whatever the batch size
    assert f"Wrote 3 samples and grid.png to {run}" in capsys.readouterr().out
    ssd(monkeypatch, "sample", "--model", folder, "--out", tmp_path, "--num_images", 1, "--seed", 1, "--steps", 2)
    other = torch.from_numpy(np.array(Image.open(tmp_path / "run_001" / "000000.png")))
    assert not torch.equal(other, written[0, 0])  # another seed and step count: a new run folder, other images


@pytest.mark.parametrize("args, message", [
    (["--num_images", "0"], "--num_images: expected an integer >= 1, got '0'"),
    (["--steps", "-3"], "--steps: expected an integer >= 1, got '-3'"),
])  # fmt: skip
def test_bad_options_are_refused_by_name(folder, args, message, monkeypatch, capsys):
    with pytest.raises(SystemExit):
        ssd(monkeypatch, "sample", "--model", folder, *args)
    assert message in capsys.readouterr().err


def test_a_missing_folder_is_named_with_the_fix(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit):
        ssd(monkeypatch, "sample", "--model", tmp_path / "nothing_here", "--out", tmp_path)
    err = capsys.readouterr().err
    assert "nothing_here" in err and "neither a folder nor a Hugging Face Hub id" in err and len(err.splitlines()) <= 3
    assert not list(tmp_path.glob("run_*"))  # nothing written
