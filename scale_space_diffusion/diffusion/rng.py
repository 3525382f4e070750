"""Seeded randomness that does not depend on batching, devices or the global RNG.

Sampling draws every image's noise from its own counter-based stream: the normal numbers of image ``i`` at draw
``k`` are a pure function of (seed, i, k), computed on the model's device in one batched call (Threefry-2x32-20
of Salmon et al. 2011, "Parallel random numbers: as easy as 1, 2, 3", in int64 tensor ops, then Box-Muller), so an
image is the same whatever the batch it is drawn in and nothing is copied from the host per step. CPU and CUDA
evaluate log/cos with their own kernels, so their streams may differ in the last bits; each is deterministic.

Training draws (t and noise of a batch) come from CPU generators keyed by (seed, stage, step, batch, rank), so a
resumed run repeats them exactly; t must be known on the host anyway (it decides the network path).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

MASK32 = 0xFFFFFFFF
ROTATIONS = (13, 15, 26, 6, 17, 29, 16, 24)  # Threefry-2x32 rotation constants (Random123)
PARITY = 0x1BD11BDA  # Threefish key-schedule parity constant (< 2^31, so int32 holds it)


def _digest(key: tuple[int | str, ...]) -> bytes:
    return hashlib.sha256(":".join(map(str, key)).encode()).digest()


def hash32(*key: int | str) -> int:
    """A 32-bit integer from a hash of ``key``: distinct keys give unrelated values."""
    return int.from_bytes(_digest(key)[:4], "little")


def seeded_generator(*key: int | str) -> torch.Generator:
    """A CPU generator seeded by a hash of ``key``: distinct keys give independent streams."""
    return torch.Generator().manual_seed(int.from_bytes(_digest(key)[:8], "little") >> 1)


def int32(value: int) -> int:
    """The 32-bit word ``value`` as the signed int32 with the same bits."""
    value &= MASK32
    return value - (1 << 32) if value >= 1 << 31 else value


def threefry2x32(key: tuple[Tensor | int, Tensor | int], counter: tuple[Tensor | int, Tensor | int]) -> tuple[Tensor, Tensor]:
    """Threefry-2x32 with 20 rounds: two 32-bit words of key and counter -> two 32-bit words.

    Words are int32 tensors (or ints, see :func:`int32`) holding the bits of uint32: add wraps modulo 2^32 and the
    right shift of a rotation is masked to be logical, so the result is exact on every device. Inputs broadcast.
    """
    k0, k1 = key
    ks = (k0, k1, k0 ^ k1 ^ PARITY)
    x1 = torch.as_tensor(counter[1], dtype=torch.int32) + k1
    x0 = torch.as_tensor(counter[0], dtype=torch.int32) + k0 + torch.zeros_like(x1)
    for i in range(20):
        r = ROTATIONS[i % 8]
        x0 += x1
        x1 = (x1 << r) | ((x1 >> (32 - r)) & ((1 << r) - 1))  # rotate left by r
        x1 ^= x0
        if i % 4 == 3:  # key injection s = 1..5 after every four rounds
            s = i // 4 + 1
            x0 += ks[s % 3]
            x1 += ks[(s + 1) % 3]
            x1 += s
    return x0, x1


def box_muller(u_bits: Tensor, v_bits: Tensor) -> tuple[Tensor, Tensor]:
    """Two independent N(0, 1) float32 tensors from two tensors of uniform 32-bit words (Box & Muller 1958).

    u = (top 24 bits + 1/2) / 2^24 lies in (0, 1) exactly in float32, so log(u) is finite.
    """
    u = (((u_bits >> 8) & 0xFFFFFF).float() + 0.5) * 2.0**-24
    v = ((v_bits >> 8) & 0xFFFFFF).float() * 2.0**-24
    radius = (-2.0 * torch.log(u)).sqrt()
    angle = (2 * math.pi) * v
    return radius * torch.cos(angle), radius * torch.sin(angle)


@dataclass(frozen=True)
class ImageNoise:
    """Per-image counter-based noise streams: image ``indices[b]`` of ``seed`` draws the same numbers in any batch.

    Args:
        seed: the sampling seed (any int; hashed to 32 bits).
        indices: (B,) int image indices in [0, 2^31), on the device the noise is wanted (move them once).
    """

    seed: int
    indices: Tensor

    def __len__(self) -> int:
        return len(self.indices)

    def to(self, device: torch.device | str) -> ImageNoise:
        return ImageNoise(self.seed, to_device(self.indices, torch.device(device)))

    def randn(self, shape: Sequence[int], draw: int) -> Tensor:
        """N(0, I) of ``shape`` (B, ...) float32 on the indices' device; row b is a function of (seed, indices[b], draw)."""
        if shape[0] != len(self.indices):
            raise ValueError(f"got {len(self.indices)} image indices for a batch of {shape[0]}")
        n = math.prod(shape[1:])
        pairs = torch.arange((n + 1) // 2, device=self.indices.device, dtype=torch.int32)
        key = (int32(hash32(self.seed)), self.indices.to(torch.int32)[:, None])
        bits = threefry2x32(key, (int32(draw), pairs[None]))
        z0, z1 = box_muller(*bits)
        return torch.stack([z0, z1], dim=-1).flatten(1)[:, :n].reshape(shape)


def image_noise(seed: int, indices: Tensor | Sequence[int], device: torch.device | str = "cpu") -> ImageNoise:
    """:class:`ImageNoise` for images ``indices`` of ``seed`` (the sampler's per-image generator)."""
    indices = torch.as_tensor(indices, dtype=torch.int64)
    return ImageNoise(seed, to_device(indices, torch.device(device)))


Generator = ImageNoise | torch.Generator | Sequence[torch.Generator] | None  # what a sampler draws its noise from


def randn(shape: Sequence[int], generator: Generator, like: Tensor | None = None, draw: int = 0) -> Tensor:
    """Standard normal noise (shape (B, ...)) with ``like``'s device and dtype.

    generator: an :class:`ImageNoise` (drawn on its device, keyed by ``draw``: each sampler step passes its own);
    a torch.Generator (drawn on its device); a sequence of B CPU generators (row i from generator i, then copied:
    the slow path, kept for callers that hold such generators); or None (the global RNG on ``like``'s device).
    """
    device = like.device if like is not None else None
    if isinstance(generator, ImageNoise):
        z = generator.randn(shape, draw)
    elif isinstance(generator, Sequence):
        if len(generator) != shape[0]:
            raise ValueError(f"got {len(generator)} generators for a batch of {shape[0]}")
        z = torch.cat([torch.randn(1, *shape[1:], generator=g) for g in generator])
    elif generator is not None:
        z = torch.randn(*shape, generator=generator, device=generator.device)
    else:
        z = torch.randn(*shape, device=device)
    return z if like is None else z.to(device=like.device, dtype=like.dtype)


def to_device(x: Tensor, device: torch.device) -> Tensor:
    """``x`` on ``device``; a host tensor bound for CUDA goes from pinned memory, asynchronously (no host sync)."""
    if x.device == device:
        return x
    if x.device.type == "cpu" and device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device, non_blocking=True)
