"""One LightningDataModule for every model: offline Fashion-MNIST, a local folder in any layout, or a hub dataset.

Every source becomes a ``datasets.DatasetDict`` (sources.py); the torch wrapper fetches whole batches from Arrow
(``__getitems__``). ``predict`` needs no data: it only yields sample indices, so the source is never loaded for it.
``python -m scale_space_diffusion.data [--dataset ...]`` prepares and caches the data (``make data``).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader

from ..lightning_internals import batches_trained, epoch_batches, next_drawing_epoch
from .image_dataset import ArrowImages, whole_batch
from .order import EpochSampler
from .preprocess import BACKGROUNDS, small_images_message
from .sources import Source, load_source

# `datasets` is imported inside functions (annotations below are never evaluated): `ssd --help` stays
# light, and no TYPE_CHECKING block either, since jsonargparse executes those to resolve annotations.

_SIZE_SAMPLE = 100  # training images whose sizes are read (headers only) to find those below image_size


class ImageDataModule(L.LightningDataModule):
    """Images for every model, from Fashion-MNIST, a local folder in any layout, or a hub dataset.

    Batches: ``(images float32 (B,C,S,S) in [-1,1], labels int64 (B,))``; labels are zeros when the source has none.
    ``predict_dataloader`` yields int64 sample indices ``0..num_samples-1`` and never loads the source.

    Images are read as a photo viewer shows them: turned by their EXIF orientation, transparency composited over
    ``transparent_background``. Preprocessing is ADM's `center_crop_arr`; 16-bit images are scaled from their full
    range. Images smaller than
    ``image_size`` (Fashion-MNIST is 28x28) are padded with background (-1) or upscaled, and a warning says how many
    and by how much. Splits: the source's own ``train``/``validation``/``test``; without a validation split a
    seeded ``val_fraction`` of train is held out; without a test split the validation split is reused (the train
    split if that is empty, e.g. a folder with ``val_fraction=0``: FID against the training set).

    Args:
        dataset: "fashion_mnist" (Debian's offline IDX files, else the hub copy), a local folder (an image folder
            with one sub-folder per class, hub-layout .parquet/.arrow/.csv/.json files, or a save_to_disk folder),
            or a hub dataset name.
        image_column: the column holding the images; None finds it (the first datasets.Image column, else
            "image" or "img", else a csv/json column of image paths).
        label_column: the column holding class labels; None finds it (the first datasets.ClassLabel column, else
            "label" or "labels"), or trains without labels if there is none.
        image_size: S, the output height and width in pixels.
        channels: 1 (greyscale) or 3 (RGB).
        small_images: how images smaller than image_size are brought up to it: "pad" with background (28->32: 2 px
            per side) or "resize" (bicubic upscale); null pads and warns once, naming how many images it padded
            (a config that names the choice gets the same line as information).
        transparent_background: the colour that transparent pixels (RGBA, LA, or a palette with a transparent
            colour) are composited over, as a viewer shows them on a page of that colour: "white" (the default)
            or "black". A warning says how many training images have transparency.
        random_flip: random horizontal flips, on the train split only.
        val_fraction: the seeded share of train held out for validation when the source has no validation split.
        max_samples: a cap on the size of each split, for quick runs; None uses all.
        batch_size: images per step, and samples per predict batch.
        num_workers: DataLoader worker processes; 0 loads in the main process.
        seed: seeds the train/val hold-out, the training order and the flips.
        num_samples: how many images predict samples.
        idx_dir: where Debian's dataset-fashion-mnist package puts the Fashion-MNIST IDX files.
        cache_dir: where Arrow caches are written; None is ~/.cache/scale_space_diffusion.
    """

    def __init__(self,
        dataset: str = "fashion_mnist",
        image_column: str | None = None,
        label_column: str | None = None,
        image_size: int = 32,
        channels: int = 1,
        small_images: Literal["pad", "resize"] | None = None,
        transparent_background: Literal["white", "black"] = "white",
        random_flip: bool = True,
        val_fraction: float = 0.02,
        max_samples: int | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        num_samples: int = 64,
        idx_dir: str = "/usr/share/datasets/fashion-mnist",
        cache_dir: str | None = None,
    ):
        super().__init__()
        checks = [(channels in (1, 3), f"channels={channels} must be 1 (greyscale) or 3 (RGB)"),
                  (image_size > 0, f"image_size={image_size} must be positive, e.g. 32"),
                  (num_samples > 0, f"num_samples={num_samples} must be positive, e.g. 64"),
                  (0 <= val_fraction < 1, f"val_fraction={val_fraction} must be in [0, 1), e.g. 0.02"),
                  (batch_size > 0, f"batch_size={batch_size} must be positive, e.g. 64"),
                  (num_workers >= 0, f"num_workers={num_workers} must be >= 0"),
                  (max_samples is None or max_samples > 0, f"max_samples={max_samples} must be positive or None"),
                  (small_images in ("pad", "resize", None), f"small_images={small_images!r} must be 'pad' or 'resize'"),
                  (transparent_background in BACKGROUNDS,
                   f"transparent_background={transparent_background!r} must be 'white' or 'black'")]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)
        self.save_hyperparameters()
        self.cache_dir = Path(cache_dir or "~/.cache/scale_space_diffusion").expanduser()
        self.location: Path | None = None  # where the prepared data lives, set by prepare_data/setup
        self._source: Source | None = None
        self.splits: dict[str, ArrowImages] = {}
        self._resume: dict[str, int] | None = None  # training progress from a checkpoint (see state_dict)

    def _load(self) -> Source:
        """The source, its columns found (cached in memory; on disk under ``cache_dir``)."""
        if self._source is None:
            hp = self.hparams
            self._source = load_source(hp.dataset, Path(hp.idx_dir), self.cache_dir, hp.image_column, hp.label_column)
            self.location = self._source.location
        return self._source

    def prepare_data(self) -> None:
        """Load (and cache) the source, except for ``predict``, which needs none."""
        if self.trainer is not None and self.trainer.state.fn == "predict":
            return
        self._load()

    def setup(self, stage: str | None = None) -> None:
        """Build the train/val/test splits; nothing for ``stage="predict"``, which only yields sample indices."""
        if stage == "predict" or self.splits:
            return
        hp, source = self.hparams, self._load()
        if "train" not in source.splits:
            folder = Path(hp.dataset).expanduser()
            fix = (f"put the training images in {folder / 'train'}/ (one sub-folder per class), or give a folder "
                   "without split sub-folders") if folder.is_dir() else "choose a dataset with a train split"
            raise ValueError(f"dataset {hp.dataset!r} has splits {list(source.splits)} but no 'train' split; {fix}")
        train = source.splits["train"]
        val = next((source.splits[s] for s in ("validation", "valid", "val") if s in source.splits), None)
        if val is None:  # seeded hold-out
            perm = np.random.default_rng(hp.seed).permutation(len(train))
            k = max(1, round(len(train) * hp.val_fraction)) if hp.val_fraction > 0 and len(train) > 1 else 0
            train, val = train.select(np.sort(perm[k:])), train.select(np.sort(perm[:k]))
        test = source.splits["test"] if "test" in source.splits else val if len(val) else train
        cap = hp.max_samples or len(train) + len(val) + len(test)
        for split, ds in (("train", train), ("val", val), ("test", test)):
            ds = ds.select(range(min(cap, len(ds))))
            self.splits[split] = ArrowImages(ds, source.image, source.label, hp.image_size, hp.channels,
                                             hp.small_images or "pad", hp.transparent_background)
        self._warn_small_images()
        self._warn_transparency()

    def _sample(self, everything: bool = False) -> list[int]:
        """Training image indices whose headers are read for a warning: all, or _SIZE_SAMPLE spread evenly."""
        n = len(self.splits["train"])
        k = n if everything else min(n, _SIZE_SAMPLE)
        return np.unique(np.linspace(0, n - 1, k).round().astype(int)).tolist() if n else []

    def _warn_small_images(self) -> None:
        """If training images are smaller than image_size: how many, their size, what is done to them. A warning when
        the config leaves small_images unset, else information (the run does what its config asked)."""
        train, hp = self.splits["train"], self.hparams
        sample = self._sample(everything=train.same_size)  # one shape for all is read once
        message = sample and small_images_message(train.sizes(sample), len(train), hp.image_size, hp.small_images or "pad")
        if message:
            (rank_zero_warn if hp.small_images is None else rank_zero_info)(message)

    def _warn_transparency(self) -> None:
        """One warning if training images have transparent pixels: how many, and the background they are put on."""
        train, background = self.splits["train"], self.hparams.transparent_background
        sample = self._sample()
        k, n = sum(train.transparent(sample)), len(train)
        if not k:
            return
        who = (f"{k} of the {n} training images" if len(sample) == n else
               f"about {round(100 * k / len(sample))}% of the {n} training images ({k} of {len(sample)} sampled)")
        other = next(b for b in BACKGROUNDS if b != background)
        rank_zero_warn(f"{who} have transparent pixels: composited over {background} "
                       f"(data.transparent_background={background}); set data.transparent_background={other} for "
                       f"a {other} background")  # fmt: skip

    @property
    def num_classes(self) -> int | None:
        names = self.class_names
        return len(names) if names else None

    @property
    def class_names(self) -> list[str] | None:
        """The names of the label classes (columns.py casts every label column to ``ClassLabel``), or None."""
        source = self._load()
        if source.label is None:
            return None
        return list(next(iter(source.splits.values())).features[source.label].names)

    def _loader(self, split: str, sampler: EpochSampler | None = None) -> DataLoader:
        self.setup()
        hp = self.hparams
        on_cuda = self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"  # batches go non_blocking
        return DataLoader(self.splits[split], batch_size=hp.batch_size, sampler=sampler, num_workers=hp.num_workers,
                          persistent_workers=hp.num_workers > 0, collate_fn=whole_batch, pin_memory=on_cuda)

    def train_dataloader(self) -> DataLoader:
        """Shuffled by :class:`EpochSampler` (seeded by ``seed``, sharded over data-parallel ranks, resumable)."""
        self.setup()
        trainer, hp = self.trainer, self.hparams
        world, rank = (trainer.world_size, trainer.global_rank) if trainer else (1, 0)
        sampler = EpochSampler(len(self.splits["train"]), hp.seed, world, rank, flip=hp.random_flip)
        loader = self._loader("train", sampler)
        if self._resume is not None:
            per_epoch = epoch_batches(len(loader), trainer.limit_train_batches if trainer else 1.0)
            state, self._resume = self._resume, None
            trained = state["batches"] if "position" not in state else state["position"]
            trained += state.get("epoch", 0) * per_epoch if "position" not in state else 0  # before 2026-12
            epoch, done = divmod(trained, per_epoch)
            sampler.resume(epoch, done * hp.batch_size, next_drawing_epoch(trainer, per_epoch) if trainer else epoch)
        return loader

    def state_dict(self) -> dict[str, int | str]:
        """Progress through the training order, saved in checkpoints so a resumed run skips finished batches:
        ``position``, the batches trained since the start of fit (whatever Lightning's epoch counter says), and the
        ``batch_size`` and ``dataset`` it counts in."""
        trainer = self.trainer
        if trainer is None:
            return {}
        return {"position": batches_trained(trainer), "batch_size": self.hparams.batch_size,
                "dataset": _dataset_id(self.hparams.dataset)}  # fmt: skip

    def load_state_dict(self, state_dict: dict[str, int | str]) -> None:
        """Resume the training order; one warning for each of ``batch_size`` and ``dataset`` that differs."""
        state = dict(state_dict) if state_dict else {}
        now = {"batch_size": self.hparams.batch_size, "dataset": _dataset_id(self.hparams.dataset)}
        for key, then in ((k, state.get(k)) for k in now):
            if then is not None and then != now[key]:
                rank_zero_warn(
                    f"resuming with data.{key}={now[key]!r}, but the checkpoint was trained with data.{key}={then!r}: "
                    "training goes on from its step count with other batches than the interrupted run would have "
                    f"seen; pass --data.{key}={then!r} to continue that run exactly"
                )  # fmt: skip
        self._resume = state or None

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


def _dataset_id(dataset: str) -> str:
    """``dataset`` as a resumed run compares it: an existing local path made absolute, any other name as given."""
    path = Path(dataset).expanduser()
    return str(path.resolve()) if path.exists() else dataset


def main(argv: list[str] | None = None) -> None:
    """Prepare and cache a dataset: ``python -m scale_space_diffusion.data [--dataset ...]``."""
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--dataset", default="fashion_mnist", help="fashion_mnist, a local folder, or a hub name")
    p.add_argument("--image-column", default=None, help="the column of images; default: found by type")
    p.add_argument("--label-column", default=None, help="the column of class labels; default: found by type")
    p.add_argument("--idx-dir", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--cache-dir", default=None, help="default ~/.cache/scale_space_diffusion")
    args = p.parse_args(argv)
    dm = ImageDataModule(dataset=args.dataset, image_column=args.image_column, label_column=args.label_column,
                         idx_dir=args.idx_dir, cache_dir=args.cache_dir,
                         small_images="pad")  # only caching: how small images reach image_size is the config's choice
    try:
        dm.prepare_data()
        dm.setup()
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from e
    sizes = ", ".join(f"{k} {len(v)}" for k, v in dm.splits.items())
    print(f"{args.dataset}: {sizes} images, {dm.num_classes or 'no'} classes; cached in {dm.location}")

