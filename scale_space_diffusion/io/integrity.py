"""Checksums of the tensor data in every file we write, so a corrupted checkpoint or export is refused on load.

One sha256 per tensor (over its dtype, shape and bytes), keyed by where the tensor sits in the file: a Lightning
checkpoint stores them under :data:`KEY` in its own dict (``state_dict/net.conv.weight``,
``optimizer_states/0/state/3/exp_avg``, ...), a safetensors export as JSON in its metadata under the same key. A
file without them (Lightning's own, the authors', ours before 2026-12) loads as before; ``verify=False`` skips the
check for a file whose data was changed on purpose.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from torch import Tensor

KEY = "tensor_sha256"
VERIFY_FIX = "use another copy, or load it anyway with verify=False if you changed it on purpose"


def tensors(obj: Any, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
    """(path, tensor) for every tensor in nested dicts, lists and tuples, in order; :data:`KEY` itself is skipped."""
    if isinstance(obj, Tensor):
        yield prefix, obj
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            if key != KEY:
                yield from tensors(value, f"{prefix}/{key}" if prefix else str(key))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from tensors(value, f"{prefix}/{i}" if prefix else str(i))


def digest(t: Tensor) -> str:
    """sha256 of a tensor's dtype, shape and data (as stored: row-major bytes)."""
    h = hashlib.sha256(f"{t.dtype} {tuple(t.shape)} ".encode())
    data = t.detach()
    if data.layout != torch.strided:
        data = data.to_dense()
    h.update(memoryview(data.cpu().contiguous().reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


def checksums(obj: Any) -> dict[str, str]:
    """{path: sha256} of every tensor in ``obj`` (a checkpoint dict or a flat state dict), hashed on up to 8 threads
    (hashlib releases the GIL)."""
    found = list(tensors(obj))
    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        return dict(zip((path for path, _ in found), pool.map(digest, (t for _, t in found))))


class CorruptFile(ValueError):
    """A file whose tensor data does not match the checksums written with it."""


def verify(obj: Any, recorded: Mapping[str, str], file: Any) -> None:
    """Raise :class:`CorruptFile` naming ``file`` and the first tensor that is missing or differs from ``recorded``."""
    actual = checksums(obj)
    for path, expected in recorded.items():
        if path not in actual:
            raise CorruptFile(f"{file} is corrupt: its tensor {path!r} is missing; {VERIFY_FIX}")
        if actual[path] != expected:
            raise CorruptFile(f"{file} is corrupt: tensor {path!r} does not match its sha256 checksum; {VERIFY_FIX}")
