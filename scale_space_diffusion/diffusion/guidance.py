"""Classifier-free guidance (Ho & Salimans 2022): one network trained with and without labels, mixed at sampling.

Label -1 means "no label" (the network's learned null embedding). Training drops labels with probability p
(:func:`drop_labels`); sampling mixes the conditional and unconditional outputs (:func:`guided`):

    (G1) raw_w = raw_uncond + w (raw_cond - raw_uncond) = (1 - w) raw_uncond + w raw_cond

w is the guidance scale in the common convention: w = 1 is the conditional model, w = 0 the unconditional one;
Ho & Salimans' Eq. 6, eps~ = (1 + w') eps(z, c) - w' eps(z), is (G1) with w = 1 + w'.

(G1) mixes the *raw* output, eps or x_0. Either way it equals mixing x0_hat (and eps_hat): for fixed x_t and t,
x0_hat = (x_t - sigma_t raw) / a_t (Ho et al. 2020, Eq. 15) or x0_hat = raw is affine in raw, and an affine map
commutes with a combination whose weights (1 - w) + w sum to 1.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .parameterization import RawNetwork
from .rng import to_device

NULL_LABEL = -1


def guided(raw_network: RawNetwork, w: float) -> RawNetwork:
    """(G1) as a RawNetwork (x_t (B,C,r,r), t (B,), out_res, labels (B,)) -> (B,C,out_res,out_res).

    Both halves come from ONE call on the doubled batch [x_t; x_t] with labels [labels; -1...], so the network
    runs at batch 2B (memory and FLOPs double). w = 1 returns the conditional call itself (batch B) and w = 0
    the unconditional one; entries whose label is already -1 get the unconditional output for every w.
    """
    w = float(w)

    def call(x_t: Tensor, t: Tensor, out_res: int, labels: Tensor | None) -> Tensor:
        if w == 1:
            return raw_network(x_t, t, out_res, labels)
        if labels is None:
            raise ValueError(f"guidance scale {w} needs labels: use a class-conditional model, or guidance_scale=1")
        null = torch.full_like(labels, NULL_LABEL)
        if w == 0:
            return raw_network(x_t, t, out_res, null)
        both = raw_network(torch.cat([x_t, x_t]), torch.cat([t, t]), out_res, torch.cat([labels, null]))
        cond, uncond = both.chunk(2)
        return uncond + w * (cond - uncond)

    return call


def drop_labels(labels: Tensor, p: float, generator: torch.Generator) -> Tensor:
    """labels (B,) with each entry set to -1 (no label) with probability p, independently.

    The coin flips u ~ U(0, 1) (B,) come from ``generator`` on the CPU, so a resumed run that re-creates the generator
    drops the same labels. p = 0 returns ``labels`` itself without drawing.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"cond_drop_prob={p} must be in [0, 1], e.g. 0.1")
    if p == 0:
        return labels
    drop = to_device(torch.rand(len(labels), generator=generator) < p, labels.device)  # pinned, no host sync
    return torch.where(drop, torch.full_like(labels, NULL_LABEL), labels)


def check_guidance(net, w: float, p: float) -> None:
    """Refuse guidance ``w`` != 1 or label dropout ``p`` > 0 that ``net`` cannot do, naming the fix."""
    if (w != 1 or p > 0) and getattr(net, "null_emb", None) is None:
        raise ValueError(
            f"guidance_scale={w} / cond_drop_prob={p} need a class-conditional net with a null-label embedding; "
            "build the net with num_classes and null_class=true (and train with optim.cond_drop_prob=0.1)"
        )
    if w != 1 and p == 0:
        raise ValueError(
            f"guidance_scale={w} needs a net trained with label dropout, but this one was trained with "
            "optim.cond_drop_prob=0, so its unconditional model is untrained; use sampling.guidance_scale=1, or "
            "train with --model.init_args.optim.cond_drop_prob=0.1"
        )
