"""The order of training samples, and their flips, as a function of (seed, epoch, position).

Nothing here reads the global RNG or depends on ``num_workers``, so a run that resumes from a checkpoint
sees exactly the batches the uninterrupted run would have seen, on one device or many.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DistributedSampler


class EpochSampler(DistributedSampler):
    """Yields ``(index, flip)`` for one data-parallel rank.

    Epoch ``e`` draws a permutation of ``range(n)`` and one flip bit per position from a generator seeded with
    ``seed + e``, pads it to a multiple of ``num_replicas`` and deals it to ranks as torch's
    ``DistributedSampler`` does (Lightning keeps a ``DistributedSampler`` as is instead of wrapping it).
    ``resume(epoch, skip, trainer_epoch)`` makes the next pass over ``epoch`` skip the samples already trained on,
    and keeps the data's epochs in step when the Trainer's epoch counter says otherwise (a checkpoint written at
    the end of ``fit`` counts its unfinished epoch as done, so the resumed Trainer starts one epoch ahead).
    """

    def __init__(self, n: int, seed: int = 0, num_replicas: int = 1, rank: int = 0, flip: bool = False):
        super().__init__(range(n), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.flip = flip
        self._skip: tuple[int, int] | None = None  # (epoch, samples to skip on this rank)
        self._shift = 0  # data epoch - Trainer epoch

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning with its epoch counter at every epoch start."""
        super().set_epoch(epoch + self._shift)

    def resume(self, epoch: int, skip: int, trainer_epoch: int | None = None) -> None:
        """Make the next pass over data epoch ``epoch`` start after its first ``skip`` samples (on this rank);
        ``trainer_epoch`` is what the Trainer will call that pass (default: the same)."""
        self._shift = 0 if trainer_epoch is None else epoch - trainer_epoch
        super().set_epoch(epoch)  # also right when a worker pool iterates before Lightning calls set_epoch
        self._skip = (epoch, skip)

    def __iter__(self) -> Iterator[tuple[int, bool]]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.dataset), generator=g)
        flips = torch.rand(len(order), generator=g) < 0.5 if self.flip else torch.zeros(len(order), dtype=torch.bool)
        pad = self.total_size - len(order)
        order, flips = (torch.cat([v, v.repeat(pad // len(v) + 1)[:pad]]) for v in (order, flips))
        order, flips = order[self.rank :: self.num_replicas], flips[self.rank :: self.num_replicas]
        start = 0
        if self._skip is not None and self._skip[0] == self.epoch:
            start, self._skip = self._skip[1], None
        return zip(order[start:].tolist(), flips[start:].tolist())
