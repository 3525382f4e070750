"""Reading checkpoints written by earlier versions of this package.

Up to c666f5b the shared settings were flat hyperparameters (``lr``, ``sample_steps``, ...) and EMA was Lightning's
``EMAWeightAveraging`` callback, which saves the EMA as ``state_dict`` and the raw weights as ``current_model_state``.
Today the settings are typed groups and the module owns its EMA (``net_ema.*`` beside ``net.*``).
"""

from __future__ import annotations

from typing import Any

import torch

# flat hyperparameter of old checkpoints -> (group, field)
_FLAT = {
    "lr": ("optim", "lr"), "weight_decay": ("optim", "weight_decay"), "ema_decay": ("optim", "ema_decay"),
    "ema_start_step": ("optim", "ema_start_step"), "sample_steps": ("sampling", "steps"),
    "sample_seed": ("sampling", "seed"), "grid_every_n_epochs": ("sampling", "grid_every_n_epochs"),
    "grid_size": ("sampling", "grid_size"), "beta_schedule": ("schedule", "kind"),
    "timesteps": ("schedule", "timesteps"), "prediction": ("loss", "prediction"),
    "weighting": ("loss", "weighting"), "snr_gamma": ("loss", "snr_gamma"),
}  # fmt: skip
_DROPPED = {"loss_buckets"}  # old settings that are now fixed
# and the flat spellings of settings that were born in their groups, for the command line's hint
_SPELLED_FLAT = {"sampler": ("sampling", "sampler"), "eta": ("sampling", "eta"),
                 "guidance_scale": ("sampling", "guidance_scale"), "cond_drop_prob": ("optim", "cond_drop_prob")}  # fmt: skip


def current_name(flat: str) -> str | None:
    """Today's ``group.field`` of a flat model setting (``sample_steps`` -> ``sampling.steps``), or None."""
    group = _FLAT.get(flat) or _SPELLED_FLAT.get(flat)
    return ".".join(group) if group else None


def upgrade_hparams(hparams: dict[str, Any]) -> dict[str, Any]:
    """Checkpoint hyperparameters in today's form: old flat settings are moved into their groups."""
    out: dict[str, Any] = {}
    for key, value in hparams.items():
        if key in _DROPPED:
            continue
        if key in _FLAT:
            group, name = _FLAT[key]
            out.setdefault(group, {})[name] = value
        else:
            out[key] = value
    if "loss" in out and str(out.get("_class_path", "")).endswith("ScaleSpaceDiffusion"):
        out["loss"].setdefault("prediction", "x0")
    return out


def upgrade_checkpoint(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """``checkpoint`` with today's weight layout: Lightning's EMA callback (up to c666f5b) kept the EMA as
    ``state_dict`` and the raw weights as ``current_model_state``; today both sit in ``state_dict`` (``net.*`` and
    ``net_ema.module.*``, with ``net_ema.n_averaged``). Other checkpoints are returned as they are."""
    if "current_model_state" not in checkpoint:
        return checkpoint
    raw, ema = checkpoint["current_model_state"], checkpoint["state_dict"]
    n = checkpoint.get("averaging_state", {}).get("n_averaged", torch.tensor(1))
    state = dict(raw)
    state.update({"net_ema.module." + k[len("net."):]: v for k, v in ema.items() if k.startswith("net.")})
    state["net_ema.n_averaged"] = torch.as_tensor(n, dtype=torch.long).reshape(())
    upgraded = {k: v for k, v in checkpoint.items() if k not in ("current_model_state", "averaging_state")}
    return {**upgraded, "state_dict": state}
