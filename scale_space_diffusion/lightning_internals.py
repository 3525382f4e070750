"""Every private Lightning (and torch) detail this package relies on, in one place.

Each has a test in ``tests/test_lightning_internals.py`` that fails if an upgrade changes it.
"""

from __future__ import annotations

from torch import nn

# LightningCLI calls this method right after parsing to merge a checkpoint's hyperparameters into the config
# (checkpoint wins); the CLI replaces it with its own merge (command line wins, architecture must match).
CLI_CKPT_HPARAMS_HOOK = "_parse_ckpt_path"


def replace_checkpoint_merge(cli_class: type, merge) -> None:
    """Make ``cli_class`` (a LightningCLI subclass) call ``merge(self)`` where LightningCLI merges a checkpoint's
    hyperparameters into the parsed config: right after parsing, before the seed and the classes are made. Lightning
    has no public hook there (``before_instantiate_classes`` comes after its own merge has replaced the config)."""
    setattr(cli_class, CLI_CKPT_HPARAMS_HOOK, merge)


def attached_trainer(module):
    """The module's Trainer, or None (the public ``module.trainer`` raises when none is attached)."""
    return module._trainer


def batches_trained(trainer) -> int:
    """Training batches the fit loop has processed since fit began, over all epochs (restored on resume)."""
    return trainer.fit_loop.epoch_loop.batch_progress.total.processed


def next_drawing_epoch(trainer, per_epoch: int) -> int:
    """The Trainer epoch whose ``set_epoch`` comes before the next training batch is drawn, right after a restore.

    That is the current epoch, unless the restored epoch loop has already processed a whole epoch's batches: a
    checkpoint written in the epoch-end validation (epoch still in progress), or between epochs after it (a
    SIGTERM there: the epoch is counted done, but its batch counter is only reset when the next epoch starts). The
    restored epoch loop then runs that epoch empty, and the next batch is drawn in the one after. An epoch stopped
    by ``max_steps`` is counted done with fewer batches: its counter is already the next.
    """
    batches = trainer.fit_loop.epoch_loop.batch_progress.current
    return trainer.current_epoch + int(batches.processed >= per_epoch)


def epoch_batches(loader_batches: int, limit: int | float) -> int:
    """Batches per training epoch under ``Trainer(limit_train_batches=limit)``, as Lightning counts them."""
    return min(loader_batches, limit) if isinstance(limit, int) else int(loader_batches * limit)


def is_compiled(module: nn.Module) -> bool:
    """Whether ``module.compile()`` has run (torch keeps the compiled call in a private attribute)."""
    return module._compiled_call_impl is not None


def wrap_compiled_call(module: nn.Module, wrap) -> None:
    """Route the call that ``module.compile()`` installed (torch keeps it in a private attribute) through
    ``wrap(call) -> call``."""
    module._compiled_call_impl = wrap(module._compiled_call_impl)


def summary_depth(summary) -> int:
    """The ``max_depth`` a ``ModelSummary`` callback was made with."""
    return summary._max_depth


def summary_table(*args, **kwargs) -> str:
    """Lightning's model-summary table (the text ``ModelSummary`` logs)."""
    from lightning.pytorch.utilities.model_summary.model_summary import _format_summary_table

    return _format_summary_table(*args, **kwargs)
