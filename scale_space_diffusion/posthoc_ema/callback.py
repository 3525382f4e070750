"""The training side of post-hoc EMA (EDM2, Sec. 3): track power-function EMAs, save snapshots every N steps.

    ssd fit --config configs/ssd_fmnist32.yaml \\
        --trainer.callbacks+=scale_space_diffusion.posthoc_ema.PowerEMA \\
        --trainer.callbacks.init_args.every_n_steps=200

Each step costs one fused ``torch._foreach_lerp_`` per tracked EMA (E4); the step count lives on the host (an int),
so the update reads nothing back from the device. Snapshots are plain files ``phema-<step>.pt`` holding every
tracked EMA (``{"step", "sigma_rels", "emas": [state dict per EMA], "buffers", "aliases"}``, CPU tensors, names of
``pl_module.net``; ``aliases`` maps the other names of a shared parameter to the one its EMA is saved under),
written atomically by the global-zero rank; :mod:`.reconstruct` rebuilds any EMA from them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import torch

from .profiles import Profile, power_beta, sigma_rel_to_gamma

SNAPSHOT_GLOB = "phema-*.pt"


def snapshot_name(step: int) -> str:
    return f"phema-{step:09d}.pt"


class PowerEMA(L.Callback):
    """Power-function EMAs of ``pl_module.net`` (EDM2's defaults sigma_rel 0.05 and 0.10), snapshot every N steps.

    Args:
        sigma_rels: the relative widths (E2) tracked, each in (0, 0.2887).
        every_n_steps: optimizer steps between snapshots; the end of training is always saved too.
        dirpath: where snapshots go; default ``<trainer.default_root_dir>/phema``.

    The EMA of optimizer step t averages the weights after steps 1..t with the discrete power profile (E4); a
    callback added to a resumed run starts from the current weights (they stand in for the earlier iterates).
    Its state (the EMAs and the step) is saved in Lightning checkpoints, so a resumed run continues exactly.
    """

    def __init__(self, sigma_rels: Sequence[float] = (0.05, 0.10), every_n_steps: int = 1000,
                 dirpath: str | None = None):  # fmt: skip
        if not sigma_rels:
            raise ValueError("sigma_rels is empty; track at least two widths, e.g. [0.05, 0.10] (EDM2's defaults)")
        if len(set(sigma_rels)) != len(sigma_rels):
            raise ValueError(f"sigma_rels={list(sigma_rels)} repeats a width; give distinct values, e.g. [0.05, 0.10]")
        self.sigma_rels = [float(s) for s in sigma_rels]
        self.gammas = [sigma_rel_to_gamma(s) for s in self.sigma_rels]  # checks each width
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps={every_n_steps} must be >= 1, e.g. 1000")
        self.every_n_steps, self.dirpath = int(every_n_steps), dirpath
        self.step = 0  # optimizer steps averaged so far (host side)
        self.emas: list[list[torch.Tensor]] = []  # per EMA, one tensor per parameter of the net
        self._params: list[torch.Tensor] = []
        self._restored: dict[str, Any] | None = None
        self._last_saved = -1

    # -- setup and resume ----------------------------------------------------------------------------------------
    def folder(self, trainer: L.Trainer) -> Path:
        return Path(self.dirpath) if self.dirpath is not None else Path(trainer.default_root_dir) / "phema"

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        from lightning.pytorch.strategies import FSDPStrategy

        if stage == "fit" and isinstance(trainer.strategy, FSDPStrategy):
            raise ValueError("PowerEMA averages whole parameters, which FSDP shards; use strategy=ddp with PowerEMA")
        if not isinstance(getattr(pl_module, "net", None), torch.nn.Module):
            raise TypeError(f"PowerEMA averages pl_module.net, but {type(pl_module).__name__} has no `net` module")

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._params = [p.detach() for p in pl_module.net.parameters()]
        restored, self._restored = self._restored, None
        if restored is not None:
            if restored["sigma_rels"] != self.sigma_rels:
                raise ValueError(
                    f"the checkpoint's PowerEMA tracked sigma_rels={restored['sigma_rels']}, this one {self.sigma_rels}"
                    f"; resume with --trainer.callbacks.init_args.sigma_rels={restored['sigma_rels']}"
                )
            self.step = int(restored["step"])
            self.emas = [[e.to(p) for e, p in zip(ema, self._params)] for ema in restored["emas"]]
        else:
            self.step = 0
            self.emas = [[p.clone() for p in self._params] for _ in self.sigma_rels]
        self._last_saved = self.step

    @property
    def state_key(self) -> str:
        """Unique per tracked widths and folder, so several PowerEMAs can share a Trainer and its checkpoints."""
        return f"PowerEMA(sigma_rels={self.sigma_rels}, dirpath={self.dirpath})"

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "sigma_rels": self.sigma_rels, "emas": self.emas}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = state_dict  # applied in on_fit_start, once the net is on its device

    # -- every step ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        step = trainer.global_step  # a host int: optimizer steps so far (unchanged on accumulation micro-batches)
        if step <= self.step:
            return
        self.step = step
        for gamma, ema in zip(self.gammas, self.emas):
            torch._foreach_lerp_(ema, self._params, 1.0 - power_beta(gamma, step))  # (E4)
        if step % self.every_n_steps == 0:
            self.save(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.step > self._last_saved:
            self.save(trainer, pl_module)

    # -- snapshots -------------------------------------------------------------------------------------------
    def profiles(self) -> list[Profile]:
        """The profiles a snapshot saved now holds, one per tracked EMA."""
        return [Profile(self.step, s) for s in self.sigma_rels]

    def save(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Path | None:
        """Write ``phema-<step>.pt`` (global-zero rank only); returns its path there."""
        self._last_saved = self.step
        if not trainer.is_global_zero:
            return None
        names = {id(p): name for name, p in pl_module.net.named_parameters()}  # a shared parameter: its first name
        snapshot = {
            "step": self.step,
            "sigma_rels": self.sigma_rels,
            "emas": [{n: e.detach().cpu().clone() for n, e in zip(names.values(), ema)} for ema in self.emas],
            "buffers": {n: b.detach().cpu().clone() for n, b in pl_module.net.named_buffers()},
            "aliases": {n: names[id(p)] for n, p in pl_module.net.named_parameters(remove_duplicate=False)
                        if names[id(p)] != n},  # its other names (e.g. FlexiUNet's shared adapters): state_dict keys
        }
        path = self.folder(trainer) / snapshot_name(self.step)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            torch.save(snapshot, tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path
