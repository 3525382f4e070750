"""``torch_compile`` for a model's networks: compiled in place once (parameter names unchanged), static shapes, one
graph per network path (``"reduce-overhead"``: one CUDA graph per path), and the first training step of each path,
mostly its compile, timed and printed once."""

from __future__ import annotations

import time
from collections.abc import Iterable

from torch import nn

from ..lightning_internals import is_compiled


def compile_in_place(nets: Iterable[nn.Module | None], mode: str) -> None:
    """``net.compile(mode=mode, dynamic=False)`` for each network given and not compiled yet."""
    for net in nets:
        if net is not None and not is_compiled(net):
            net.compile(mode=mode, dynamic=False)


class PathCompileLog:
    """The first training step of each network path (in_res, out_res): started by :meth:`start`, printed by
    :meth:`finish` when the step ends; later steps of a path seen before print nothing."""

    def __init__(self) -> None:
        self.seen: set[tuple[int, int]] = set()
        self.started: tuple[tuple[int, int], float] | None = None

    def start(self, path: tuple[int, int]) -> None:
        if path not in self.seen:
            self.seen.add(path)
            self.started = (path, time.perf_counter())

    def finish(self) -> None:
        if self.started is not None:
            (r_in, r_out), t0 = self.started
            self.started = None
            print(f"torch.compile: training path {r_in}->{r_out}px compiled, first step {time.perf_counter() - t0:.1f} s")
