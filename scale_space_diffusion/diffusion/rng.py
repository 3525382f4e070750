"""Seeded randomness that does not depend on batching, devices or the global RNG.

Every sampled image is drawn from its own generator seeded by (seed, index), so it is bit-identical
however the batch is split across devices; training draws come from generators keyed by
(seed, stage, step, batch, rank), so a resumed run repeats them exactly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch import Tensor

Generator = torch.Generator | Sequence[torch.Generator] | None  # one for the batch, or one per sample


def seeded_generator(*key: int | str) -> torch.Generator:
    """A CPU generator seeded by a hash of ``key``: distinct keys give independent streams."""
    digest = hashlib.sha256(":".join(map(str, key)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def sample_generators(seed: int, indices: Tensor | Sequence[int]) -> list[torch.Generator]:
    """One generator per sample, seeded from (seed, sample index): independent of batching and devices."""
    indices = indices.tolist() if isinstance(indices, Tensor) else list(indices)
    return [seeded_generator(seed, i) for i in indices]


def randn(shape: Sequence[int], generator: Generator, like: Tensor | None = None) -> Tensor:
    """Standard normal noise drawn on the CPU; a list of generators draws one sample each.

    shape: (B, ...). With a sequence of B generators, row i comes from generator i alone.
    """
    if isinstance(generator, Sequence):
        if len(generator) != shape[0]:
            raise ValueError(f"got {len(generator)} generators for a batch of {shape[0]}")
        z = torch.cat([torch.randn(1, *shape[1:], generator=g) for g in generator])
    else:
        z = torch.randn(*shape, generator=generator)
    return z if like is None else z.to(device=like.device, dtype=like.dtype)
