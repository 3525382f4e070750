"""Rebuild any model of this package from its Lightning checkpoint alone, including checkpoints written before
the shared settings became typed groups (flat ``lr``, ``sample_steps``, ... as saved up to c666f5b)."""

from __future__ import annotations

import dataclasses
import os
import typing
from importlib import import_module
from typing import Any

import torch

from .base import DiffusionModule
from .settings import coerce

# flat hyperparameter of old checkpoints -> (group, field)
_LEGACY = {
    "lr": ("optim", "lr"), "weight_decay": ("optim", "weight_decay"), "ema_decay": ("optim", "ema_decay"),
    "ema_start_step": ("optim", "ema_start_step"), "sample_steps": ("sampling", "steps"),
    "sample_seed": ("sampling", "seed"), "grid_every_n_epochs": ("sampling", "grid_every_n_epochs"),
    "grid_size": ("sampling", "grid_size"), "beta_schedule": ("schedule", "kind"),
    "timesteps": ("schedule", "timesteps"), "prediction": ("loss", "prediction"),
    "weighting": ("loss", "weighting"), "snr_gamma": ("loss", "snr_gamma"),
}  # fmt: skip
_DROPPED = {"loss_buckets"}  # old settings that are now fixed


def upgrade_hparams(hparams: dict[str, Any]) -> dict[str, Any]:
    """Checkpoint hyperparameters in today's form: old flat settings are moved into their groups."""
    out: dict[str, Any] = {}
    for key, value in hparams.items():
        if key in _DROPPED:
            continue
        if key in _LEGACY:
            group, name = _LEGACY[key]
            out.setdefault(group, {})[name] = value
        else:
            out[key] = value
    if "loss" in out and out.get("_class_path", "").endswith("ScaleSpaceDiffusion"):
        out["loss"].setdefault("prediction", "x0")
    return out


def constructor_args(cls: type, hparams: dict[str, Any]) -> dict[str, Any]:
    """The saved arguments of ``cls.__init__`` (but ``net``), with dicts turned back into their typed groups."""
    hints = typing.get_type_hints(cls.__init__)
    out = {}
    for key, value in hparams.items():
        if key not in hints or key in ("net", "return"):
            continue  # e.g. LightningCLI's _class_path and _instantiator
        hint = hints[key]
        out[key] = coerce(hint, value) if dataclasses.is_dataclass(hint) and isinstance(value, dict) else value
    return out


def import_class(path: str):
    """A class of this package named by its dotted path in a checkpoint; anything else is refused."""
    module, name = path.rsplit(".", 1)
    if not module.startswith("scale_space_diffusion."):
        raise ValueError(f"refusing to import {path!r} from a checkpoint: not a scale_space_diffusion class")
    return getattr(import_module(module), name)


def load_model(path: str, expected: type[DiffusionModule] | None = None, **overrides) -> DiffusionModule:
    """The model saved at ``path``, with its (EMA, if trained with EMA) weights, in eval mode.

    ``expected`` checks the model class (e.g. a distillation teacher must be a DDPM); ``overrides``
    replace saved constructor arguments.
    """
    want = f"the .ckpt of a trained {expected.__name__ if expected else 'model'} (e.g. <run>/checkpoints/last.ckpt)"
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist; pass {want}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or "net_config" not in ckpt or "model_class_path" not in ckpt:
        raise ValueError(f"{path} is not a scale_space_diffusion checkpoint (no model or network config); pass {want}")
    cls = import_class(ckpt["model_class_path"])
    if expected is not None and not issubclass(cls, expected):
        raise TypeError(f"{path} holds a {cls.__name__}, but a {expected.__name__} is needed here; pass {want}")
    net = import_class(ckpt["net_class_path"])(**ckpt["net_config"])
    model = cls(net, **constructor_args(cls, {**upgrade_hparams(ckpt.get("hyper_parameters", {})), **overrides}))
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()
