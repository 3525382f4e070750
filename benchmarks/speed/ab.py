"""A/B timing on a noisy machine: a source tree per side (``tree``: "." or a revision exported to /tmp), a
``worker.py`` process per side importing that tree's package (``Worker``), and paired speed-ups (``paired``)."""

from __future__ import annotations

import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).resolve().parent / "worker.py"


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True).stdout.strip()


def tree(rev: str) -> tuple[Path, str]:
    """(source tree, description) for a side: "." = the working tree, else the revision exported to /tmp."""
    if rev == ".":
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "scale_space_diffusion"))
        return ROOT, f"working tree at {git('rev-parse', '--short', 'HEAD')}{' + local changes' if dirty else ''}"
    sha = git("rev-parse", "--verify", f"{rev}^{{commit}}")
    dest = Path(tempfile.gettempdir()) / f"ssd-throughput-{sha[:12]}"
    if not (dest / ".complete").is_file():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", sha, "scale_space_diffusion"],
                                 check=True, capture_output=True).stdout  # fmt: skip
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(dest, filter="data")
        (dest / ".complete").write_text(sha + "\n")
    return dest, f"{sha[:7]} ({git('log', '-1', '--format=%s', sha)[:60]})"


class WorkerError(RuntimeError):
    pass


class Worker:
    """A ``worker.py`` process importing the package from ``source``."""

    def __init__(self, name: str, source: Path, threads: int, options: list[str]):
        self.name, self.source, self.options = name, source, options
        env = dict(os.environ, PYTHONPATH=str(source), THROUGHPUT_THREADS=str(threads),
                   THROUGHPUT_OPTIONS=",".join(options), OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                   PYTHONUNBUFFERED="1", JSONARGPARSE_DEPRECATION_WARNINGS="off")  # fmt: skip
        self.stderr = tempfile.TemporaryFile(mode="w+")  # the worker's prints and warnings; its tail goes in errors
        self.proc = subprocess.Popen([sys.executable, str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True, env=env, cwd=tempfile.gettempdir())  # fmt: skip
        self.info = self.ask(cmd="info")
        if Path(self.info["package"]).resolve() != (source / "scale_space_diffusion").resolve():
            raise WorkerError(f"{name}: imported {self.info['package']}, expected {source}/scale_space_diffusion")

    def ask(self, **msg) -> dict:
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            self.stderr.seek(0)
            tail = self.stderr.read()[-3000:]
            raise WorkerError(f"{self.name}: worker exited (code {code}) on {msg.get('cmd')}:\n{tail}")
        reply = json.loads(line)
        if not reply.pop("ok"):
            raise WorkerError(f"{self.name}: {reply['error']}\n{reply.get('traceback', '')}")
        return reply

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
        self.stderr.close()


median = statistics.median


@dataclass
class Series:
    """Per-repetition medians of one measurement, for each side (None where a side did not run)."""

    a: list[float] = field(default_factory=list)
    b: list[float] = field(default_factory=list)

    def add(self, side: str, times: list[float]) -> None:
        getattr(self, side).append(median(times))


def paired(a: list[float], b: list[float]) -> dict:
    """Medians of A and B (seconds) and the paired speed-up A/B per repetition: median, min, max."""
    out = {"a_s": median(a) if a else None, "b_s": median(b) if b else None}
    if a and b:
        ratios = [x / y for x, y in zip(a, b)]
        out.update(speedup=median(ratios), speedup_min=min(ratios), speedup_max=max(ratios), reps=len(ratios))
    else:
        out.update(speedup=None, speedup_min=None, speedup_max=None, reps=len(a or b))
    return out
