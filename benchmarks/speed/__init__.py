"""The speed harness: CPU A/B throughput against a revision, a training step's profile, the GPU benchmark."""

from __future__ import annotations

import argparse

COMMANDS = ("throughput", "profile", "gpu")


def add_subcommands(sub) -> None:
    from . import gpu, step_profile, throughput

    throughput.add_arguments(sub.add_parser("throughput", help="CPU train/sample speed per resolution path, A/B "
                                            "against a git revision (--ref)"))  # fmt: skip
    step_profile.add_arguments(sub.add_parser("profile", help="a CPU training step's time by op category, fp32 vs bf16"))
    gpu.add_arguments(sub.add_parser("gpu", help="DDPM, SSD-4L, SSD-2L at the CelebA-64 network on one GPU: img/s, "
                                     "syncs per step, sampling ms/step, memory, share of bf16 peak (--dry-run: CPU)"))  # fmt: skip


def run(args: argparse.Namespace, argv: list[str]) -> None:
    from . import gpu, step_profile, throughput

    if args.command == "throughput":
        throughput.run(args, argv)
    elif args.command == "profile":
        step_profile.run(args)
    else:
        gpu.run(args, argv)
