"""The comparison suite: DDPM vs Scale Space Diffusion vs Spectral Diffusion, trained and scored alike.

``presets`` (what a preset trains and scores), ``runs`` (build, train, sample one model), ``quality`` (FID/KID
judge), ``scoring`` (main set, checkpoints, Pareto points), ``suite`` (the preset run), ``report`` and ``plots``
(results.md, README table, PNGs), ``compare`` (two results side by side), ``demo`` (scores `make demo`'s samples).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .presets import PRECISIONS, PRESETS, RUNS

RESULTS = Path(__file__).parent / "results"


def _ckpt(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    if not Path(path).is_file():
        raise argparse.ArgumentTypeError(f"checkpoint {path} does not exist")
    return name, path


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The preset run's options (``python -m benchmarks [options]``, no subcommand)."""
    p.add_argument("--preset", default="quick", choices=list(PRESETS), metavar="{quick,standard,full}",
                   help="quick: <= 25 min on 2 CPU cores, low-sample; standard: every run, 5000 samples, "
                   "104 min on 2 CPU cores (measured); full: GPU-sized (a hidden 'smoke' preset is the tests' seconds-long run)")  # fmt: skip
    p.add_argument("--out", type=Path, help=f"output directory (default {RESULTS}/<preset>/); a run there "
                   "continues: runs finished before are skipped")  # fmt: skip
    p.add_argument("--fresh", action="store_true", help="start over in --out instead of continuing")
    p.add_argument("--dataset", help="what ImageDataModule takes: fashion_mnist (offline default), an image folder, a hub name")
    p.add_argument("--image-size", type=int, help="image size in pixels (default: the preset's, 32)")
    p.add_argument("--channels", type=int, choices=[1, 3], help="1 (greyscale, default) or 3 (RGB)")
    p.add_argument("--precision", choices=PRECISIONS, help="train and sample in fp32 (default) or "
                   "under bf16 autocast (Lightning's bf16-mixed); FID features stay fp32")  # fmt: skip
    p.add_argument("--train-seed", type=int, help="seed of the runs' weights, batch order and sampling noise "
                   "(default: the preset's seed); the data split and the FID judge keep the preset's, so two train "
                   "seeds are replicates scored alike")  # fmt: skip
    p.add_argument("--ckpt", type=_ckpt, action="append", default=[], metavar="NAME=PATH",
                   help=f"use a trained checkpoint instead of training run NAME ({', '.join(RUNS)})")
    p.add_argument("--only", nargs="+", choices=RUNS, metavar="NAME", help="run only these (default: the preset's "
                   "runs; the SD ablation alone: --only ddpm sd_nogate sd_plain sd_nogate_distilled sd_distilled)")  # fmt: skip
    p.add_argument("--extractor", choices=["classifier", "inception"], help="FID features: a classifier trained on "
                   "the dataset's labels (offline; default) or InceptionV3 (default when --inception-weights is given)")  # fmt: skip
    p.add_argument("--inception-weights", help="local weights-inception-2015-12-05-6726825d.pth")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--cache-dir", type=Path, default=Path(__file__).parents[1] / "cache", help="classifier and reference features")
    p.add_argument("--idx-dir", help=argparse.SUPPRESS)  # data location, for the tests' generated IDX files
    p.add_argument("--data-cache-dir", help=argparse.SUPPRESS)


def add_subcommands(sub) -> None:
    d = sub.add_parser("demo", help="score the 64 samples of `make demo`: share the classifier is >= 0.9 sure of, FID")
    src = d.add_mutually_exclusive_group()
    src.add_argument("--ckpt", dest="demo_ckpt", help="sample 64 images from this checkpoint (its sampling settings)")
    src.add_argument("--samples", help="a folder of PNG samples (default: the newest outputs/ssd_fmnist32/samples/run_*)")
    d.add_argument("--json", type=Path, help="also write the numbers to this file")
    r = sub.add_parser("readme", help="rewrite the benchmark table of docs/benchmarks.md from a results.md")
    r.add_argument("--results", type=Path, default=RESULTS / "standard" / "results.md")
    r.add_argument("--readme", type=Path, default=Path(__file__).parents[2] / "docs" / "benchmarks.md",
                   help="the page holding the <!-- benchmark-table --> markers (default docs/benchmarks.md)")
    c = sub.add_parser("compare", help="two results.json side by side (e.g. fp32 and bf16-mixed): FID intervals, "
                       "speed ratios, training loss")  # fmt: skip
    c.add_argument("a", type=Path, help="results.json A (the reference)")
    c.add_argument("b", type=Path, help="results.json B")
    c.add_argument("--out", type=Path, dest="sub_out", help="where compare.md and compare_loss.png go (default: B's folder)")


def run(args: argparse.Namespace, argv: list[str]) -> None:
    """The preset run, or one of the suite's subcommands."""
    import os
    import time
    from dataclasses import replace

    if args.command == "readme":
        from .report import update_readme

        return print(update_readme(args.results, args.readme))
    if args.command == "compare":
        from .compare import compare

        return print(compare(args.a, args.b, args.sub_out or args.b.parent).read_text())
    data = dict(idx_dir=args.idx_dir, data_cache_dir=args.data_cache_dir)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(args.demo_ckpt, args.samples, args.cache_dir, args.json, **data)
    from .suite import run_preset

    overrides = dict(dataset=args.dataset, image_size=args.image_size, channels=args.channels,
                     precision=args.precision, train_seed=args.train_seed)  # fmt: skip
    preset = replace(PRESETS[args.preset], **{k: v for k, v in overrides.items() if v is not None})
    start = time.perf_counter()
    run_preset(preset, args.out or RESULTS / preset.name, only=args.only, ckpts=dict(args.ckpt),
               extractor=args.extractor or ("inception" if args.inception_weights else "classifier"),
               inception_weights=args.inception_weights, cache_dir=args.cache_dir, fresh=args.fresh,
               command=" ".join(["python -m benchmarks", *argv]), **data)  # fmt: skip
    print(f"Total wall time {time.perf_counter() - start:.0f} s (load average now {os.getloadavg()[0]:.2f})")
