"""Ancestral samplers for DDPM and Scale Space Diffusion, as free functions with one signature.

    sample_x(model, process, x, *, labels, generator, callback, disable) -> x_0
    model(x_t, t, out_res, labels) -> x0_hat at out_res   (the denoiser contract)

Each reverse step t -> s draws x_s ~ q(x_s | x_t, x_0 = clip(x0_hat)) (the process posterior),
which at a transition doubles the resolution with the exact anisotropic noise.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .process import ScaleSpaceProcess

Generator = torch.Generator | Sequence[torch.Generator] | None


def randn(shape: Sequence[int], generator: Generator, like: Tensor | None = None) -> Tensor:
    """Standard normal noise drawn on the CPU; a list of generators draws one sample each.

    Per-sample generators make every image depend only on its own seed, so samples are
    bit-identical however the batch is split across devices.
    """
    if isinstance(generator, Sequence):
        if len(generator) != shape[0]:
            raise ValueError(f"got {len(generator)} generators for a batch of {shape[0]}")
        z = torch.cat([torch.randn(1, *shape[1:], generator=g) for g in generator])
    else:
        z = torch.randn(*shape, generator=generator)
    return z if like is None else z.to(device=like.device, dtype=like.dtype)


def prior(process: ScaleSpaceProcess, batch: int, channels: int, generator: Generator = None, like=None) -> Tensor:
    """x_{T-1} ~ N(0, I) at the lowest resolution r(T-1): (batch, channels, r, r)."""
    r = process.ladder.res(process.T - 1)
    return randn((batch, channels, r, r), generator, like)


def respaced_steps(process: ScaleSpaceProcess, num_steps: int) -> list[int]:
    """About ``num_steps`` evenly spaced timesteps, descending, always keeping T-1, 0 and every transition.

    Between kept steps the skipped operators compose: the posterior of a jump t -> s uses
    abar at t and s and the resize r(s) -> r(t), as in improved-diffusion's respacing.
    """
    T = process.T
    if not 1 <= num_steps <= T:
        raise ValueError(f"num_steps must be in 1..{T}, got {num_steps}")
    even = torch.linspace(0, T - 1, num_steps).round().long().tolist()
    return sorted(set(even) | set(process.ladder.transitions) | {0, T - 1}, reverse=True)


@torch.no_grad()
def sample_ancestral(
    model: Callable[..., Tensor],
    process: ScaleSpaceProcess,
    x: Tensor,
    *,
    steps: Sequence[int] | None = None,
    labels: Tensor | None = None,
    generator: Generator = None,
    clip: bool = True,
    callback: Callable[[dict], None] | None = None,
    disable: bool | None = None,
) -> Tensor:
    """Ancestral sampling (DDPM Algorithm 2, generalised to the scale-space posterior).

    x: (B,C,r,r) prior noise at r(steps[0]); steps: descending timesteps, all T by default.
    Returns x_0 (B,C,R,R). ``callback`` gets {"i", "t", "x", "denoised"} after each step.
    """
    steps = list(range(process.T - 1, -1, -1)) if steps is None else list(steps)
    if x.shape[-1] != process.ladder.res(steps[0]):
        raise ValueError(f"x is {x.shape[-1]}px but step {steps[0]} lives at {process.ladder.res(steps[0])}px")
    for i, t in enumerate(tqdm(steps, disable=disable, desc="sampling", leave=False)):
        s = steps[i + 1] if i + 1 < len(steps) else -1
        r_s = process.ladder.res(s)
        t_batch = torch.full((len(x),), t, device=x.device, dtype=torch.long)
        x0_hat = model(x, t_batch, r_s, labels)
        if clip:
            x0_hat = x0_hat.clamp(-1, 1)
        mean = process.posterior_mean(x, x0_hat, t, s)
        x = mean + process.posterior_noise(randn(mean.shape, generator, mean), t, s) if s >= 0 else mean
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "denoised": x0_hat})
    return x


def sample_respaced(
    model: Callable[..., Tensor],
    process: ScaleSpaceProcess,
    x: Tensor,
    *,
    num_steps: int = 100,
    labels: Tensor | None = None,
    generator: Generator = None,
    clip: bool = True,
    callback: Callable[[dict], None] | None = None,
    disable: bool | None = None,
) -> Tensor:
    """Ancestral sampling over :func:`respaced_steps`; with ``num_steps = T`` it equals :func:`sample_ancestral`."""
    steps = respaced_steps(process, num_steps)
    return sample_ancestral(
        model, process, x, steps=steps, labels=labels, generator=generator, clip=clip, callback=callback, disable=disable
    )
