"""Ancestral samplers for DDPM and Scale Space Diffusion, as free functions with one signature.

    sample_x(denoiser, process, x, *, steps, labels, generator, callback, disable) -> x_0
    denoiser(x_t, t, out_res, labels) -> x0_hat at out_res   (see :mod:`.parameterization`)

Every sampler walks descending timesteps with :func:`reverse_step`, the one place a step t -> s is
taken (the FLOPs counter traces it too). Each step draws x_s ~ q(x_s | x_t, x_0 = clip(x0_hat)),
the process posterior, which at a transition doubles the resolution with the exact anisotropic noise.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .parameterization import Denoiser
from .process import ScaleSpaceProcess
from .rng import Generator, randn


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


def jumps(steps: Sequence[int]) -> list[tuple[int, int]]:
    """The (t, s) pairs a sampler takes over descending ``steps``; the last goes to s = -1, the clean data."""
    steps = list(steps)
    return list(zip(steps, steps[1:] + [-1]))


def reverse_step(
    denoiser: Denoiser,
    process: ScaleSpaceProcess,
    x: Tensor,
    t: int,
    s: int,
    *,
    labels: Tensor | None = None,
    generator: Generator = None,
    clip: bool = True,
) -> tuple[Tensor, Tensor]:
    """One ancestral step x_t (B,C,r(t),r(t)) -> (x_s (B,C,r(s),r(s)), x0_hat); s = -1 returns the mean.

    DDPM Algorithm 2, line 4, with the scale-space posterior of :class:`ScaleSpaceProcess`.
    """
    t_batch = torch.full((len(x),), t, device=x.device, dtype=torch.long)
    x0_hat = denoiser(x, t_batch, process.ladder.res(s), labels)
    if clip:
        x0_hat = x0_hat.clamp(-1, 1)
    mean = process.posterior_mean(x, x0_hat, t, s)
    if s < 0:
        return mean, x0_hat
    return mean + process.posterior_noise(randn(mean.shape, generator, mean), t, s), x0_hat


@torch.no_grad()
def sample_ancestral(
    denoiser: Denoiser,
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
    """Ancestral sampling (Ho et al. 2020, Algorithm 2, generalised to the scale-space posterior).

    x: (B,C,r,r) prior noise at r(steps[0]); steps: descending timesteps, all T by default.
    Returns x_0 (B,C,R,R). ``callback`` gets {"i", "t", "x", "denoised"} after each step.
    """
    steps = list(range(process.T - 1, -1, -1)) if steps is None else list(steps)
    if x.shape[-1] != process.ladder.res(steps[0]):
        raise ValueError(f"x is {x.shape[-1]}px but step {steps[0]} lives at {process.ladder.res(steps[0])}px")
    for i, (t, s) in enumerate(tqdm(jumps(steps), disable=disable, desc="sampling", leave=False)):
        x, x0_hat = reverse_step(denoiser, process, x, t, s, labels=labels, generator=generator, clip=clip)
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "denoised": x0_hat})
    return x


def sample_respaced(
    denoiser: Denoiser,
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
        denoiser, process, x, steps=steps, labels=labels, generator=generator, clip=clip, callback=callback, disable=disable
    )
