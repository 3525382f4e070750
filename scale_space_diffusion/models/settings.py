"""Settings every model shares, as typed groups: LightningCLI renders each as a YAML block, e.g.

    optim: {lr: 1.0e-3, ema_decay: 0.995}
    sampling: {steps: 100, seed: 0}

Checkpoints store them as plain dicts (so ``torch.load(weights_only=True)`` reads them); :func:`coerce` turns a dict
back into its group.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Literal, TypeVar

G = TypeVar("G")


@dataclass(frozen=True)
class Optimization:
    """AdamW and the exponential moving average (EMA) of the weights.

    Args:
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        ema_decay: EMA decay per step; None disables EMA. Sampling, grids and checkpoints' inference weights use EMA.
        ema_warmup: ramp the EMA decay up as min(ema_decay, (1 + k) / (10 + k)) at update k (diffusers' warm-up),
            so a short run samples from weights that have learned something; false uses ema_decay from the start.
        ema_start_step: the EMA starts as a copy of the weights at this step.
        cond_drop_prob: class-conditional nets: the share of training labels replaced by "no label" (-1), so the
            net also learns the unconditional model that classifier-free guidance needs; the net must have
            null_class=true.
        seed: the seed of the training draws (timesteps, noise, label dropout), which are a function of (seed,
            step, batch, rank), so a resumed run repeats them; initial weights and data order follow seed_everything.
    """

    lr: float = 2e-4
    weight_decay: float = 0.0
    ema_decay: float | None = 0.9999
    ema_warmup: bool = True
    ema_start_step: int = 0
    cond_drop_prob: float = 0.0
    seed: int = 0

    def __post_init__(self):
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr} must be > 0; set --model.init_args.optim.lr, e.g. 2e-4")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay={self.weight_decay} must be >= 0; set --model.init_args.optim.weight_decay=0")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay={self.ema_decay} must be in (0, 1) or null; e.g. 0.9999, or null for no EMA")
        if self.ema_start_step < 0:
            raise ValueError(f"ema_start_step={self.ema_start_step} must be >= 0")
        if not 0 <= self.cond_drop_prob < 1:
            raise ValueError(f"cond_drop_prob={self.cond_drop_prob} must be in [0, 1), e.g. 0.1")


@dataclass(frozen=True)
class Sampling:
    """How ``sample``, ``predict`` and the sample grids draw images.

    Args:
        steps: sampler steps (respaced; SSD always keeps its transitions); None runs all T steps.
        sampler: "ancestral" (the exact posterior at every step) or "ddim" (the DDIM family; for SSD its
            scale-space generalisation), which keeps every marginal exact at any eta.
        eta: the DDIM noise level in [0, 1]: 0 is deterministic (but for fresh noise where a transition doubles
            the resolution), 1 is ancestral sampling. Used by sampler="ddim".
        guidance_scale: classifier-free guidance w: x0_hat = x0_uncond + w (x0_cond - x0_uncond); 1 is the
            conditional model (no guidance), 0 the unconditional one. w != 1 needs a net trained with
            optim.cond_drop_prob > 0.
        seed: image i is drawn from a generator seeded by (seed, i), whatever the batch or device.
        grid_every_n_epochs: validation epochs between sample grids; 0 disables them.
        grid_size: images per sample grid.
    """

    steps: int | None = 100
    sampler: Literal["ancestral", "ddim"] = "ancestral"
    eta: float = 0.0
    guidance_scale: float = 1.0
    seed: int = 0
    grid_every_n_epochs: int = 1
    grid_size: int = 16

    def __post_init__(self):
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"sampling.steps={self.steps} must be >= 1, or null for all timesteps")
        if self.sampler not in ("ancestral", "ddim"):
            raise ValueError(f"sampling.sampler={self.sampler!r} must be 'ancestral' or 'ddim'")
        if not 0 <= self.eta <= 1:
            raise ValueError(f"sampling.eta={self.eta} must be in [0, 1]: 0 deterministic DDIM, 1 ancestral")
        if self.grid_every_n_epochs < 0 or self.grid_size < 0:
            raise ValueError(f"sampling.grid_every_n_epochs={self.grid_every_n_epochs} and sampling.grid_size="
                             f"{self.grid_size} must be >= 0; 0 turns the grids off")  # fmt: skip

    @property
    def effective_eta(self) -> float:
        """The eta the sampler runs with: 1 for ancestral sampling."""
        return 1.0 if self.sampler == "ancestral" else self.eta


def coerce(group: type[G], value: G | dict[str, Any]) -> G:
    """``value`` as an instance of the dataclass ``group``; a dict (as checkpoints store it) is converted."""
    if isinstance(value, group):
        return value
    if isinstance(value, dict):
        known = {f.name for f in fields(group)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown {group.__name__} settings {unknown}; known: {sorted(known)}")
        return group(**value)
    raise TypeError(f"expected a {group.__name__} or a dict, got {type(value).__name__}")


def plain(value: Any) -> Any:
    """Dataclasses (and containers of them) as plain dicts, for checkpoints read with ``weights_only=True``."""
    if is_dataclass(value) and not isinstance(value, type):  # constructor fields only (not derived tensors)
        return {f.name: plain(getattr(value, f.name)) for f in fields(value) if f.init}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    return value
