"""The IDX format of (Fashion-)MNIST, and the offline Fashion-MNIST as a cached Arrow ``DatasetDict``.

IDX: magic 00 00 <type> <ndim>, ndim big-endian uint32 sizes, then the data (bottom of
http://yann.lecun.com/exdb/mnist/). Files ending in ``.gz`` are gzip-compressed.
"""
from __future__ import annotations

import gzip
import hashlib
import math
import os
import shutil
import struct
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import datasets

FASHION_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),  # Debian dataset-fashion-mnist
                 "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
_CACHE_VERSION = 1  # bump when the cached Arrow layout changes

_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}  # IDX type byte -> numpy


def _open(path: Path, mode: str):
    return gzip.open(path, mode) if path.suffix == ".gz" else open(path, mode)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (e.g. ``train-images-idx3-ubyte.gz``) into a native-endian array, checking magic and size."""
    path = Path(path)
    try:
        with _open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError; truncated gzip is EOFError
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"cannot read IDX file {path}: {e}; the file is corrupt, re-download it") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise ValueError(
            f"{path}: bad IDX magic number 0x{data[:4].hex()} (expected 0x0000 <type> <ndim>, e.g. 0x00000803 "
            "for uint8 images); not an IDX file, or corrupt")
    ndim, header = data[3], 4 + 4 * data[3]
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(data)} bytes, {ndim} dimensions need {header})")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_DTYPES[data[2]])
    expected = header + math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(
            f"{path}: {len(data)} bytes, but the header's shape {shape} of {dtype.name} needs {expected}; "
            "the file is truncated or corrupt, re-download it")
    return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file (gzip-compressed if ``path`` ends in ``.gz``); inverse of `read_idx`."""
    path, array = Path(path), np.asarray(array)
    code = next((c for c, t in _DTYPES.items() if np.dtype(t) == array.dtype.newbyteorder(">")), None)
    if code is None:
        raise ValueError(f"IDX cannot store dtype {array.dtype}; use one of uint8, int8, int16, int32, float32, float64")
    with _open(path, "wb") as f:
        f.write(struct.pack(f">4B{array.ndim}I", 0, 0, code, array.ndim, *array.shape))
        f.write(array.astype(_DTYPES[code]).tobytes())


def cache_key(files: list[Path], root: Path | None = None) -> str:
    """Content key from names, sizes and mtimes: a changed file gives a new cache entry."""
    stats = [(str(f.relative_to(root) if root else f.name), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    return hashlib.sha1(repr((_CACHE_VERSION, stats)).encode()).hexdigest()[:16]


def fashion_mnist_arrow(idx_dir: Path, cache_dir: Path) -> tuple["datasets.DatasetDict", Path]:
    """Fashion-MNIST IDX files -> Arrow ``DatasetDict`` of raw uint8 28x28 images, cached under ``cache_dir``."""
    import datasets
    import pyarrow as pa
    out = cache_dir / f"fashion_mnist-{cache_key([idx_dir / f for pair in FASHION_FILES.values() for f in pair])}"
    if not out.is_dir():
        splits = {}
        for split, (images, labels) in FASHION_FILES.items():
            x, y = read_idx(idx_dir / images), read_idx(idx_dir / labels)
            if x.ndim != 3 or y.ndim != 1 or len(x) != len(y) or y.max() >= len(FASHION_CLASSES):
                raise ValueError(f"{idx_dir}: {images} {x.shape} and {labels} {y.shape} are not a Fashion-MNIST pair")
            h, w = x.shape[1:]
            rows = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), w)  # stored as uint8, not PNG
            features = datasets.Features({"image": datasets.List(datasets.List(datasets.Value("uint8"), w), h),
                                          "label": datasets.ClassLabel(names=FASHION_CLASSES)})
            table = pa.table({"image": pa.FixedSizeListArray.from_arrays(rows, h), "label": pa.array(y, pa.int64())})
            splits[split] = datasets.Dataset(table.cast(features.arrow_schema), info=datasets.DatasetInfo(features=features))
        tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
        datasets.DatasetDict(splits).save_to_disk(str(tmp))
        try:
            tmp.rename(out)
        except OSError:  # another process won the race
            shutil.rmtree(tmp, ignore_errors=True)
    return datasets.load_from_disk(str(out)), out
