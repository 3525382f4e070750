"""The lock a running ``fit`` holds on each of its checkpoint folders: ``<folder>/.run.lock``.

The file names its owner on one line, ``PID HOST START TICKS`` (START: when the lock was taken, ISO 8601 UTC;
TICKS: the process's start time in clock ticks since boot, from ``/proc``, or ``-`` where there is none), so a
reused PID is not mistaken for the owner. Only the owner removes it (:func:`release`). A lock whose process is
gone (a dead PID on this host, or a live PID that started at another time) is stale: :func:`acquire` takes it
over with one warning. A lock from another host cannot be checked and is respected until someone removes it.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

LOCK = ".run.lock"


def _start_ticks(pid: int) -> int | None:
    """Field 22 of ``/proc/<pid>/stat`` (the process's start, clock ticks after boot); None without /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # the name in (...) may hold spaces; fields 3.. follow it


@dataclass(frozen=True)
class Owner:
    """Who holds a lock: ``host`` None for a lock of the old format (a bare PID), taken to be this host's."""

    pid: int
    host: str | None
    started: str
    ticks: int | None

    @classmethod
    def me(cls) -> Owner:
        return cls(os.getpid(), socket.gethostname(), datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   _start_ticks(os.getpid()))  # fmt: skip

    @classmethod
    def parse(cls, text: str) -> Owner | None:
        fields = text.split()
        try:
            pid = int(fields[0])
        except (IndexError, ValueError):
            return None
        ticks = fields[3] if len(fields) > 3 else "-"
        return cls(pid, fields[1] if len(fields) > 1 else None, fields[2] if len(fields) > 2 else "?",
                   int(ticks) if ticks.isdigit() else None)  # fmt: skip

    def line(self) -> str:
        return f"{self.pid} {self.host} {self.started} {'-' if self.ticks is None else self.ticks}\n"

    @property
    def here(self) -> bool:
        return self.host in (None, socket.gethostname())

    def is_me(self) -> bool:
        return self.here and self.pid == os.getpid() and self.ticks in (None, _start_ticks(os.getpid()))

    def alive(self) -> bool:
        """False only when this host shows the process is gone; a lock from another host counts as alive."""
        if not self.here:
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # another user's live process
        return self.ticks is None or self.ticks == _start_ticks(self.pid)  # else the PID was reused

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host or 'this host'}, since {self.started}"


def owner(folder: str | os.PathLike) -> Owner | None:
    """The owner that ``folder``'s lock names, or None (no lock, or an unreadable one)."""
    try:
        return Owner.parse((Path(folder) / LOCK).read_text())
    except OSError:
        return None


def live_owner(folder: str | os.PathLike) -> Owner | None:
    """The owner of ``folder`` if it is another process that may still run, else None."""
    found = owner(folder)
    return found if found is not None and not found.is_me() and found.alive() else None


def _refuse(folder: Path, holder: Owner) -> FileExistsError:
    return FileExistsError(f"{folder} belongs to a running fit ({holder}); give this run its own folder "
                           f"(--trainer.default_root_dir and the ModelCheckpoint dirpath), or, if that run is over, "
                           f"remove {folder / LOCK}")  # fmt: skip


def _not_writable(folder: Path, err: OSError) -> OSError:
    return type(err)(err.errno, f"cannot write to the checkpoint folder {folder} ({err.strerror or err}); give a "
                     "writable --trainer.default_root_dir (and ModelCheckpoint dirpath) with free space")  # fmt: skip


def acquire(folder: str | os.PathLike) -> Owner:
    """Take ``folder``'s lock for this process (creating the folder), or raise naming the live owner.

    A stale lock is taken over with one warning. Returns the owner written, for :func:`release`.
    """
    folder, me = Path(folder), Owner.me()
    path = folder / LOCK
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        fd = None
    except OSError as err:
        raise _not_writable(folder, err) from err
    if fd is not None:
        with os.fdopen(fd, "w") as f:
            f.write(me.line())
        return me
    found = owner(folder)
    if found is None:  # another process may be between creating the file and writing its line
        time.sleep(0.2)
        found = owner(folder)
    if found is not None and found.alive() and not found.is_me():
        raise _refuse(folder, found)
    if found is None or not found.is_me():
        gone = f"named a fit that is gone ({found})" if found else "is unreadable"
        warnings.warn(f"{path} {gone}; this run takes the folder over", stacklevel=2)
    tmp = folder / f"{LOCK}.{os.getpid()}"
    try:
        tmp.write_text(me.line())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise _not_writable(folder, err) from err
    now = owner(folder)
    if now != me:  # another process took it over at the same moment
        raise _refuse(folder, now) if now is not None else FileExistsError(f"{path} changed while taking it over")
    return me


def release(folder: str | os.PathLike, mine: Owner) -> bool:
    """Remove ``folder``'s lock if it still names ``mine``; a lock that another process holds stays."""
    path = Path(folder) / LOCK
    if owner(folder) != mine:
        return False
    path.unlink(missing_ok=True)
    return True
