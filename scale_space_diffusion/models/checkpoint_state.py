"""What a :class:`~.base.DiffusionModule` writes into and reads from a Lightning checkpoint.

Beside Lightning's own keys: the model and network class paths and ``net.config`` (so the network is rebuilt from
the file alone), the training seed and the RNG state (an exact resume). Loading refuses a checkpoint of another model
or network and upgrades older layouts (``legacy.py``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch

from ..lightning_internals import attached_trainer
from .checkpoints import refuse_other_network
from .legacy import upgrade_state
from .settings import plain

if TYPE_CHECKING:
    from .base import DiffusionModule


class CheckpointStateMixin:
    """Checkpoint hooks and the training seed for :class:`~.base.DiffusionModule` (``self._train_seed`` is set in
    its ``__init__``)."""

    @property
    def train_seed(self) -> int:
        """Seeds the training draws of t and noise: ``seed_everything``'s seed, or the one the checkpoint used."""
        if self._train_seed is None:
            self._train_seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        return self._train_seed

    def load_checkpoint_state(self: DiffusionModule, checkpoint: dict) -> None:
        """Load a checkpoint's weights (raw and EMA) outside a Trainer, as Lightning would: hook, then state dict."""
        self.on_load_checkpoint(checkpoint)
        self.load_state_dict(checkpoint["state_dict"])

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, map_location=None, hparams_file=None, strict=None, **kwargs):
        """Lightning's standard call, answered by :func:`~.loading.load_model`: the network is rebuilt from the
        checkpoint, a Spectral Diffusion student needs no teacher file, and old checkpoints are upgraded.
        ``kwargs`` override saved constructor arguments; the model is returned in eval mode on ``map_location``."""
        from .loading import load_model

        model = load_model(str(checkpoint_path), expected=cls, **kwargs)
        return model.to(map_location) if map_location is not None else model

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
        checkpoint["state_dict"] = upgrade_state(checkpoint, self)
        refuse_other_network(checkpoint, self)
        self._train_seed = checkpoint.get("train_seed", self._train_seed)
        trainer = attached_trainer(self)
        resuming = trainer is not None and trainer.state.fn == "fit"
        rng = checkpoint.get("rng_states", {}) if resuming else {}  # loading weights leaves the global RNG alone
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(rng["cuda"])
