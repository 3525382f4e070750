"""ImageDataModule: IDX round trip, image folders, real Fashion-MNIST, splits, flips and the data order."""
import gzip
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scale_space_diffusion.data import datamodule as data
from scale_space_diffusion.data import sources
from scale_space_diffusion.data import ImageDataModule
from scale_space_diffusion.data.idx import read_idx, write_idx

REAL_IDX = Path("/usr/share/datasets/fashion-mnist")


def fake_idx_dir(root: Path, n_train: int = 50, n_test: int = 20) -> Path:
    """Fashion-MNIST-shaped IDX files; image i is constant i except its left column, which is 255."""
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = np.repeat(np.arange(n, dtype=np.uint8)[:, None, None], 28, 1).repeat(28, 2)
        x[:, :, 0] = 255
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", x)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", (np.arange(n) % 10).astype(np.uint8))
    return root


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """2 classes x 6 PNGs (20x20 and 40x48), each constant: cat (200, 100, 50), dog (10, 20, 30)."""
    for cls, rgb in (("cat", (200, 100, 50)), ("dog", (10, 20, 30))):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(6):
            hw = (20, 20) if i < 3 else (40, 48)
            Image.fromarray(np.full((*hw, 3), rgb, np.uint8)).save(tmp_path / "imgs" / cls / f"{i}.png")
    return tmp_path / "imgs"


def dm(tmp_path: Path, **kw) -> ImageDataModule:
    m = ImageDataModule(cache_dir=str(tmp_path / "cache"), **kw)
    m.prepare_data()
    m.setup("fit")
    return m


# --- IDX format --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["a-idx3-ubyte.gz", "a-idx3-ubyte"])
def test_idx_round_trip(tmp_path, name):
    rng = np.random.default_rng(0)
    for a in (rng.integers(0, 256, (7, 5, 3), dtype=np.uint8), rng.integers(-9, 9, (11,), dtype=np.int32),
              rng.standard_normal((2, 3)).astype(np.float32)):
        write_idx(tmp_path / name, a)
        b = read_idx(tmp_path / name)
        assert b.dtype == a.dtype and b.shape == a.shape and np.array_equal(a, b)
    with open(tmp_path / "raw", "wb") as f:  # hand-written header: magic 0x00000801, one dimension of 3
        f.write(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))
    assert read_idx(tmp_path / "raw").tolist() == [7, 8, 9]


def test_idx_errors(tmp_path):
    with gzip.open(tmp_path / "bad.gz", "wb") as f:
        f.write(bytes([0x1F, 0, 8, 1, 0, 0, 0, 1, 5]))
    with pytest.raises(ValueError, match="bad IDX magic number 0x1f000801"):
        read_idx(tmp_path / "bad.gz")
    with gzip.open(tmp_path / "short.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2]))
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_idx(tmp_path / "short.gz")
    (tmp_path / "notgz.gz").write_bytes(b"plain")
    with pytest.raises(ValueError, match="notgz.gz.*corrupt"):
        read_idx(tmp_path / "notgz.gz")


# --- IDX-backed Fashion-MNIST ------------------------------------------------------------------------------------

def test_fashion_from_idx(tmp_path):
    m = dm(tmp_path, idx_dir=str(fake_idx_dir(tmp_path / "idx")), random_flip=False, batch_size=8)
    assert {k: len(v) for k, v in m.splits.items()} == {"train": 49, "val": 1, "test": 20}
    assert m.num_classes == 10 and m.class_names[9] == "Ankle boot"
    x, y = next(iter(m.test_dataloader()))
    assert x.shape == (8, 1, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(y, torch.arange(8) % 10)
    # exact pixels: 2 px of -1 padding, the left column 255 -> 1, the rest i / 127.5 - 1
    assert (x[..., :2, :] == -1).all() and (x[..., :, -2:] == -1).all() and (x[..., 2:30, 2] == 1).all()
    assert torch.allclose(x[:, 0, 2:30, 3:30], (torch.arange(8.0) / 127.5 - 1)[:, None, None].expand(8, 28, 27))
    ref = m.reference_images("test", max_samples=5)
    assert ref.dtype == torch.uint8 and ref.shape == (5, 1, 32, 32) and ref[:, :, 0].max() == 0
    assert ref[3, 0, 10, 10] == 3 and ref[3, 0, 10, 2] == 255
    assert len(list((tmp_path / "cache").glob("fashion_mnist-*"))) == 1
    fake_idx_dir(tmp_path / "idx", n_train=60)  # a changed file is a new cache entry
    assert len(dm(tmp_path, idx_dir=str(tmp_path / "idx")).splits["train"]) == 59
    assert len(list((tmp_path / "cache").glob("fashion_mnist-*"))) == 2


def test_flip_train_only(tmp_path):
    m = dm(tmp_path, idx_dir=str(fake_idx_dir(tmp_path / "idx")), batch_size=49, channels=3)
    torch.manual_seed(0)
    x, _ = next(iter(m.train_dataloader()))
    left, right = (x[:, :, 10, 2] == 1).all(1), (x[:, :, 10, 29] == 1).all(1)  # the 255 column, unflipped/flipped
    assert x.shape == (49, 3, 32, 32) and (left ^ right).all() and 10 < left.sum() < 39
    v, _ = next(iter(m.val_dataloader()))
    assert (v[:, :, 10, 2] == 1).all()


def test_seeded_split_and_max_samples(tmp_path):
    idx = str(fake_idx_dir(tmp_path / "idx", n_train=200))
    val = lambda seed: m_val(dm(tmp_path, idx_dir=idx, seed=seed, val_fraction=0.1))  # noqa: E731
    m_val = lambda m: m.reference_images("val")[:, 0, 16, 16].tolist()  # noqa: E731
    assert val(0) == val(0) and val(0) != val(1) and len(val(0)) == 20
    m = dm(tmp_path, idx_dir=idx, max_samples=7, val_fraction=0.5)
    assert {k: len(v) for k, v in m.splits.items()} == {"train": 7, "val": 7, "test": 7}
    assert set(m_val(m)).isdisjoint(m.reference_images("train")[:, 0, 16, 16].tolist())


def test_predict_indices(tmp_path):
    m = ImageDataModule(num_samples=10, batch_size=4, cache_dir=str(tmp_path))
    batches = list(m.predict_dataloader())
    assert [b.tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert all(b.dtype == torch.int64 for b in batches)


@pytest.mark.skipif(not REAL_IDX.is_dir(), reason="needs the Debian package dataset-fashion-mnist")
def test_real_fashion_mnist(tmp_path):
    m = dm(tmp_path, batch_size=64)
    assert {k: len(v) for k, v in m.splits.items()} == {"train": 58800, "val": 1200, "test": 10000}
    x, y = next(iter(m.train_dataloader()))
    assert x.shape == (64, 1, 32, 32) and -1 <= x.min() and x.max() <= 1 and x.max() > 0.9
    assert (x[..., :2, :] == -1).all() and (x[..., :, :2] == -1).all() and 0 <= y.min() and y.max() <= 9
    ref = m.reference_images(max_samples=1000)
    assert ref.shape == (1000, 1, 32, 32) and ref.dtype == torch.uint8 and ref[..., 30:, :].max() == 0
    assert {k: len(v) for k, v in dm(tmp_path, max_samples=100).splits.items()} == {"train": 100, "val": 100, "test": 100}


# --- image folders -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("small", ["pad", "resize"])
def test_folder(tmp_path, folder, small):
    for channels, cat, dog in ((3, (200, 100, 50), (10, 20, 30)), (1, (124,), (18,))):  # PIL luma for channels=1
        m = dm(tmp_path, dataset=str(folder), channels=channels, small_images=small, val_fraction=0.0, batch_size=12)
        assert m.class_names == ["cat", "dog"] and len(m.splits["train"]) == 12
        x, y = m.train_dataloader().dataset.__getitems__(list(range(12)))
        assert x.shape == (12, channels, 32, 32) and x.min() >= -1 and x.max() <= 1
        for xi, yi in zip(x, y):
            want = torch.tensor((cat, dog)[yi], dtype=torch.float32) / 127.5 - 1
            centre = xi[:, 6:26, 6:26]
            assert torch.allclose(centre, want[:, None, None].expand_as(centre), atol=1e-6)
        # 20x20 images get 6 px of -1 on every side with "pad"; 40x48 ones are resized and cropped
        n_padded = sum(bool((xi[:, :6] == -1).all() and (xi[:, 26:] == -1).all() and (xi[..., :6] == -1).all())
                       for xi in x)
        assert n_padded == (6 if small == "pad" else 0) and sorted(y.tolist()) == [0] * 6 + [1] * 6


def test_folder_without_classes(tmp_path):
    for i in range(3):
        Image.new("RGB", (32, 32), (i, i, i)).save(tmp_path / f"{i}.png")
    m = dm(tmp_path, dataset=str(tmp_path), channels=3, val_fraction=0.0)
    assert m.num_classes is None and next(iter(m.test_dataloader()))[1].tolist() == [0, 0, 0]


# --- errors (bad arguments and sources: tests/test_bad_input.py) ---------------------------------------------------

def test_image_corrupted_after_setup_is_named(tmp_path, folder):
    m = dm(tmp_path, dataset=str(folder), val_fraction=0.0)
    for f in (folder / "cat").glob("*.png"):
        f.write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"cannot decode image .*cat.*\.png"):
        m.splits["train"].__getitems__(list(range(12)))


def test_make_data_offline_fails_fast_without_a_traceback(tmp_path, monkeypatch):
    """The data module's own errors are in tests/test_bad_input.py."""
    monkeypatch.setattr(sources, "_hub_reachable", lambda timeout=3.0: False)
    t = time.time()
    with pytest.raises(SystemExit, match="error: Fashion-MNIST not found"):  # `make data` prints, no traceback
        data.main(["--idx-dir", str(tmp_path / "nowhere"), "--cache-dir", str(tmp_path / "c")])
    assert time.time() - t < 10


def test_main_prepares_cache(tmp_path, capsys):
    data.main(["--idx-dir", str(fake_idx_dir(tmp_path / "idx")), "--cache-dir", str(tmp_path / "c")])
    out = capsys.readouterr().out
    assert "train 49, val 1, test 20" in out and str(tmp_path / "c") in out


def test_lightning_fit_uses_batches(tmp_path):
    import lightning as L

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch, _):
            x, y = batch
            assert x.shape == (8, 1, 32, 32) and y.shape == (8,)
            return (x.mean() - self.w) ** 2

        def validation_step(self, batch, _):
            assert batch[0].shape[1:] == (1, 32, 32)

        def predict_step(self, batch, _):
            return batch

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    m = ImageDataModule(idx_dir=str(fake_idx_dir(tmp_path / "idx")), cache_dir=str(tmp_path / "c"), batch_size=8,
                        num_samples=5)
    trainer = L.Trainer(fast_dev_run=2, accelerator="cpu", logger=False, enable_progress_bar=False)
    trainer.fit(Tiny(), datamodule=m)
    assert torch.cat(trainer.predict(Tiny(), datamodule=m)).tolist() == [0, 1, 2, 3, 4]
