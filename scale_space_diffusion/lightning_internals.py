"""Every private Lightning (and torch) detail this package relies on, in one place.

Each has a test in ``tests/test_lightning_internals.py`` that fails if an upgrade changes it.
"""

from __future__ import annotations

from torch import nn

# LightningCLI calls this method right after parsing to merge a checkpoint's hyperparameters into the config
# (checkpoint wins); the CLI replaces it with its own merge (command line wins, architecture must match).
CLI_CKPT_HPARAMS_HOOK = "_parse_ckpt_path"


def attached_trainer(module):
    """The module's Trainer, or None (the public ``module.trainer`` raises when none is attached)."""
    return module._trainer


def batches_done(trainer) -> int:
    """Training batches the fit loop has finished in the current epoch."""
    return trainer.fit_loop.epoch_loop.batch_progress.current.processed


def is_compiled(module: nn.Module) -> bool:
    """Whether ``module.compile()`` has run (torch keeps the compiled call in a private attribute)."""
    return module._compiled_call_impl is not None
