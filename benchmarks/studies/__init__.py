"""The paper studies: SSD vs DDPM FLOPs at paper sizes, signal in x_t vs the ladder, exact noise vs Lanczos."""

from __future__ import annotations

import argparse
from pathlib import Path

COMMANDS = ("scaling", "hierarchy", "lanczos")
RESULTS = Path(__file__).parent / "results"


def add_subcommands(sub) -> None:
    s = sub.add_parser("scaling", help="sampling/training GFLOPs of SSD vs DDPM, paper-sized networks, 64-256 px")
    s.add_argument("--out", type=Path, dest="sub_out", default=RESULTS / "scaling")
    s.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    h = sub.add_parser("hierarchy", help="fraction of signal-dominated pixels in x_t over t vs the ladder levels")
    h.add_argument("--out", type=Path, dest="sub_out", default=RESULTS / "hierarchy")
    sub.add_parser("lanczos", help="time the exact transition noise against a Lanczos approximation")


def run(args: argparse.Namespace, argv: list[str]) -> None:
    if args.command == "scaling":
        from .scaling import run_scaling

        run_scaling(args.sub_out, sizes=args.sizes)
    elif args.command == "hierarchy":
        from .hierarchy import run_hierarchy

        run_hierarchy(args.sub_out, idx_dir=args.idx_dir, data_cache_dir=args.data_cache_dir)
    else:
        from .lanczos import run_lanczos

        run_lanczos()
