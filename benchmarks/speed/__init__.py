"""The speed harness: CPU A/B throughput against a revision, a training step's profile, the GPU benchmark."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

COMMANDS = {"throughput": "CPU train/sample speed per resolution path, A/B against a git revision (--ref)",
            "profile": "a CPU training step's time by op category, fp32 vs bf16",
            "gpu": "DDPM, SSD-4L, SSD-2L at the CelebA-64 network on one GPU: img/s, syncs per step, sampling ms/step, "
                   "memory, share of bf16 peak (--dry-run: CPU)"}  # fmt: skip


def cell(x, spec: str = ".3g") -> str:
    """``x`` formatted by ``spec``, "-" for None."""
    return "-" if x is None else format(x, spec)


def table(header: list[str], rows: list[list]) -> list[str]:
    """A markdown table's lines."""
    lines = ["| " + " | ".join(map(str, row)) + " |" for row in [header, *rows]]
    return [lines[0], "|" + "---|" * len(header), *lines[1:]]


def save(folder: Path, stem: str, res: dict, text: str) -> None:
    """Write ``stem``.json and ``stem``.md (``text``) into ``folder``, and print the markdown."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.json").write_text(json.dumps(res, indent=1))
    (folder / f"{stem}.md").write_text(text)
    print(text)


def add_subcommands(sub) -> None:
    from . import gpu, step_profile, throughput

    for name, module in (("throughput", throughput), ("profile", step_profile), ("gpu", gpu)):
        p = sub.add_parser(name, help=COMMANDS[name])
        module.add_arguments(p)
        p.set_defaults(speed_run=module.run)


def run(args: argparse.Namespace, argv: list[str]) -> None:
    args.speed_run(args, argv)
