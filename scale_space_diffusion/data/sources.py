"""Any ``dataset=`` value -> a ``datasets.DatasetDict`` with known image and label columns.

``fashion_mnist`` (Debian's offline IDX files, else the hub copy), a local folder in any layout that folders.py
reads, or a hub dataset name. Columns: columns.py.
"""
from __future__ import annotations

import socket
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .columns import find_columns
from .folders import load_folder
from .idx import FASHION_FILES, fashion_mnist_arrow

FASHION_HUB = "zalando-datasets/fashion_mnist"


@dataclass(frozen=True)
class Source:
    """A loaded dataset: its splits, which columns hold images and labels, and where its Arrow data lives."""

    splits: datasets.DatasetDict
    image: str
    label: str | None
    location: Path


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


def from_hub(name: str, cache_dir: Path) -> datasets.DatasetDict:
    """``datasets.load_dataset(name)``, offline at once (local cache only) when the hub is unreachable."""
    import datasets

    online = _hub_reachable()
    try:
        with hub_offline(not online):  # offline: `load_dataset` uses the local cache or fails at once
            return datasets.load_dataset(name, cache_dir=str(cache_dir / "hf"))
    except Exception as e:
        why, fix = (("the hub could not load it", "check the hub name (owner/dataset)") if online else (
            "not a local folder, not a known offline dataset, and the hub is unreachable",
            "give an image folder, dataset=fashion_mnist, or a hub name on a machine with network access"))
        raise FileNotFoundError(f"dataset {name!r}: {why}; {fix} ({type(e).__name__}: {e})") from e


@contextmanager
def hub_offline(offline: bool) -> Iterator[None]:
    """Inside the block, ``datasets``' and ``huggingface_hub``'s offline flags are on if ``offline`` (else as they
    were); after it, both are what they were before, whatever happened inside."""
    import datasets
    from huggingface_hub import constants

    saved = (datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE)
    if offline:
        datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved


def _fashion_mnist(idx_dir: Path, cache_dir: Path) -> tuple[datasets.DatasetDict, Path]:
    if all((idx_dir / f).is_file() for pair in FASHION_FILES.values() for f in pair):
        return fashion_mnist_arrow(idx_dir, cache_dir)
    try:
        return from_hub(FASHION_HUB, cache_dir), cache_dir / "hf"
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f"Fashion-MNIST not found: no IDX files in {idx_dir}, and the hub copy failed ({e.__cause__}). Either "
            "run `make data` (or `apt-get install dataset-fashion-mnist`), or give network access to the "
            f"hub dataset {FASHION_HUB}") from e


def load_source(dataset: str, idx_dir: Path, cache_dir: Path, image_column: str | None = None,
                label_column: str | None = None) -> Source:
    """Load ``dataset`` ("fashion_mnist", a local folder, or a hub name) and find its image and label columns.

    Args:
        dataset: what ``ImageDataModule(dataset=...)`` was given.
        idx_dir: where Fashion-MNIST's IDX files are looked for.
        cache_dir: where Arrow caches are written.
        image_column: the column of images; None finds it (columns.py).
        label_column: the column of class labels; None finds it, if there is one.
    """
    folder = Path(dataset).expanduser()
    cache_dir.mkdir(parents=True, exist_ok=True)
    if folder.is_file():
        raise NotADirectoryError(f"dataset={dataset} is a file, not a folder; give the folder that holds the images "
                                 f"or data files (e.g. data.dataset={folder.parent})")  # fmt: skip
    if folder.is_dir():
        splits, location = load_folder(folder, cache_dir)
    elif dataset.startswith(("/", ".", "~")):
        raise FileNotFoundError(f"dataset folder {folder} not found; give an existing image folder or a hub name")
    elif dataset == "fashion_mnist":
        splits, location = _fashion_mnist(idx_dir, cache_dir)
    else:
        splits, location = from_hub(dataset, cache_dir), cache_dir / "hf"
    splits, image, label = find_columns(splits, image_column, label_column, folder if folder.is_dir() else None)
    return Source(splits, image, label, location)
