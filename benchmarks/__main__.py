"""python -m benchmarks [--preset quick|standard|full] [...] | demo | readme | compare | longer-teacher   the suite
                     | throughput [...] | profile [...] | gpu [...]                         the speed harness
                     | scaling | hierarchy | distillation                                   the paper studies"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings

from . import speed, studies, suite


def _quiet() -> None:
    os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)  # "GPU available", tips
    logging.getLogger("lightning.pytorch.trainer.connectors.checkpoint_connector").setLevel(logging.WARNING)
    for message in (".*treespec.*LeafSpec.*", ".*does not have many workers.*", ".*val_dataloader.*",
                    ".*smaller than image_size.*"):  # fmt: skip
        warnings.filterwarnings("ignore", message=message)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description="DDPM vs Scale Space Diffusion vs Spectral "
                                "Diffusion. Without a subcommand: train, sample and measure every model of a preset.")  # fmt: skip
    suite.add_arguments(p)
    sub = p.add_subparsers(dest="command", metavar="{demo,readme,compare,longer-teacher,throughput,profile,gpu,scaling,hierarchy,distillation}")
    suite.add_subcommands(sub)
    speed.add_subcommands(sub)
    studies.add_subcommands(sub)
    return p


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    _quiet()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    part = speed if args.command in speed.COMMANDS else studies if args.command in studies.COMMANDS else suite
    part.run(args, argv)


if __name__ == "__main__":
    sys.exit(main())
