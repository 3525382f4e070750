"""`ssd fid`: FID/KID of a PNG folder against a reference, labelled by its features, with the accuracy bar."""

import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from scale_space_diffusion.metrics.classifier import save_classifier, train_classifier
from scale_space_diffusion.metrics.score import BIASED_BELOW, main

SIZE = 16


def _images(kind: int, n: int, seed: int) -> np.ndarray:
    """uint8 (n, SIZE, SIZE): class 0 is bright on top, class 1 bright at the bottom, both with noise."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 60, (n, SIZE, SIZE))
    rows = slice(0, SIZE // 2) if kind == 0 else slice(SIZE // 2, SIZE)
    x[:, rows] += 180
    return x.clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def labelled_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("ref")
    for k in (0, 1):
        (root / f"class{k}").mkdir()
        for i, a in enumerate(_images(k, 60, k)):
            Image.fromarray(a).save(root / f"class{k}/{i}.png")
    return root


@pytest.fixture(scope="module")
def classifier_file(tmp_path_factory):
    x = torch.from_numpy(np.concatenate([_images(0, 100, 10), _images(1, 100, 11)]))[:, None]
    y = torch.arange(200) // 100
    model, acc = train_classifier(x, y, x, y, epochs=15, batch_size=32, width=4, feature_dim=16, progress=False)
    assert acc >= 0.95  # the two classes are trivially separable
    path = tmp_path_factory.mktemp("clf") / "clf.pt"
    save_classifier(model, path, acc)
    return path, acc


def _pngs(folder, images: np.ndarray):
    folder.mkdir()
    for i, a in enumerate(images):
        Image.fromarray(a).save(folder / f"{i:06d}.png")
    Image.fromarray(images[0]).save(folder / "grid.png")  # skipped: not a numbered sample
    return folder


def _args(samples, ref, cache, *extra):
    return ["--samples", str(samples), "--reference", str(ref), "--split", "train", "--cache_dir", str(cache),
            "--resamples", "50", *extra]  # fmt: skip


def test_fid_labels_every_line_writes_json_and_ranks_real_above_noise(labelled_folder, classifier_file, tmp_path,
                                                                      capsys):  # fmt: skip
    clf, acc = classifier_file
    real = _pngs(tmp_path / "real", np.concatenate([_images(0, 20, 5), _images(1, 20, 6)]))
    noise = _pngs(tmp_path / "noise", np.random.default_rng(7).integers(0, 256, (40, SIZE, SIZE)).astype(np.uint8))
    good = main(_args(real, labelled_folder, tmp_path / "c", "--classifier", str(clf)))
    out = capsys.readouterr().out.strip().splitlines()
    bad = main(_args(noise, labelled_folder, tmp_path / "c", "--classifier", str(clf)))
    assert good["num_samples"] == 40 and good["num_reference"] > 100  # grid.png is not a sample
    assert good["fid_ci95"][0] <= good["fid"] <= good["fid_ci95"][1]
    assert good["fid"] < bad["fid_ci95"][0] and good["kid"] < bad["kid"]  # noise is worse than held-out real images
    label = f"[{labelled_folder.name}-classifier features]"
    assert out and all(line.startswith(label) for line in out)
    assert any(f"test accuracy {acc:.3f}" in line for line in out)
    assert any(f"40 samples < {BIASED_BELOW}" in line and "biased" in line for line in out)
    floor = good["real_floor"]  # --split train: up to 40 real test images; this folder's test split has fewer: all
    assert floor["split"] == "test" and 2 <= floor["num_samples"] < 40 and floor["fid"] >= 0
    assert any(f"{floor['num_samples']} real test images score FID" in line for line in out)
    c = good["confident"]  # held-out real images of two trivially separable classes: recognised, both classes
    assert c["share"] >= 0.9 and sum(c["classes"].values()) == round(c["share"] * 40) and all(c["classes"].values())
    assert any(f"{c['share']:.0%} of the 40 samples are assigned a class with confidence >= 0.9" in line for line in out)
    saved = json.loads((real / "fid.json").read_text())
    assert saved["fid"] == good["fid"] and saved["features"] == f"{labelled_folder.name}-classifier features"
    assert saved["classifier_test_accuracy"] == pytest.approx(acc) and saved["biased_low_sample"] is True


def test_fid_refuses_a_classifier_below_the_accuracy_bar(labelled_folder, classifier_file, tmp_path):
    clf, acc = classifier_file
    samples = _pngs(tmp_path / "s", _images(0, 4, 1))
    with pytest.raises(ValueError, match=rf"test accuracy {acc:.3f} < --min_accuracy=1.01"):
        main(_args(samples, labelled_folder, tmp_path / "c", "--classifier", str(clf), "--min_accuracy", "1.01"))
    assert not (samples / "fid.json").exists()


def test_fid_trains_its_classifier_and_refuses_it_on_unlearnable_labels(fmnist_idx, tmp_path):
    """The conftest's Fashion-MNIST look-alike is noise with arbitrary labels: the trained classifier is refused."""
    samples = _pngs(tmp_path / "s", np.random.default_rng(0).integers(0, 256, (4, 32, 32)).astype(np.uint8))
    with pytest.raises(ValueError, match=r"test accuracy 0\.\d+ < --min_accuracy=0.85"):
        main(["--samples", str(samples), "--reference", "fashion_mnist", "--idx_dir", str(fmnist_idx),
              "--cache_dir", str(tmp_path / "c")])  # fmt: skip
    assert list((tmp_path / "c/fid").glob("classifier-fmnist-*.pt"))  # trained and cached, then refused


def test_fid_without_labels_or_inception_names_the_fix(tmp_path):
    ref = _pngs(tmp_path / "ref", _images(0, 8, 0))  # one flat folder: no class labels
    samples = _pngs(tmp_path / "s", _images(0, 4, 1))
    with pytest.raises(ValueError, match="no class labels.*--inception_weights"):
        main(_args(samples, ref, tmp_path / "c"))
    with pytest.raises(FileNotFoundError, match="--inception_weights=.*nowhere.pth is not a file"):
        main(_args(samples, ref, tmp_path / "c", "--inception_weights", str(tmp_path / "nowhere.pth")))


def test_ssd_fid_is_a_subcommand_with_one_line_errors(tmp_path, monkeypatch, capsys):
    from scale_space_diffusion.cli import main as ssd

    monkeypatch.setattr(sys, "argv", ["ssd", "fid", "--samples", str(tmp_path / "none")])
    with pytest.raises(SystemExit) as exit_:
        ssd()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.strip() == f"error: samples directory {tmp_path / 'none'} does not exist"


def test_the_confident_share_is_counted_in_batches_and_numbers_unnamed_classes(classifier_file):
    from scale_space_diffusion.metrics.features import build_feature_module
    from scale_space_diffusion.metrics.score import confident

    feature = build_feature_module("classifier", classifier_file[0])
    x = torch.from_numpy(np.concatenate([_images(0, 600, 20), _images(1, 500, 21)]))[:, None]  # 1,100: three batches
    c = confident(feature, x, None)
    assert set(c["classes"]) == {"0", "1"} and sum(c["classes"].values()) == round(c["share"] * 1100)
    assert c["classes"]["0"] >= 540 and c["classes"]["1"] >= 450  # the trivially separable classes, each recognised
