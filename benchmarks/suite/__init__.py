"""The comparison suite: DDPM vs Scale Space Diffusion vs Spectral Diffusion, trained and scored alike."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from .. import OUTPUTS
from .presets import PRECISIONS, PRESETS, RUNS

RESULTS = Path(__file__).parent / "results"  # the committed runs (--out there to refresh one)


def _ckpt(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not Path(path).is_file():
        raise argparse.ArgumentTypeError(f"expected NAME=PATH of an existing checkpoint, got {text!r}")
    return name, path


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The preset run's options (``python -m benchmarks [options]``, no subcommand)."""
    p.add_argument("--preset", default="quick", choices=list(PRESETS), metavar="{quick,standard,full}",
                   help="quick: <= 25 min on 2 CPU cores; standard: every run, 5000 samples (87 min on a 2-core "
                   "Xeon); full: GPU-sized")
    p.add_argument("--out", type=Path, help="output folder (default outputs/benchmark/<preset>/; a run there continues; "
                   f"{RESULTS.relative_to(RESULTS.parents[2])}/<preset>/ holds the committed runs)")
    p.add_argument("--fresh", action="store_true", help="start over in --out instead of continuing")
    p.add_argument("--dataset", help="fashion_mnist (default), an image folder or a hub name (needs class labels)")
    p.add_argument("--image-size", type=int)
    p.add_argument("--channels", type=int, choices=[1, 3])
    p.add_argument("--precision", choices=PRECISIONS, help="bf16-mixed: train and sample under bf16 autocast")
    p.add_argument("--train-seed", type=int, help="a replicate: other weights, batch order and noise, the same judge")
    p.add_argument("--ckpt", type=_ckpt, action="append", default=[], metavar="NAME=PATH",
                   help=f"measure a trained checkpoint instead of training run NAME ({', '.join(RUNS)})")
    p.add_argument("--only", nargs="+", choices=RUNS, metavar="NAME", help="run only these (default: the preset's)")
    p.add_argument("--extractor", choices=["classifier", "inception"], help="FID features (default: classifier, "
                   "or inception when --inception-weights is given)")  # fmt: skip
    p.add_argument("--inception-weights", help="local weights-inception-2015-12-05-6726825d.pth")
    p.add_argument("--threads", type=int, help="torch intra-op threads")
    p.add_argument("--cache-dir", type=Path, default=Path(__file__).parents[1] / "cache", help="classifier, features")
    p.add_argument("--idx-dir", help=argparse.SUPPRESS)  # data location, for the tests' generated IDX files
    p.add_argument("--data-cache-dir", help=argparse.SUPPRESS)


def add_subcommands(sub) -> None:
    r = sub.add_parser("readme", help="rewrite the table of docs/benchmarks.md from a results.md")
    r.add_argument("--results", type=Path, default=RESULTS / "standard" / "results.md")
    r.add_argument("--readme", type=Path, default=Path(__file__).parents[2] / "docs" / "benchmarks.md")
    t = sub.add_parser("longer-teacher", help="a finished run's ddpm_x0 trained FACTOR x longer teaches sd_distilled "
                       "again; writes <results>/longer_teacher/")  # fmt: skip
    t.add_argument("--results", type=Path, default=RESULTS / "standard", help="a finished preset run's folder")
    t.add_argument("--factor", type=float, default=2.0, help="the teacher's steps over the student's")
    c = sub.add_parser("compare", help="two results.json side by side: FID intervals, speed ratios, training loss")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    c.add_argument("--out", type=Path, dest="sub_out", help="for compare.md and compare_loss.png (default: B's folder)")


def run(args: argparse.Namespace, argv: list[str]) -> None:
    from . import longer_teacher, report, suite

    data = {k: v for k, v in dict(idx_dir=args.idx_dir, cache_dir=args.data_cache_dir).items() if v is not None}
    if args.command == "readme":
        return print(report.update_readme(args.results, args.readme))
    if args.command == "compare":
        return print(report.compare(args.a, args.b, args.sub_out or args.b.parent).read_text())
    if args.command == "longer-teacher":
        return print(f"Wrote {longer_teacher.run_longer_teacher(args.results, args.factor, args.cache_dir, data)}")
    overrides = dict(dataset=args.dataset, image_size=args.image_size, channels=args.channels,
                     precision=args.precision, train_seed=args.train_seed)  # fmt: skip
    preset = replace(PRESETS[args.preset], **{k: v for k, v in overrides.items() if v is not None})
    suite.run_preset(preset, args.out or OUTPUTS / preset.name, args.only, dict(args.ckpt),
                     args.extractor or ("inception" if args.inception_weights else "classifier"),
                     args.inception_weights, args.cache_dir, data, args.fresh,
                     " ".join(["python -m benchmarks", *argv]))  # fmt: skip
