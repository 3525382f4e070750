"""The Trainer's checkpoint IO: atomic writes, tensor checksums, older layouts upgraded on load.

Pass it to the Trainer: ``L.Trainer(plugins=[AtomicCheckpointIO()])`` (``ssd`` and the configs do).

Lightning's ``TorchCheckpointIO`` writes through fsspec, which stages the file in ``$TMPDIR`` and then moves it;
across filesystems (a tmpfs ``/tmp``, a mounted disk) that move is a copy onto the final path, so a crash or a full
disk mid-copy truncates the previous good checkpoint. Here the temporary file ``.<name>.tmp-<pid>`` lives in the
target's own folder, is fsynced, then renamed over the target (atomic on POSIX); on any failure it is removed and
the old file stays intact. Temporary files of processes that are gone (a killed run) are removed at this process's
first save into their folder. Every file carries a sha256 per tensor (:mod:`.integrity`), verified on load.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from .integrity import KEY, checksums, verify
from .legacy import upgrade_checkpoint

_TEMP = re.compile(r"^\..+\.tmp-(\d+)$")


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` with a write-fsync-rename save and tensor checksums for local paths (remote paths go
    to Lightning's own save).

    Args:
        verify: check the checksums of a checkpoint that has them when it is loaded; False loads a file whose data
            was changed on purpose. Files without checksums (Lightning's, older ones) load unchecked either way.
    """

    def __init__(self, verify: bool = True):
        self.verify = verify
        self._cleaned: set[Path] = set()

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        checkpoint = {**checkpoint, KEY: checksums(checkpoint)}
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.parent not in self._cleaned:
            remove_stale_temp_files(path.parent)
            self._cleaned.add(path.parent)
        atomic_write(path, lambda f: torch.save(checkpoint, f), "checkpoint")

    def load_checkpoint(self, path, map_location: Any = lambda storage, loc: storage, weights_only: bool | None = None):
        checkpoint = super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)
        if self.verify and KEY in checkpoint:
            verify(checkpoint, checkpoint[KEY], path)
        return upgrade_checkpoint(checkpoint)


def with_atomic_io(plugins: Any) -> list:
    """The Trainer's ``plugins`` with an :class:`AtomicCheckpointIO` added, unless they hold a checkpoint IO."""
    plugins = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
    return plugins if any(isinstance(p, CheckpointIO) for p in plugins) else [*plugins, AtomicCheckpointIO()]


def atomic_write(path: Path, write, what: str = "file") -> None:
    """Run ``write(f)`` on a temporary file beside ``path`` opened "wb" (umask's mode), fsync, rename it over
    ``path``; on failure the temporary file is removed and the previous ``path`` is left intact."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise OSError(err.errno, f"could not save {what} {path} ({err.strerror or err}); the previous file there, "
                                     "if any, is intact; free space or choose a writable folder") from err  # fmt: skip
        raise
    fd = os.open(path.parent, os.O_RDONLY)  # make the rename itself durable
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Remove ``.<name>.tmp-<pid>`` files in ``folder`` whose process is gone (a killed save); returns them."""
    removed = []
    for tmp in folder.glob(".*.tmp-*"):
        match = _TEMP.match(tmp.name)
        if match and int(match[1]) != os.getpid() and not _alive(int(match[1])):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True
