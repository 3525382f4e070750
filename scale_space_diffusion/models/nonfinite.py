"""The NaN guard without a per-step sync: a device-side record of the first non-finite loss, read at check points.

Every step ``observe``s its loss on the device (no host read). The module ``check``s the record where a run
synchronises anyway: every ``log_every_n_steps`` training steps, before any checkpoint is written, and at the end
of every epoch. A non-finite loss then stops the run with the step it first happened at, before a checkpoint with
non-finite weights can be written: the files already written are kept.
"""

from __future__ import annotations

import torch
from torch import Tensor


STAGES = ("train", "val", "test")


class NonFiniteGuard:
    """The first non-finite loss of each stage since its last check: its step and value live on the loss's device
    (plain tensors, not buffers: data-parallel ranks keep their own); the host keeps the timestep range of the steps
    since then (it drew them), to name in the message."""

    def __init__(self):
        self.first_step = torch.full((len(STAGES),), -1, dtype=torch.long)
        self.first_loss = torch.zeros(len(STAGES))
        self.t_ranges: dict[tuple[str, int], tuple[int, int]] = {}  # (stage, step) -> (min t, max t), host numbers

    @torch.no_grad()
    def observe(self, stage: str, loss: Tensor, step: int, t_host: Tensor) -> None:
        """Record ``loss`` of ``step`` if it is the stage's first non-finite one; ``t_host``: its timesteps (CPU)."""
        if self.first_step.device != loss.device:  # a host-side comparison; the record moves once
            self.first_step, self.first_loss = self.first_step.to(loss.device), self.first_loss.to(loss.device)
        i = STAGES.index(stage)
        first_step, first_loss = self.first_step[i], self.first_loss[i]  # views
        new = ~torch.isfinite(loss) & (first_step < 0)
        first_step.copy_(torch.where(new, step, first_step))
        first_loss.copy_(torch.where(new, loss.float(), first_loss))
        lo, hi = int(t_host.min()), int(t_host.max())  # a step's val/test batches widen its range
        seen = self.t_ranges.get((stage, step), (lo, hi))
        self.t_ranges[stage, step] = (min(lo, seen[0]), max(hi, seen[1]))

    def check(self, stage: str) -> None:
        """Raise FloatingPointError naming the step, loss and timesteps if ``stage`` observed a non-finite loss (this
        reads the device: call it where the run synchronises anyway)."""
        i = STAGES.index(stage)
        step = int(self.first_step[i])
        if step < 0:
            self.t_ranges = {k: v for k, v in self.t_ranges.items() if k[0] != stage}
            return
        lo, hi = self.t_ranges.get((stage, step), (-1, -1))
        raise FloatingPointError(
            f"non-finite {stage} loss {float(self.first_loss[i])} at global step {step} with t in [{lo}, {hi}]; "
            "resume from the last checkpoint with a lower --model.init_args.optim.lr, or check the data. "
            "Checkpoints already written are kept."
        )
