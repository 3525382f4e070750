"""One LightningDataModule for every model: offline Fashion-MNIST, a local image folder, or a hub dataset.

Every source becomes a ``datasets.Dataset``; the torch wrapper fetches whole batches from Arrow (``__getitems__``).
``python -m scale_space_diffusion.data [--dataset ...]`` prepares and caches the data (``make data``).
"""
from __future__ import annotations

import argparse
import socket
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from ..lightning_internals import batches_done
from .order import EpochSampler
from .image_dataset import ArrowImages, whole_batch
from .idx import FASHION_FILES, cache_key, fashion_mnist_arrow

# `datasets` is imported inside functions (annotations below are never evaluated): `ssd --help` stays
# light, and no TYPE_CHECKING block either, since jsonargparse executes those to resolve annotations.

_FASHION_HUB = "zalando-datasets/fashion_mnist"
_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP probe of the hub (or the https proxy): the hub client would otherwise retry for ~25 s."""
    import datasets
    from huggingface_hub import constants
    if datasets.config.HF_HUB_OFFLINE:
        return False
    url = urllib.parse.urlsplit(urllib.request.getproxies().get("https") or constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout).close()
        return True
    except OSError:
        return False


def _from_hub(name: str, cache_dir: Path) -> datasets.DatasetDict:
    import datasets
    from huggingface_hub import constants
    online, saved = _hub_reachable(), (datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE)
    if not online:  # offline mode for this call: `load_dataset` uses the local cache or fails at once
        datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        return datasets.load_dataset(name, cache_dir=str(cache_dir / "hf"))
    except Exception as e:
        why, fix = (("the hub could not load it", "check the hub name (owner/dataset)") if online else (
            "not a local folder, not a known offline dataset, and the hub is unreachable",
            "give an image folder, dataset=fashion_mnist, or a hub name on a machine with network access"))
        raise FileNotFoundError(f"dataset {name!r}: {why}; {fix} ({type(e).__name__}: {e})") from e
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved


def _check_folder(folder: Path, cache_dir: Path) -> None:
    """Fail early on an empty folder or a corrupt image (PIL ``verify``); a passed check is remembered."""
    from PIL import Image
    from tqdm.auto import tqdm
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in _IMAGE_EXTS and p.is_file())
    if not files:
        raise FileNotFoundError(f"no images in folder {folder} (looked for {', '.join(_IMAGE_EXTS)}, also in "
                                "sub-folders); add images, one sub-folder per class")
    marker = cache_dir / "verified" / cache_key(files, folder)
    if marker.exists():
        return
    for f in tqdm(files, desc=f"checking {folder}", disable=len(files) < 1000):
        try:
            with Image.open(f) as im:
                im.verify()
        except Exception as e:
            raise ValueError(f"corrupt image file {f}: {e}; delete or replace it") from e
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()


class ImageDataModule(L.LightningDataModule):
    """Images for every model. Batches: ``(images float32 (B,C,S,S) in [-1,1], labels int64 (B,))``; labels are
    zeros when the source has none. ``predict_dataloader`` yields int64 sample indices ``0..num_samples-1``.

    Preprocessing is ADM's `center_crop_arr`. Fashion-MNIST is 28x28: with ``small_images="pad"`` (default) it
    becomes 32x32 by 2 px of background (-1) on each side, so pixels are not resampled; ``"resize"`` upscales.
    Splits: the source's own ``train``/``validation``/``test``; without a validation split a seeded
    ``val_fraction`` of train is held out; without a test split the validation split is reused (the train split
    if that is empty, e.g. a folder with ``val_fraction=0``: FID against the training set).
    """

    def __init__(self,
        dataset: str = "fashion_mnist",  # "fashion_mnist" (offline Debian IDX files, else hub zalando-datasets/fashion_mnist), a local image folder, or a hub dataset name
        image_size: int = 32,            # S: output height and width
        channels: int = 1,               # 1 (greyscale) or 3 (RGB)
        small_images: Literal["pad", "resize"] = "pad",  # how images smaller than image_size are brought up (28->32: pad 2px of background, or bicubic resize)
        random_flip: bool = True,        # horizontal flip, train split only
        val_fraction: float = 0.02,      # seeded hold-out from train when the source has no validation split
        max_samples: int | None = None,  # cap on each split, for quick runs
        batch_size: int = 64,            # per step, and per predict batch
        num_workers: int = 0,            # DataLoader processes; 0 loads in the main process
        seed: int = 0,                   # seeds the train/val hold-out and the training order and flips
        num_samples: int = 64,           # predict: how many images to sample
        idx_dir: str = "/usr/share/datasets/fashion-mnist",  # where Debian's dataset-fashion-mnist puts the IDX files
        cache_dir: str | None = None,    # Arrow cache; default ~/.cache/scale_space_diffusion
    ):
        super().__init__()
        checks = [(channels in (1, 3), f"channels={channels} must be 1 (greyscale) or 3 (RGB)"),
                  (image_size > 0, f"image_size={image_size} must be positive, e.g. 32"),
                  (num_samples > 0, f"num_samples={num_samples} must be positive, e.g. 64"),
                  (0 <= val_fraction < 1, f"val_fraction={val_fraction} must be in [0, 1), e.g. 0.02"),
                  (batch_size > 0, f"batch_size={batch_size} must be positive, e.g. 64"),
                  (num_workers >= 0, f"num_workers={num_workers} must be >= 0"),
                  (max_samples is None or max_samples > 0, f"max_samples={max_samples} must be positive or None"),
                  (small_images in ("pad", "resize"), f"small_images={small_images!r} must be 'pad' or 'resize'")]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)
        self.save_hyperparameters()
        self.cache_dir = Path(cache_dir or "~/.cache/scale_space_diffusion").expanduser()
        self.location: Path | None = None  # where the prepared data lives, set by prepare_data/setup
        self._source: datasets.DatasetDict | None = None
        self.splits: dict[str, ArrowImages] = {}
        self._resume: tuple[int, int] | None = None  # (epoch, finished batches) from a checkpoint

    def _load(self) -> datasets.DatasetDict:
        """The source as a ``DatasetDict`` (cached in memory; on disk under ``cache_dir``)."""
        if self._source is not None:
            return self._source
        import datasets
        hp, name = self.hparams, self.hparams.dataset
        folder = Path(name).expanduser()
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.location = self.cache_dir / "hf"  # load_dataset's Arrow cache
        if folder.is_dir():
            _check_folder(folder, self.cache_dir)
            self._source = datasets.load_dataset("imagefolder", data_dir=str(folder), cache_dir=str(self.location))
        elif name.startswith(("/", ".", "~")):
            raise FileNotFoundError(f"dataset folder {folder} not found; give an existing image folder or a hub name")
        elif name == "fashion_mnist" and all((Path(hp.idx_dir) / f).is_file() for p in FASHION_FILES.values() for f in p):
            self._source, self.location = fashion_mnist_arrow(Path(hp.idx_dir), self.cache_dir)
        elif name == "fashion_mnist":
            try:
                self._source = _from_hub(_FASHION_HUB, self.cache_dir)
            except FileNotFoundError as e:
                raise FileNotFoundError(
                    f"Fashion-MNIST not found: no IDX files in {hp.idx_dir}, and the hub copy failed ({e.__cause__}). Either "
                    "run `make data` (or `apt-get install dataset-fashion-mnist`), or give network access to the "
                    f"hub dataset {_FASHION_HUB}") from e
        else:
            self._source = _from_hub(name, self.cache_dir)
        return self._source

    @staticmethod
    def _columns(ds: datasets.Dataset) -> tuple[str, str | None]:
        import datasets
        cols = ds.column_names
        image = next((c for c in ("image", "img") if c in cols), None) or next(
            (c for c, f in ds.features.items() if isinstance(f, datasets.Image)), None)
        if image is None:
            raise ValueError(f"no image column in {cols}; expected 'image' or 'img'")
        integer = lambda f: isinstance(f, datasets.ClassLabel) or str(getattr(f, "dtype", "")).startswith("int")  # noqa: E731
        return image, next((c for c in ("label", "labels") if c in cols and integer(ds.features[c])), None)

    def prepare_data(self) -> None:
        self._load()

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        hp, source = self.hparams, self._load()
        if "train" not in source:
            folder = Path(hp.dataset).expanduser()
            fix = (f"put the training images in {folder / 'train'}/ (one sub-folder per class), or give a folder "
                   "without split sub-folders") if folder.is_dir() else "choose a dataset with a train split"
            raise ValueError(f"dataset {hp.dataset!r} has splits {list(source)} but no 'train' split; {fix}")
        train = source["train"]
        val = next((source[s] for s in ("validation", "valid", "val") if s in source), None)
        if val is None:  # seeded hold-out
            perm = np.random.default_rng(hp.seed).permutation(len(train))
            k = max(1, round(len(train) * hp.val_fraction)) if hp.val_fraction > 0 and len(train) > 1 else 0
            train, val = train.select(np.sort(perm[k:])), train.select(np.sort(perm[:k]))
        test = source["test"] if "test" in source else val if len(val) else train
        image, label = self._columns(train)
        cap = hp.max_samples or len(train) + len(val) + len(test)
        for split, ds in (("train", train), ("val", val), ("test", test)):
            ds = ds.select(range(min(cap, len(ds))))
            self.splits[split] = ArrowImages(ds, image, label, hp.image_size, hp.channels, hp.small_images)

    @property
    def num_classes(self) -> int | None:
        names = self.class_names
        return len(names) if names else None

    @property
    def class_names(self) -> list[str] | None:
        import datasets
        train = next(iter(self._load().values()))
        feature = train.features.get(self._columns(train)[1] or "")
        return list(feature.names) if isinstance(feature, datasets.ClassLabel) else None

    def _loader(self, split: str, sampler: EpochSampler | None = None) -> DataLoader:
        self.setup()
        hp = self.hparams
        return DataLoader(self.splits[split], batch_size=hp.batch_size, sampler=sampler, num_workers=hp.num_workers,
                          persistent_workers=hp.num_workers > 0, collate_fn=whole_batch)

    def train_dataloader(self) -> DataLoader:
        """Shuffled by :class:`EpochSampler` (seeded by ``seed``, sharded over data-parallel ranks, resumable)."""
        self.setup()
        trainer, hp = self.trainer, self.hparams
        world, rank = (trainer.world_size, trainer.global_rank) if trainer else (1, 0)
        sampler = EpochSampler(len(self.splits["train"]), hp.seed, world, rank, flip=hp.random_flip)
        if self._resume is not None:
            epoch, batches = self._resume
            sampler.resume(epoch, batches * hp.batch_size)
            self._resume = None
        return self._loader("train", sampler)

    def state_dict(self) -> dict[str, int]:
        """Progress through the training order, saved in checkpoints so a resumed run skips finished batches."""
        trainer = self.trainer
        if trainer is None:
            return {}
        epoch, done = trainer.current_epoch, batches_done(trainer)
        if done >= trainer.num_training_batches:  # a checkpoint at the end of an epoch resumes at the next one
            epoch, done = epoch + 1, 0
        return {"epoch": epoch, "batches": done}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._resume = (state_dict["epoch"], state_dict["batches"]) if state_dict else None

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(range(self.hparams.num_samples), batch_size=self.hparams.batch_size)

    def reference_images(self, split: str = "test", max_samples: int | None = None) -> torch.Tensor:
        """uint8 (N,C,S,S) images of ``split`` ("train", "val" or "test") after resize/crop, no flip: FID references."""
        self.setup()
        split = "val" if split == "validation" else split
        if split not in self.splits:
            raise ValueError(f"split={split!r} must be one of {list(self.splits)}")
        ds = self.splits[split]
        n = min(len(ds), max_samples or len(ds))
        out = [ds.__getitems__(list(range(i, min(n, i + 500))))[0] for i in range(0, n, 500)]
        x = torch.cat(out) if out else torch.zeros(0, ds.channels, ds.size, ds.size)
        return ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def main(argv: list[str] | None = None) -> None:
    """Prepare and cache a dataset: ``python -m scale_space_diffusion.data [--dataset ...]``."""
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--dataset", default="fashion_mnist", help="fashion_mnist, an image folder, or a hub name")
    p.add_argument("--idx-dir", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--cache-dir", default=None, help="default ~/.cache/scale_space_diffusion")
    args = p.parse_args(argv)
    dm = ImageDataModule(dataset=args.dataset, idx_dir=args.idx_dir, cache_dir=args.cache_dir)
    try:
        dm.prepare_data()
        dm.setup()
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from e
    sizes = ", ".join(f"{k} {len(v)}" for k, v in dm.splits.items())
    print(f"{args.dataset}: {sizes} images, {dm.num_classes or 'no'} classes; cached in {dm.location}")

