"""Atomic checkpoint writes on any local filesystem.

Lightning's ``TorchCheckpointIO`` writes through fsspec, which stages the file in ``$TMPDIR`` and then moves it;
across filesystems (a tmpfs ``/tmp``, a mounted disk) that move is a copy onto the final path, so a crash or a full
disk mid-copy truncates the previous good checkpoint. Here the temporary file lives in the target's own folder, is
fsynced, then renamed over the target (atomic on POSIX); on any failure it is removed and the old file stays intact.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` with a write-fsync-rename save for local paths (others go to Lightning's)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException as err:
            tmp.unlink(missing_ok=True)
            if isinstance(err, OSError):
                raise OSError(err.errno, f"could not save checkpoint {path} ({err.strerror or err}); the previous "
                                         "file there, if any, is intact") from err  # fmt: skip
            raise
        fd = os.open(path.parent, os.O_RDONLY)  # make the rename itself durable
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def use_atomic_checkpoint_io(strategy) -> None:
    """Give ``strategy`` an :class:`AtomicCheckpointIO` unless the user chose a checkpoint IO of their own."""
    if type(strategy.checkpoint_io) is TorchCheckpointIO:
        strategy.checkpoint_io = AtomicCheckpointIO()
