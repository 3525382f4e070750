"""Rebuild any model of this package from its Lightning checkpoint alone (old layouts: :mod:`.legacy`)."""

from __future__ import annotations

import dataclasses
import os
import typing
from importlib import import_module
from typing import Any

from .base import DiffusionModule
from .checkpoints import read_checkpoint
from .legacy import upgrade_hparams
from .settings import coerce

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


def load_model(path: str, expected: type[DiffusionModule] | None = None, what: str = "checkpoint",
               **overrides) -> DiffusionModule:  # fmt: skip
    """The model saved at ``path``, with its raw and (if trained with it) EMA weights, in eval mode.

    ``expected`` checks the model class (e.g. a distillation teacher must be a DDPM); ``what`` names the file in
    errors (e.g. "teacher"); ``overrides`` replace saved constructor arguments.
    """
    want = f"the .ckpt of a trained {expected.__name__ if expected else 'model'} (e.g. <run>/checkpoints/last.ckpt)"
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist; pass {want}")
    ckpt = read_checkpoint(path, what, mmap=False)
    if not isinstance(ckpt, dict) or "net_config" not in ckpt or "model_class_path" not in ckpt:
        raise ValueError(f"{path} is not a scale_space_diffusion checkpoint (no model or network config); pass {want}")
    cls = import_class(ckpt["model_class_path"])
    if expected is not None and not issubclass(cls, expected):
        raise TypeError(f"{path} holds a {cls.__name__}, but a {expected.__name__} is needed here; pass {want}")
    hparams = {**upgrade_hparams(ckpt.get("hyper_parameters", {})), **overrides}
    model = build(ckpt["model_class_path"], ckpt["net_class_path"], ckpt["net_config"], hparams)
    model.load_checkpoint_state(ckpt)
    return model.eval()


def build(model_class_path: str, net_class_path: str, net_config: dict[str, Any],
          hparams: dict[str, Any]) -> DiffusionModule:  # fmt: skip
    """A new model (untrained weights) from the class paths, network config and hyperparameters a checkpoint or a
    ``save_pretrained`` folder records; both loaders then load their weights into it.

    Args:
        model_class_path: dotted path of the model class, e.g. ``scale_space_diffusion.models.ddpm.DDPM``.
        net_class_path: dotted path of the network class.
        net_config: the network's constructor arguments (``net.config``).
        hparams: the model's constructor arguments but ``net``, typed groups as dicts; unknown keys are ignored.
    """
    cls = import_class(model_class_path)
    net = import_class(net_class_path)(**net_config)
    return cls(net, **constructor_args(cls, hparams))
