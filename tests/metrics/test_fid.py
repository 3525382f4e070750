import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from scale_space_diffusion.metrics import (
    FID_CLASSIFIER_LABEL,
    INCEPTION_WEIGHTS_FILE,
    Classifier,
    build_feature_module,
    compute_fid_kid,
    feature_label,
    load_classifier,
    load_or_train_classifier,
    make_torchmetrics_fid,
    save_classifier,
    train_classifier,
)
from scale_space_diffusion.metrics import classifier as classifier_mod
from scale_space_diffusion.metrics import features as features_mod


def image_set(n: int, seed: int, blur: int) -> torch.Tensor:
    """uint8 (n, 1, 32, 32): random blobs; ``blur`` changes the distribution."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 32 // blur, 32 // blur, generator=g)
    x = F.interpolate(x, size=(32, 32), mode="bilinear")
    return (x * 255).round().to(torch.uint8)


@pytest.fixture(scope="module")
def classifier_file(tmp_path_factory):
    torch.manual_seed(0)
    model = Classifier(in_channels=1, width=8, feature_dim=32)
    # Random weights; BatchNorm statistics set from data so the features have unit scale.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average: one pass gives the exact statistics
    with torch.no_grad():
        model.train().features(image_set(256, 9, blur=2))
    path = tmp_path_factory.mktemp("clf") / "classifier.pt"
    save_classifier(model.eval(), path)
    return path


def test_labels():
    assert FID_CLASSIFIER_LABEL == "FID (fmnist-classifier features)"
    assert feature_label("classifier", "KID") == "KID (fmnist-classifier features)"
    assert "Inception" in feature_label("inception")


def test_torchmetrics_and_torch_fidelity_agree(classifier_file, tmp_path):
    fake = (image_set(300, 1, blur=2).float() * 0.7).to(torch.uint8)  # darker
    real = image_set(400, 2, blur=2)

    tm = make_torchmetrics_fid(build_feature_module("classifier", classifier_file))
    for batch in real.split(128):
        tm.update(batch, real=True)
    for batch in fake.split(128):
        tm.update(batch, real=False)
    fid_tm = tm.compute().item()

    # samples as a directory of PNGs, saved as the models do (greyscale PNG, read back as RGB)
    for i, img in enumerate(fake):
        Image.fromarray(img[0].numpy()).save(tmp_path / f"{i:06d}.png")
    Image.fromarray(np.zeros((70, 70), np.uint8)).save(tmp_path / "grid.png")  # not a sample: skipped
    out = compute_fid_kid(tmp_path, real, classifier=classifier_file, seed=0, kid_subsets=10)
    out_tensor = compute_fid_kid(fake, real, classifier=classifier_file, seed=0, kid_subsets=10)

    assert fid_tm > 0.1
    assert out["fid"] == pytest.approx(fid_tm, rel=1e-5)  # measured 2e-7: float64 statistics of the same float32 features
    assert out_tensor["fid"] == pytest.approx(out["fid"], rel=1e-9)
    assert out["n_samples"] == 300 and out["n_reference"] == 400
    assert out["kid_subset_size"] == 300  # min(1000, N, M)
    assert out["kid_mean"] > 0 and out["kid_std"] >= 0
    assert 0 <= out["precision"] <= 1 and 0 <= out["recall"] <= 1
    assert out_tensor["kid_mean"] == pytest.approx(out["kid_mean"], rel=1e-6)  # same seed, same subsets


def test_identical_sets_give_near_zero(classifier_file):
    x = image_set(200, 3, blur=2)
    out = compute_fid_kid(x, x, classifier=classifier_file, kid_subsets=10)
    assert abs(out["fid"]) < 1e-6
    # The unbiased estimator on identical sets is -O(1/n); different sets give 1e-2 to 1e-1 here.
    assert abs(out["kid_mean"]) < 1e-3
    assert out["precision"] == out["recall"] == 1.0


def test_reference_statistics_are_cached(classifier_file, tmp_path):
    fake, real = image_set(100, 4, blur=4), image_set(120, 5, blur=2)
    kw = dict(classifier=classifier_file, cache_dir=tmp_path, reference_key="toy-test-32", kid_subsets=10)
    first = compute_fid_kid(fake, real, **kw)
    cached = sorted(p.name for p in tmp_path.iterdir())
    assert cached and all(name.startswith("toy-test-32-120x1x32x32-") for name in cached)
    assert compute_fid_kid(fake, real, **kw) == first
    assert "precision" not in compute_fid_kid(fake, real, **kw, precision_recall=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == cached  # nothing recomputed
    compute_fid_kid(fake, real[:110], **kw)  # another reference: another cache entry
    assert len(list(tmp_path.iterdir())) > len(cached)


def test_jpg_samples_are_refused(classifier_file, tmp_path):
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "000000.jpg")
    with pytest.raises(FileNotFoundError, match="JPG"):
        compute_fid_kid(tmp_path, image_set(8, 0, blur=2), classifier=classifier_file)


def test_feature_module_stays_in_eval(classifier_file):
    module = build_feature_module("classifier", classifier_file)
    module.train()
    assert not any(m.training for m in module.modules())
    x = image_set(4, 6, blur=2)
    assert module(x).shape == (4, 32)
    assert torch.equal(module(x), module(x.expand(-1, 3, -1, -1)))  # grey as RGB gives the same features
    with pytest.raises(TypeError):
        module(x.float())


def test_offline_inception_fails_fast(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(features_mod, "_can_reach", lambda *a, **k: False)
    x = image_set(8, 7, blur=2)
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError) as err:
        compute_fid_kid(x, x, extractor="inception")
    assert time.perf_counter() - start < 1.0
    msg = str(err.value)
    assert INCEPTION_WEIGHTS_FILE in msg and "inception_weights" in msg and "hub/checkpoints" in msg
    with pytest.raises(FileNotFoundError, match="inception_weights"):
        build_feature_module("inception")
    with pytest.raises(FileNotFoundError, match="not a file"):
        compute_fid_kid(x, x, extractor="inception", inception_weights=tmp_path / "missing.pth")


def test_network_probe_is_bounded():
    start = time.perf_counter()
    features_mod._can_reach("10.255.255.1", 443, timeout=0.5)  # unroutable: times out, never hangs
    assert time.perf_counter() - start < 1.5


def synthetic_classes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class k is a bright 6x6 square in cell k of a 3x4 grid (10 px apart, more than the 2 px shifts), plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = torch.rand(n, 1, 32, 32, generator=g) * 60
    for k in range(10):
        top, left = 2 + 10 * (k // 4), 2 + 8 * (k % 4)
        x[y == k, :, top : top + 6, left : left + 6] += 180
    return x.round().to(torch.uint8), y


def test_train_classifier_and_cache(tmp_path, monkeypatch):
    x, y = synthetic_classes(256, 0)
    xt, yt = synthetic_classes(128, 1)
    kw = dict(epochs=1, seed=0, width=4, feature_dim=16, batch_size=64, progress=False)
    model, acc = load_or_train_classifier(tmp_path / "clf.pt", x, y, xt, yt, **kw)
    assert 0.0 <= acc <= 1.0 and not model.training
    assert model.features(xt).shape == (128, 16)

    reloaded, meta = load_classifier(tmp_path / "clf.pt")
    assert meta["test_accuracy"] == acc
    assert torch.equal(reloaded.features(xt), model.features(xt))

    # Same settings load without training; other settings retrain.
    monkeypatch.setattr(classifier_mod, "train_classifier", lambda *a, **k: pytest.fail("retrained"))
    again, acc2 = load_or_train_classifier(tmp_path / "clf.pt", x, y, xt, yt, **kw)
    assert acc2 == acc and torch.equal(again.features(xt), model.features(xt))
    with pytest.raises(pytest.fail.Exception):
        load_or_train_classifier(tmp_path / "clf.pt", x, y, xt, yt, **{**kw, "seed": 1})


def test_train_classifier_is_seeded():
    x, y = synthetic_classes(128, 0)
    kw = dict(epochs=1, seed=3, width=4, feature_dim=16, batch_size=64, progress=False)
    a, _ = train_classifier(x, y, x, y, **kw)
    b, _ = train_classifier(x, y, x, y, **kw)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.slow
def test_classifier_learns_synthetic_classes():
    x, y = synthetic_classes(2000, 0)
    xt, yt = synthetic_classes(500, 1)
    _, acc = train_classifier(x, y, xt, yt, epochs=3, seed=0, batch_size=64, progress=False)
    assert acc > 0.95


@pytest.mark.slow
def test_inception_path_with_local_weights(monkeypatch, tmp_path):
    """Plumbing of the Inception path (weights file, grey -> RGB, both libraries) with random weights."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    torch.save({}, tmp_path / "empty.pt")
    monkeypatch.setattr(torch.nn.Module, "load_state_dict", lambda self, *a, **k: None)
    torch.manual_seed(0)
    random_inception = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], tmp_path / "empty.pt")
    monkeypatch.undo()
    weights = tmp_path / INCEPTION_WEIGHTS_FILE
    torch.save(random_inception.state_dict(), weights)

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(features_mod, "_can_reach", lambda *a, **k: False)
    fake, real = image_set(12, 1, blur=4), image_set(16, 2, blur=2)
    out = compute_fid_kid(fake, real, extractor="inception", inception_weights=weights, kid_subsets=5)
    tm = make_torchmetrics_fid(build_feature_module("inception", inception_weights=weights))
    tm.update(real, real=True)
    tm.update(fake, real=False)
    assert out["fid"] == pytest.approx(tm.compute().item(), rel=1e-4)
