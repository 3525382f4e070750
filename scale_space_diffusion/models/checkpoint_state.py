"""What a :class:`~.base.DiffusionModule` writes into and reads from a Lightning checkpoint, and its thin entry points
to :mod:`scale_space_diffusion.io` (imported inside them: ``io`` imports ``models``, never the reverse).

Beside Lightning's own keys: the model and network class paths and ``net.config`` (so the network is rebuilt from
the file alone), the training seed and the RNG state (an exact resume). Loading refuses a checkpoint of another model
or network. A model class declares which constructor arguments a run may change when it resumes or loads a checkpoint
(:attr:`~CheckpointStateMixin.run_settings`) and which name files only training reads
(:attr:`~CheckpointStateMixin.training_files`); the command line and exports read them from the class.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from ..lightning_internals import attached_trainer
from .settings import plain

if TYPE_CHECKING:
    from pathlib import Path

    from .base import DiffusionModule

log = logging.getLogger("scale_space_diffusion")


class CheckpointStateMixin:
    """Checkpoint hooks, the training seed and the persistence entry points for :class:`~.base.DiffusionModule`
    (``self._train_seed`` is set in its ``__init__``)."""

    #: constructor arguments the config or command line may change for a model that comes from a checkpoint; the
    #: others define the model and come from the checkpoint. A subclass adds its own (``SpectralDiffusion``: teacher).
    run_settings: ClassVar[tuple[str, ...]] = ("optim", "sampling", "torch_compile")
    #: constructor arguments that name files only training reads; an export records them as null.
    training_files: ClassVar[tuple[str, ...]] = ()

    @property
    def train_seed(self) -> int:
        """Seeds the training draws of t and noise: ``optim.seed``, or the one the checkpoint used."""
        if self._train_seed is None:
            self._train_seed = self.optim.seed
        return self._train_seed

    # -- entry points (io/) -----------------------------------------------------------------------------------------
    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, map_location=None, hparams_file=None, strict=None, **kwargs):
        """Lightning's standard call, answered by :func:`scale_space_diffusion.io.load_model` (``expected=cls``)."""
        from ..io.loading import load_model

        model = load_model(str(checkpoint_path), expected=cls, **kwargs)
        return model.to(map_location) if map_location is not None else model

    @classmethod
    def from_pretrained(cls, folder_or_hub_id: str | os.PathLike, revision: str | None = None,
                        map_location: str | torch.device | None = None, *, net_class: type[nn.Module] | None = None,
                        trust_remote_code: bool = False, verify: bool = True, **overrides: Any) -> DiffusionModule:  # fmt: skip
        """The model a ``save_pretrained`` folder or Hub repo holds, refused unless it is a ``cls``:
        :func:`scale_space_diffusion.io.from_pretrained` (its arguments; ``overrides`` replace saved settings)."""
        from ..io.pretrained import from_pretrained

        return from_pretrained(folder_or_hub_id, cls, revision, map_location, net_class=net_class,
                               trust_remote_code=trust_remote_code, verify=verify, **overrides)  # fmt: skip

    def save_pretrained(self: DiffusionModule, folder: str | os.PathLike, weights: str = "ema", push_to_hub: bool = False,
                        repo_id: str | None = None) -> Path:  # fmt: skip
        """Write this model as a folder of plain files: :func:`scale_space_diffusion.io.save_pretrained`."""
        from ..io.pretrained import save_pretrained

        return save_pretrained(self, folder, weights, push_to_hub, repo_id)

    # -- Lightning hooks ---------------------------------------------------------------------------------------------
    def load_checkpoint_state(self: DiffusionModule, checkpoint: dict) -> None:
        """Load a checkpoint's weights (raw and EMA) outside a Trainer, as Lightning would: hook, then state dict."""
        self.on_load_checkpoint(checkpoint)
        self.load_state_dict(checkpoint["state_dict"])

    def on_save_checkpoint(self: DiffusionModule, checkpoint: dict) -> None:
        checkpoint["hyper_parameters"] = plain(dict(checkpoint.get("hyper_parameters", {})))  # weights_only-safe
        checkpoint["train_seed"] = self.train_seed
        checkpoint["rng_states"] = {"torch": torch.get_rng_state()}  # dropout: ranks share it under seed_everything
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            checkpoint["rng_states"]["cuda"] = torch.cuda.get_rng_state_all()
        checkpoint["model_class"] = type(self).__name__
        checkpoint["model_class_path"] = f"{type(self).__module__}.{type(self).__name__}"
        checkpoint["net_class_path"] = f"{type(self.net).__module__}.{type(self.net).__name__}"
        checkpoint["net_config"] = self.net.config

    def on_load_checkpoint(self: DiffusionModule, checkpoint: dict) -> None:
        saved = checkpoint.get("model_class")
        if saved is not None and saved != type(self).__name__:
            raise ValueError(
                f"this checkpoint was saved by {saved}, not {type(self).__name__}; "
                f"pass the matching model (e.g. --model={saved} or the config it was trained with)"
            )
        if "current_model_state" in checkpoint:
            raise ValueError("this checkpoint has the layout of c666f5b or earlier (Lightning's EMA callback); load it "
                             "with load_model, or give the Trainer plugins=[AtomicCheckpointIO()], which upgrades it")  # fmt: skip
        checkpoint["state_dict"] = ema_layout(checkpoint["state_dict"], self.net_ema is not None)
        refuse_other_network(checkpoint, self)
        self._train_seed = checkpoint.get("train_seed", self._train_seed)
        trainer = attached_trainer(self)
        resuming = trainer is not None and trainer.state.fn == "fit"
        rng = checkpoint.get("rng_states", {}) if resuming else {}  # loading weights leaves the global RNG alone
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(rng["cuda"])

    def on_train_start(self: DiffusionModule) -> None:
        """A resumed run trains with this run's ``optim.lr`` and ``weight_decay``: Lightning restores the optimizer
        after the model, with the checkpoint's values, so they are applied to every param group here."""
        changed = []
        for optimizer in self.trainer.optimizers:
            for group in optimizer.param_groups:
                for name in ("lr", "weight_decay"):
                    new = getattr(self.optim, name)
                    if name in group and group[name] != new:
                        changed.append(f"{name} {group[name]:g} -> {new:g}")
                        group[name] = new
        if changed:
            log.warning(f"optimizer restored from the checkpoint, set to this run's optim: {', '.join(dict.fromkeys(changed))}")


def ema_layout(state: dict[str, torch.Tensor], has_ema: bool) -> dict[str, torch.Tensor]:
    """A state dict (raw ``net.*``, maybe ``net_ema.*``) in the layout of a model with or without an EMA: without,
    the EMA is dropped; with one but none in the file, the EMA starts from these weights at its next update."""
    if not has_ema:
        return {k: v for k, v in state.items() if not k.startswith("net_ema.")}
    if any(k.startswith("net_ema.") for k in state):
        return state
    out = dict(state)
    out.update({"net_ema.module." + k[len("net."):]: v for k, v in state.items() if k.startswith("net.")})
    out["net_ema.n_averaged"] = torch.tensor(0, dtype=torch.long)
    return out


def refuse_other_network(checkpoint: dict[str, Any], model) -> None:
    """A checkpoint of another network is refused naming the first differing tensor and the option to change."""
    mine = model.state_dict()
    for key, value in checkpoint["state_dict"].items():
        if key in mine and mine[key].shape != value.shape:
            saved = checkpoint.get("net_config") or {}
            diff = [k for k, v in saved.items() if model.net.config.get(k, v) != v]
            fix = (f"set --model.init_args.net.init_args.{diff[0]}={saved[diff[0]]} (the checkpoint's; this model "
                   f"has {model.net.config[diff[0]]})" if diff else "use the config it was trained with")
            raise ValueError(f"the checkpoint's {key} is {tuple(value.shape)} but this model's is "
                             f"{tuple(mine[key].shape)}: it holds another network; {fix}")  # fmt: skip
