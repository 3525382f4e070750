"""The speed harness: CPU A/B throughput against a revision, a training step's profile, the GPU benchmark."""

from __future__ import annotations

import argparse

COMMANDS = {"throughput": "CPU train/sample speed per resolution path, A/B against a git revision (--ref)",
            "profile": "a CPU training step's time by op category, fp32 vs bf16",
            "gpu": "DDPM, SSD-4L, SSD-2L at the CelebA-64 network on one GPU: img/s, syncs per step, sampling ms/step, "
                   "memory, share of bf16 peak (--dry-run: CPU)"}  # fmt: skip


def add_subcommands(sub) -> None:
    from . import gpu, step_profile, throughput

    for name, module in (("throughput", throughput), ("profile", step_profile), ("gpu", gpu)):
        p = sub.add_parser(name, help=COMMANDS[name])
        module.add_arguments(p)
        p.set_defaults(speed_run=module.run)


def run(args: argparse.Namespace, argv: list[str]) -> None:
    args.speed_run(args, argv)
