"""The exponential moving average (EMA) of the weights, updated in one fused op per step with a host-side count.

    theta_ema <- beta_k theta_ema + (1 - beta_k) theta,   beta_k = 0 at the first update (a copy), then
    beta_k = min(beta, (1 + k) / (10 + k)) with warm-up (diffusers' ``EMAModel``), else beta.

Without warm-up an EMA of decay 0.9999 is still ~90 % the initial weights after 1,000 steps, so short runs sample
noise; with it, update k averages roughly the last k / 10 .. k steps until 1 / (1 - beta) steps have passed.
The update is ``torch._foreach_lerp_`` over every floating parameter and buffer, and "has the EMA started" is the
host integer ``updates``: nothing reads the device. The state dict keeps torch's ``AveragedModel`` layout
(``module.*`` and ``n_averaged``), so checkpoints of either load into the other.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn


def ema_decay(beta: float, k: int, warmup: bool) -> float:
    """beta_k of update k = 0, 1, ... (see the module docstring)."""
    if k == 0:
        return 0.0
    return min(beta, (1 + k) / (10 + k)) if warmup else beta


class EMA(nn.Module):
    """An EMA copy of ``net`` (frozen, never trained).

    Args:
        net: the network whose weights are averaged; copied now.
        decay: beta, the decay per update once warmed up, in (0, 1).
        warmup: ramp the decay up as (1 + k) / (10 + k).
    """

    def __init__(self, net: nn.Module, decay: float, warmup: bool = True):
        super().__init__()
        self.module = copy.deepcopy(net).requires_grad_(False)
        self.decay, self.warmup = decay, warmup
        self.register_buffer("n_averaged", torch.tensor(0, dtype=torch.long))
        self.updates = 0  # host copy of n_averaged: read by the hot path instead of the buffer

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        """One EMA step towards ``net``'s current weights: one fused lerp, no host read of the device."""
        weight = 1.0 - ema_decay(self.decay, self.updates, self.warmup)
        ours, theirs = _floats(self.module), _floats(net)
        if len(ours) != len(theirs):
            raise ValueError(f"the EMA holds {len(ours)} tensors but the network {len(theirs)}: not the same network")
        torch._foreach_lerp_(ours, theirs, weight)
        for mine, other in zip(self.module.buffers(), net.buffers()):
            if not mine.is_floating_point():
                mine.copy_(other)
        self.n_averaged.add_(1)
        self.updates += 1

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        count = state_dict.get(prefix + "n_averaged")
        if isinstance(count, Tensor):  # read once, when a checkpoint is loaded: not a per-step read
            self.updates = int(count)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _floats(net: nn.Module) -> list[Tensor]:
    """The floating-point parameters and buffers of ``net``, in registration order (what the EMA averages)."""
    return [p for p in net.parameters()] + [b for b in net.buffers() if b.is_floating_point()]
