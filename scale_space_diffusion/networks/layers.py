"""Small layer helpers shared by the networks."""

from __future__ import annotations

import math

from torch import nn


def group_norm(channels: int) -> nn.GroupNorm:
    """ADM's GroupNorm32, with fewer groups for narrow test networks."""
    return nn.GroupNorm(math.gcd(32, channels), channels)


def zero_init(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module
