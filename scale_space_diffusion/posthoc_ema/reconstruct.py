"""The sampling side of post-hoc EMA (EDM2, Sec. 3): rebuild the EMA of any width from the saved snapshots.

    python -m scale_space_diffusion.posthoc_ema --ckpt outputs/ssd_fmnist32/checkpoints/last.ckpt \\
        --snapshots outputs/ssd_fmnist32/phema --sigma-rel 0.03 0.05 0.08 --out outputs/phema

The weights of (E6) (:func:`.profiles.solve_weights`) combine the snapshots' EMAs into the target's:
theta_target = sum_k x_k ema_k, summed in float64 one snapshot file at a time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from .callback import SNAPSHOT_GLOB
from .profiles import Profile, solve_weights


@dataclass(frozen=True)
class SnapshotFile:
    path: Path
    step: int
    sigma_rels: tuple[float, ...]  # the EMAs it holds, in order

    @property
    def profiles(self) -> list[Profile]:
        return [Profile(self.step, s) for s in self.sigma_rels]


def read_index(folder: str | Path) -> list[SnapshotFile]:
    """The snapshots in ``folder`` (written by :class:`~.callback.PowerEMA`), by step."""
    folder = Path(folder)
    paths = sorted(folder.glob(SNAPSHOT_GLOB)) if folder.is_dir() else []
    if not paths:
        raise FileNotFoundError(
            f"no post-hoc EMA snapshots ({SNAPSHOT_GLOB}) in {str(folder)!r}; pass the folder the PowerEMA callback "
            "wrote (default <trainer.default_root_dir>/phema)"
        )
    index = []
    for path in paths:
        meta = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        if not re.fullmatch(r"phema-\d+\.pt", path.name) or {"step", "sigma_rels", "emas"} - set(meta):
            raise ValueError(f"{path} is not a PowerEMA snapshot (no step, sigma_rels or emas); remove it from {folder}")
        index.append(SnapshotFile(path, int(meta["step"]), tuple(float(s) for s in meta["sigma_rels"])))
    return sorted(index, key=lambda f: f.step)


def reconstruct(snapshots: Sequence[SnapshotFile], target: Profile, exact: bool = True) -> dict[str, Tensor]:
    """The network state (parameters and buffers) of the power EMA ``target`` from the snapshots up to its step.

    Snapshots after ``target.step`` are ignored (they average later weights); the buffers are the last used
    snapshot's. Returns float tensors in the snapshots' dtype, a shared parameter under each of its names.
    """
    used = [f for f in snapshots if f.step <= target.step]
    if not used:
        first = min(f.step for f in snapshots) if snapshots else None
        raise ValueError(f"no snapshot at or before step {target.step} (the first is at {first}); ask for a later step")
    profiles = [p for f in used for p in f.profiles]
    weights = solve_weights(profiles, [target], exact)[:, 0].tolist()
    total: dict[str, Tensor] = {}
    dtypes: dict[str, torch.dtype] = {}
    k = 0
    for f in used:
        snap = torch.load(f.path, map_location="cpu", weights_only=True)
        for ema in snap["emas"]:
            for name, value in ema.items():
                dtypes.setdefault(name, value.dtype)
                term = weights[k] * value.double()
                total[name] = total[name] + term if name in total else term
            k += 1
        buffers, aliases = snap.get("buffers", {}), snap.get("aliases", {})
    state = {n: v.to(dtypes[n]) for n, v in total.items()}
    return {**state, **{alias: state[name] for alias, name in aliases.items()}, **buffers}


def latest_step(snapshots: Sequence[SnapshotFile]) -> int:
    return max(f.step for f in snapshots)


def apply_to_model(model, state: dict[str, Tensor]):
    """Make ``state`` the weights ``model`` samples with: its EMA network's if it keeps one, else its ``net``.

    ``model`` is a :class:`~scale_space_diffusion.models.base.DiffusionModule` loaded for sampling; returned.
    """
    ema = getattr(model, "net_ema", None)
    target = model.net if ema is None or model.sampling_net is model.net else model.sampling_net
    target.load_state_dict(state)
    return model


def write_checkpoint(source: str | Path, state: dict[str, Tensor], target: Profile, out: str | Path) -> Path:
    """A copy of the Lightning checkpoint ``source`` whose inference weights (``net_ema.module.*`` if present,
    else ``net.*``) are ``state``: every command that reads checkpoints (``ssd predict``, the benchmark) samples it.
    Read and written through :class:`~scale_space_diffusion.io.AtomicCheckpointIO` (verified, new checksums)."""
    from ..io.checkpoint_io import AtomicCheckpointIO
    from ..io.integrity import KEY

    io = AtomicCheckpointIO()
    ckpt = io.load_checkpoint(source, weights_only=True)
    ckpt.pop(KEY, None)  # the weights change: save_checkpoint hashes them anew
    weights = ckpt["state_dict"]
    prefix = "net_ema.module." if any(k.startswith("net_ema.module.") for k in weights) else "net."
    missing = [n for n in state if prefix + n not in weights]
    if missing:
        raise ValueError(f"{source} has no {prefix}{missing[0]}: the snapshots are of another network; "
                         "pass the checkpoint of the run that wrote them")  # fmt: skip
    for name, value in state.items():
        weights[prefix + name] = value.to(weights[prefix + name].dtype)
    ckpt["posthoc_ema"] = {"sigma_rel": target.sigma_rel, "step": target.step, "weights": prefix + "*"}
    io.save_checkpoint(ckpt, out)
    return Path(out)
