"""Rebuild any model of this package from its Lightning checkpoint alone."""

from __future__ import annotations

import inspect
import os
from importlib import import_module

import torch

from .base import DiffusionModule


def _import(path: str):
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
    cls = _import(ckpt["model_class_path"])
    if expected is not None and not issubclass(cls, expected):
        raise TypeError(f"{path} holds a {cls.__name__}, but a {expected.__name__} is needed here; pass {want}")
    net = _import(ckpt["net_class_path"])(**ckpt["net_config"])
    params = inspect.signature(cls.__init__).parameters
    hparams = {k: v for k, v in ckpt.get("hyper_parameters", {}).items() if k in params and k not in ("self", "net")}
    model = cls(net, **{**hparams, **overrides})
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()
