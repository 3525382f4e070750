"""python -m benchmarks [--preset quick|full] [...] | scaling [...] | hierarchy [...]"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def _quiet() -> None:
    os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)  # "GPU available", tips
    logging.getLogger("lightning.pytorch.trainer.connectors.checkpoint_connector").setLevel(logging.WARNING)
    for message in (".*treespec.*LeafSpec.*", ".*does not have many workers.*", ".*val_dataloader.*"):
        warnings.filterwarnings("ignore", message=message)


def _ckpt(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    if not Path(path).is_file():
        raise argparse.ArgumentTypeError(f"checkpoint {path} does not exist")
    return name, path


def parser() -> argparse.ArgumentParser:
    from .presets import PRESETS
    from .runs import RUNS

    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0] + ". Without a "
                                "subcommand: train, sample and measure every model of a preset.")  # fmt: skip
    p.add_argument("--preset", default="quick", choices=list(PRESETS), metavar="{quick,full}",
                   help="quick: ~20 min on 2 CPU cores, low-sample; full: hours on CPU, fine on one GPU "
                   "(a hidden 'smoke' preset is the test suite's seconds-long end-to-end run)")  # fmt: skip
    p.add_argument("--out", type=Path, help="output directory (default benchmarks/results/<timestamp>)")
    p.add_argument("--ckpt", type=_ckpt, action="append", default=[], metavar="NAME=PATH",
                   help=f"use a trained checkpoint instead of training run NAME ({', '.join(RUNS)})")  # fmt: skip
    p.add_argument("--only", nargs="+", choices=RUNS, metavar="NAME", help="run only these (default: all)")
    p.add_argument("--extractor", default="classifier", choices=["classifier", "inception"],
                   help="FID features: the Fashion-MNIST classifier (offline) or InceptionV3")  # fmt: skip
    p.add_argument("--inception-weights", help="local weights-inception-2015-12-05-6726825d.pth")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--cache-dir", type=Path, default=Path(__file__).parent / "cache", help="classifier and FID reference cache")
    # hidden: data location, for the test suite's run on generated IDX files
    p.add_argument("--idx-dir", help=argparse.SUPPRESS)
    p.add_argument("--data-cache-dir", help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", metavar="{scaling,hierarchy}")
    s = sub.add_parser("scaling", help="sampling/training GFLOPs of SSD vs DDPM, paper-sized networks, 64-256 px")
    s.add_argument("--out", type=Path, dest="sub_out")
    s.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    h = sub.add_parser("hierarchy", help="fraction of signal-dominated pixels in x_t over t vs the ladder levels")
    h.add_argument("--out", type=Path, dest="sub_out")
    h.add_argument("--images", type=int, default=1000, help="real test images to average over")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    _quiet()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if args.command == "scaling":
        from .scaling import run_scaling

        run_scaling(args.sub_out or RESULTS / f"{stamp}-scaling", sizes=args.sizes)
    elif args.command == "hierarchy":
        from .hierarchy import run_hierarchy

        run_hierarchy(args.sub_out or RESULTS / f"{stamp}-hierarchy", num_images=args.images,
                      idx_dir=args.idx_dir, data_cache_dir=args.data_cache_dir)  # fmt: skip
    else:
        from .presets import PRESETS
        from .suite import run_preset

        preset = PRESETS[args.preset]
        out = args.out or RESULTS / f"{stamp}-{preset.name}"
        start = time.perf_counter()
        run_preset(preset, out, only=args.only, ckpts=dict(args.ckpt), extractor=args.extractor,
                   inception_weights=args.inception_weights, cache_dir=args.cache_dir, idx_dir=args.idx_dir,
                   data_cache_dir=args.data_cache_dir)  # fmt: skip
        print(f"Total wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
