"""The resolution ladder of Scale Space Diffusion: which resolution each timestep lives at.

Levels run R, R/2, ..., R/2^(L-1). With tau = t / (T-1), the level counted from the top is
k(t) = min(floor(x(tau) * L), L - 1), where x = tau ("equal") or x = 1 - (1 - tau)^gamma
("convex", the official default with gamma = 0.5), and r(t) = R / 2^k(t).
A step t with r(t) != r(t-1) is a *transition*: the reverse step t -> t-1 doubles the resolution.
A ladder with one level is plain DDPM.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import torch
from torch import Tensor

LadderSchedule = Literal["convex", "equal"]


@dataclass(frozen=True)
class ResolutionLadder:
    image_size: int  # R, the top resolution
    num_levels: int = 1  # L; 1 gives DDPM
    T: int = 1000  # diffusion steps
    schedule: LadderSchedule = "convex"  # t -> level mapping
    gamma: float = 0.5  # convexity of the "convex" schedule

    def __post_init__(self):
        R, L = self.image_size, self.num_levels
        if L < 1:
            raise ValueError(f"num_levels={L} must be >= 1 (1 is plain DDPM)")
        if R % 2 ** (L - 1):
            ok = [n for n in range(1, L + 1) if R % 2 ** (n - 1) == 0][-1]
            raise ValueError(
                f"image_size {R} is not divisible by 2^(num_levels-1) = {2 ** (L - 1)}; "
                f"use num_levels <= {ok} or an image_size divisible by {2 ** (L - 1)}"
            )
        if self.schedule not in ("convex", "equal"):
            raise ValueError(f"unknown ladder schedule {self.schedule!r}; use 'convex' or 'equal'")
        if not self.gamma > 0:
            raise ValueError(f"gamma={self.gamma} must be > 0; use the official default 0.5")
        if self.T < L:
            raise ValueError(f"timesteps={self.T} cannot fill num_levels={L} levels; use timesteps >= {L} or fewer levels")

    @property
    def resolutions(self) -> list[int]:
        """Ladder from the top: [R, R/2, ..., R/2^(L-1)]."""
        return [self.image_size >> k for k in range(self.num_levels)]

    def level(self, t: int) -> int:
        """k(t), counted from the top (0 = full resolution). t = -1 (clean data) is level 0."""
        if t < 0 or self.num_levels == 1:
            return 0
        tau = t / (self.T - 1) if self.T > 1 else 0.0
        x = tau if self.schedule == "equal" else 1 - (1 - tau) ** self.gamma
        # Plain Python floats, as the authors' code: t = 555 at T = 1000, L = 3 lands on level 1.
        return min(math.floor(x * self.num_levels), self.num_levels - 1)

    @cached_property
    def t2res(self) -> list[int]:
        """r(t) for t = 0..T-1."""
        return [self.image_size >> self.level(t) for t in range(self.T)]

    def res(self, t: int) -> int:
        """r(t); r(-1) = R."""
        return self.image_size if t < 0 else self.t2res[t]

    @cached_property
    def transitions(self) -> list[int]:
        """Steps t with r(t) != r(t-1), ascending."""
        return [t for t in range(1, self.T) if self.t2res[t] != self.t2res[t - 1]]

    @cached_property
    def steps_per_level(self) -> list[int]:
        """Number of timesteps at each level, from the top."""
        return [self.t2res.count(r) for r in self.resolutions]

    @cached_property
    def _plain_steps(self) -> dict[int, Tensor]:
        """Non-transition steps grouped by resolution."""
        trans = set(self.transitions)
        return {
            r: torch.tensor([t for t in range(self.T) if self.t2res[t] == r and t not in trans])
            for r in self.resolutions
        }

    def sample_t(
        self, batch: int, generator: torch.Generator | None = None, shared: torch.Generator | None = None
    ) -> Tensor:
        """Training timesteps (batch,) with one input and one output resolution per batch.

        Draw t0 ~ U{0..T-1} (from ``shared`` if given: data-parallel ranks pass the same one, so
        they run the same network path in a step). A transition t0 fills the whole batch; otherwise
        the batch is drawn uniformly from the non-transition steps at r(t0). The marginal of each
        entry is U{0..T-1}. With one level this is exactly ``torch.randint(T, (batch,))``.
        """
        if self.num_levels == 1:
            return torch.randint(self.T, (batch,), generator=generator)
        t0 = int(torch.randint(self.T, (1,), generator=shared if shared is not None else generator))
        if t0 in self.transitions:
            return torch.full((batch,), t0, dtype=torch.long)
        pool = self._plain_steps[self.t2res[t0]]
        return pool[torch.randint(len(pool), (batch,), generator=generator)]
