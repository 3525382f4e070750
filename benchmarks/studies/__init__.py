"""The paper studies: SSD vs DDPM FLOPs at paper sizes, how much of x_t is signal next to the ladder, and which
choice of Spectral Diffusion's distillation loss moves it."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import OUTPUTS

COMMANDS = ("scaling", "hierarchy", "distillation")
RESULTS = Path(__file__).parent / "results"  # the committed studies


def add_subcommands(sub) -> None:
    s = sub.add_parser("scaling", help="sampling/training GFLOPs of SSD vs DDPM, paper-sized networks, 64-256 px")
    s.add_argument("--out", type=Path, dest="sub_out", default=RESULTS / "scaling")
    s.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    h = sub.add_parser("hierarchy", help="fraction of signal-dominated pixels in x_t over t vs the ladder levels")
    h.add_argument("--out", type=Path, dest="sub_out", default=RESULTS / "hierarchy")
    d = sub.add_parser("distillation", help="SD's distillation loss, one documented choice per row (quick scale)")
    d.add_argument("--out", type=Path, dest="sub_out", default=OUTPUTS / "distillation", help="default "
                   "outputs/benchmark/distillation/ (continued when rerun); the committed study: studies/results/distillation")  # fmt: skip


def run(args: argparse.Namespace, argv: list[str]) -> None:
    if args.command == "scaling":
        from .scaling import run_scaling

        return run_scaling(args.sub_out, sizes=args.sizes)
    from scale_space_diffusion.data import ImageDataModule

    from .hierarchy import SIZE, run_hierarchy

    paths = {k: v for k, v in dict(idx_dir=args.idx_dir, cache_dir=args.data_cache_dir).items() if v is not None}
    if args.command == "distillation":
        from .distillation import run_distillation

        return print(f"Wrote {run_distillation(args.sub_out, args.cache_dir, paths)}")
    run_hierarchy(args.sub_out, ImageDataModule("fashion_mnist", image_size=SIZE, small_images="pad", **paths))
