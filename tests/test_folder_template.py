"""configs/ssd_folder.yaml, the template for your own folder, end to end as the README's four commands run it:
fit a few steps, predict, score with `ssd fid`, export, and load the export."""

import json
import sys

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import ROOT

TEMPLATE = ROOT / "configs/ssd_folder.yaml"


def _ssd(monkeypatch, *argv):
    from scale_space_diffusion.cli import main

    monkeypatch.setattr(sys, "argv", ["ssd", *argv])
    main()


@pytest.fixture
def my_folder(tmp_path):
    """Two classes of 80x72 RGB photos-to-be: larger than image_size and not square (resized, centre-cropped)."""
    rng = np.random.default_rng(0)
    for k, colour in enumerate(((220, 40, 40), (40, 40, 220))):
        (tmp_path / "my_folder" / f"class{k}").mkdir(parents=True)
        for i in range(12):
            a = (rng.random((72, 80, 3)) * 60 + np.array(colour) * 0.7).clip(0, 255).astype(np.uint8)
            Image.fromarray(a).save(tmp_path / "my_folder" / f"class{k}" / f"{i}.png")
    return tmp_path / "my_folder"


def test_template_names_every_edit_and_one_output_folder():
    text = TEMPLATE.read_text()
    cfg = yaml.safe_load(text)
    assert cfg["trainer"]["default_root_dir"] == "outputs/my_folder"
    assert all("dirpath" not in cb["init_args"] for cb in cfg["trainer"]["callbacks"])
    net = cfg["model"]["init_args"]["net"]["init_args"]
    assert net["image_size"] == cfg["data"]["image_size"] and net["in_channels"] == cfg["data"]["channels"]
    assert [line.split(":")[0].strip() for line in text.splitlines() if "# EDIT" in line] == [
        "image_size", "in_channels", "dataset", "image_size", "channels", "default_root_dir"]
    assert "CPU" in text and "GPU" in text


@pytest.mark.slow  # 816 s on 2 cores at load 15 (other engineers' runs); minutes on a quiet machine
def test_template_fits_predicts_scores_and_exports_a_generated_folder(my_folder, tmp_path, monkeypatch, capsys):
    import torch

    from scale_space_diffusion import DiffusionModule, ImageDataModule
    from scale_space_diffusion.metrics.classifier import save_classifier, train_classifier

    root = tmp_path / "out"
    common = [f"--config={TEMPLATE}", f"--data.dataset={my_folder}", f"--trainer.default_root_dir={root}",
              f"--data.cache_dir={tmp_path / 'cache'}", "--data.batch_size=4", "--model.init_args.sampling.steps=3",
              "--model.init_args.sampling.grid_size=4"]  # fmt: skip
    _ssd(monkeypatch, "fit", *common, "--trainer.max_steps=3", "--trainer.val_check_interval=3",
         "--trainer.limit_val_batches=1", "--trainer.precision=32-true")  # fmt: skip
    assert (root / "checkpoints/last.ckpt").is_file()  # under default_root_dir, not a version folder
    _ssd(monkeypatch, "predict", *common, "--ckpt_path=last", "--data.num_samples=6")
    samples = root / "samples/run_000"
    assert sorted(p.name for p in samples.glob("0*.png")) == [f"{i:06d}.png" for i in range(6)]
    assert Image.open(samples / "000000.png").size == (64, 64)

    data = ImageDataModule(str(my_folder), image_size=64, channels=3, cache_dir=str(tmp_path / "cache"))
    data.setup()
    x = data.reference_images("train")
    y = torch.tensor(data.splits["train"].ds[data.splits["train"].label].to_numpy())
    clf, acc = train_classifier(x, y, x, y, epochs=10, batch_size=8, width=4, feature_dim=16, progress=False)
    save_classifier(clf, tmp_path / "clf.pt", acc)
    _ssd(monkeypatch, "fid", "--samples", str(samples), "--reference", str(my_folder), "--split", "train",
         "--classifier", str(tmp_path / "clf.pt"), "--cache_dir", str(tmp_path / "cache"), "--resamples", "20")  # fmt: skip
    scores = json.loads((samples / "fid.json").read_text())
    assert scores["num_samples"] == 6 and scores["fid"] > 0 and scores["features"] == "my_folder-classifier features"

    _ssd(monkeypatch, "export", "--ckpt_path", str(root / "checkpoints/last.ckpt"), "--out", str(tmp_path / "my_model"))
    model = DiffusionModule.from_pretrained(str(tmp_path / "my_model"))
    images = model.generate(2, steps=3, output_type="tensor", progress=False)
    assert tuple(images.shape) == (2, 3, 64, 64)
    out = capsys.readouterr().out
    assert "FID" in out and "exported" in out
