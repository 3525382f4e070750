"""The speed harness: CPU A/B throughput against a revision, a training step's profile, the GPU benchmark."""

from __future__ import annotations

import argparse

COMMANDS = {"throughput": "CPU train/sample speed per resolution path, A/B against a git revision (--ref)",
            "profile": "a CPU training step's time by op category, fp32 vs bf16",
            "gpu": "DDPM, SSD-4L, SSD-2L at the CelebA-64 network on one GPU: img/s, syncs per step, sampling ms/step, "
                   "memory, share of bf16 peak (--dry-run: CPU)"}  # fmt: skip


def _modules() -> dict:
    from . import gpu, step_profile, throughput

    return {"throughput": throughput, "profile": step_profile, "gpu": gpu}


def add_subcommands(sub) -> None:
    for name, module in _modules().items():
        module.add_arguments(sub.add_parser(name, help=COMMANDS[name]))


def run(args: argparse.Namespace, argv: list[str]) -> None:
    _modules()[args.command].run(args, argv)
