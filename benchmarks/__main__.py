"""python -m benchmarks [--preset quick|standard|full] [...] | readme | compare | longer-teacher          the suite
                     | throughput [...] | profile [...] | gpu [...]                         the speed harness
                     | scaling | hierarchy | distillation                                   the paper studies"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from contextlib import contextmanager

from . import speed, studies, suite

QUIET = ("lightning.pytorch.utilities.rank_zero",  # "GPU available", tips
         "lightning.pytorch.trainer.connectors.checkpoint_connector")
HARMLESS = (".*treespec.*LeafSpec.*", ".*does not have many workers.*", ".*val_dataloader.*", ".*smaller than image_size.*")


@contextmanager
def quiet():
    """Lightning's tips and the known harmless warnings silenced for one command, and restored after it."""
    loggers = [logging.getLogger(name) for name in QUIET]
    levels = [log.level for log in loggers]
    try:
        with warnings.catch_warnings():
            for message in HARMLESS:
                warnings.filterwarnings("ignore", message=message)
            for log in loggers:
                log.setLevel(logging.WARNING)
            yield
    finally:
        for log, level in zip(loggers, levels):
            log.setLevel(level)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description="DDPM vs Scale Space Diffusion vs Spectral "
                                "Diffusion. Without a subcommand: train, sample and measure every model of a preset.")  # fmt: skip
    suite.add_arguments(p)
    sub = p.add_subparsers(dest="command", metavar="{readme,compare,longer-teacher,throughput,profile,gpu,scaling,hierarchy,distillation}")
    suite.add_subcommands(sub)
    speed.add_subcommands(sub)
    studies.add_subcommands(sub)
    return p


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    part = speed if args.command in speed.COMMANDS else studies if args.command in studies.COMMANDS else suite
    with quiet():
        part.run(args, argv)


if __name__ == "__main__":
    sys.exit(main())
