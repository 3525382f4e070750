"""Rebuild a model from its Lightning checkpoint alone (which classes a file may name: :mod:`.classes`)."""

from __future__ import annotations

import dataclasses
import os
import typing
from typing import Any

from torch import nn

from ..models.base import DiffusionModule
from ..models.settings import coerce
from ..networks.contract import check_network
from .classes import resolve_class
from .checkpoints import read_checkpoint
from .legacy import upgrade_hparams


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


def build(model_cls: type[DiffusionModule], net_cls: type[nn.Module], net_config: dict[str, Any],
          hparams: dict[str, Any]) -> DiffusionModule:  # fmt: skip
    """A new model (untrained weights) from resolved classes, the network config and hyperparameters a checkpoint or
    a ``save_pretrained`` folder records; both loaders then load their weights into it.

    Args:
        model_cls: the model class (see :func:`resolve_class`).
        net_cls: the network class.
        net_config: the network's constructor arguments (``net.config``).
        hparams: the model's constructor arguments but ``net``, typed groups as dicts; unknown keys are ignored.
    """
    net = check_network(net_cls(**net_config))
    return model_cls(net, **constructor_args(model_cls, hparams))


def load_model(path: str | os.PathLike, expected: type[DiffusionModule] | None = None, what: str = "checkpoint", *,
               model_class: type[DiffusionModule] | None = None, net_class: type[nn.Module] | None = None,
               trust_remote_code: bool = False, verify: bool = True, training_files: bool = True,
               **overrides: Any) -> DiffusionModule:  # fmt: skip
    """The model saved at ``path``, with its raw and (if trained with it) EMA weights, in eval mode.

    Args:
        path: a .ckpt written by ``ssd fit`` or a Trainer with this package's model.
        expected: the model must be this class or a subclass (e.g. a distillation teacher must be a DDPM).
        what: names the file in errors (e.g. "teacher").
        model_class, net_class: the classes to rebuild, instead of those the file names (a class of your own).
        trust_remote_code: import the modules the file names even if they are not imported yet.
        verify: check the file's tensor checksums (files without them load unchecked).
        training_files: False sets the files only training reads (``training_files`` of the class) to None.
        overrides: constructor arguments that replace the saved ones.
    """
    path = str(path)
    want = f"the .ckpt of a trained {expected.__name__ if expected else 'model'} (e.g. <run>/checkpoints/last.ckpt)"
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist; pass {want}")
    ckpt = read_checkpoint(path, what, mmap=False, verify=verify)
    if "net_config" not in ckpt or "model_class_path" not in ckpt:
        raise ValueError(f"{path} is not a scale_space_diffusion checkpoint (no model or network config); pass {want}")
    cls = resolve_class(ckpt["model_class_path"], "model", path, model_class, trust_remote_code)
    if expected is not None and not issubclass(cls, expected):
        raise TypeError(f"{path} holds a {cls.__name__}, but a {expected.__name__} is needed here; pass {want}")
    net_cls = resolve_class(ckpt["net_class_path"], "network", path, net_class, trust_remote_code)
    skipped = {} if training_files else {k: None for k in cls.training_files}
    hparams = {**upgrade_hparams(ckpt.get("hyper_parameters", {})), **skipped, **overrides}
    model = build(cls, net_cls, ckpt["net_config"], hparams)
    model.load_checkpoint_state(ckpt)
    return model.eval()
