"""python -m benchmarks [--preset quick|standard|full] [...] | demo | readme | compare | scaling | hierarchy | throughput [...]"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def _quiet() -> None:
    os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)  # "GPU available", tips
    logging.getLogger("lightning.pytorch.trainer.connectors.checkpoint_connector").setLevel(logging.WARNING)
    for message in (".*treespec.*LeafSpec.*", ".*does not have many workers.*", ".*val_dataloader.*",
                    ".*smaller than image_size.*"):  # fmt: skip
        warnings.filterwarnings("ignore", message=message)


def _ckpt(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    if not Path(path).is_file():
        raise argparse.ArgumentTypeError(f"checkpoint {path} does not exist")
    return name, path


def parser() -> argparse.ArgumentParser:
    from .presets import PRECISIONS, PRESETS
    from .runs import RUNS

    p = argparse.ArgumentParser(prog="python -m benchmarks", description="DDPM vs Scale Space Diffusion vs Spectral "
                                "Diffusion. Without a subcommand: train, sample and measure every model of a preset.")  # fmt: skip
    p.add_argument("--preset", default="quick", choices=list(PRESETS), metavar="{quick,standard,full}",
                   help="quick: <= 25 min on 2 CPU cores, low-sample; standard: every run, 5000 samples, "
                   "104 min on 2 CPU cores (measured); full: GPU-sized (a hidden 'smoke' preset is the tests' seconds-long run)")  # fmt: skip
    p.add_argument("--out", type=Path, help="output directory (default benchmarks/results/<preset>/); a run there "
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
                   help=f"use a trained checkpoint instead of training run NAME ({', '.join(RUNS)})")  # fmt: skip
    p.add_argument("--only", nargs="+", choices=RUNS, metavar="NAME", help="run only these (default: all)")
    p.add_argument("--extractor", choices=["classifier", "inception"], help="FID features: a classifier trained on "
                   "the dataset's labels (offline; default) or InceptionV3 (default when --inception-weights is given)")  # fmt: skip
    p.add_argument("--inception-weights", help="local weights-inception-2015-12-05-6726825d.pth")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--cache-dir", type=Path, default=Path(__file__).parent / "cache", help="classifier and reference features")
    # hidden: data location, for the test suite's run on generated IDX files
    p.add_argument("--idx-dir", help=argparse.SUPPRESS)
    p.add_argument("--data-cache-dir", help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", metavar="{demo,readme,compare,scaling,hierarchy,throughput}")
    d = sub.add_parser("demo", help="score the 64 samples of `make demo`: share the classifier is >= 0.9 sure of, FID")
    src = d.add_mutually_exclusive_group()
    src.add_argument("--ckpt", dest="demo_ckpt", help="sample 64 images from this checkpoint (its sampling settings)")
    src.add_argument("--samples", help="a folder of PNG samples (default: the newest outputs/ssd_fmnist32/samples/run_*)")
    d.add_argument("--json", type=Path, help="also write the numbers to this file")
    r = sub.add_parser("readme", help="rewrite README.md's benchmark table from a results.md")
    r.add_argument("--results", type=Path, default=RESULTS / "standard" / "results.md")
    r.add_argument("--readme", type=Path, default=Path(__file__).parents[1] / "README.md")
    c = sub.add_parser("compare", help="two results.json side by side (e.g. fp32 and bf16-mixed): FID intervals, "
                       "speed ratios, training loss")  # fmt: skip
    c.add_argument("a", type=Path, help="results.json A (the reference)")
    c.add_argument("b", type=Path, help="results.json B")
    c.add_argument("--out", type=Path, dest="sub_out", help="where compare.md and compare_loss.png go (default: B's folder)")
    s = sub.add_parser("scaling", help="sampling/training GFLOPs of SSD vs DDPM, paper-sized networks, 64-256 px")
    s.add_argument("--out", type=Path, dest="sub_out")
    s.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    h = sub.add_parser("hierarchy", help="fraction of signal-dominated pixels in x_t over t vs the ladder levels")
    h.add_argument("--out", type=Path, dest="sub_out")
    h.add_argument("--images", type=int, default=1000, help="real test images to average over")
    from .throughput import add_arguments as throughput_arguments

    throughput_arguments(sub.add_parser("throughput", help="train/sample speed per resolution path, A/B against a commit"))
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    _quiet()
    if args.command == "throughput":
        from .throughput import run

        rest = sys.argv[1:] if argv is None else list(argv)
        run(args, rest[rest.index("throughput") + 1 :])
        return
    if args.command == "readme":
        from .readme import update_readme

        print(update_readme(args.results, args.readme))
        return
    if args.command == "compare":
        from .compare import compare

        print(compare(args.a, args.b, args.sub_out or args.b.parent).read_text())
        return
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if args.command == "demo":
        from .demo import run_demo

        run_demo(args.demo_ckpt, args.samples, args.cache_dir, args.json, idx_dir=args.idx_dir,
                 data_cache_dir=args.data_cache_dir)  # fmt: skip
    elif args.command == "scaling":
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
        overrides = {k: v for k, v in dict(dataset=args.dataset, image_size=args.image_size, channels=args.channels,
                                       precision=args.precision, train_seed=args.train_seed).items()
                     if v is not None}  # fmt: skip
        preset = replace(preset, **overrides)
        extractor = args.extractor or ("inception" if args.inception_weights else "classifier")
        out = args.out or RESULTS / preset.name
        start = time.perf_counter()
        run_preset(preset, out, only=args.only, ckpts=dict(args.ckpt), extractor=extractor,
                   inception_weights=args.inception_weights, cache_dir=args.cache_dir, idx_dir=args.idx_dir,
                   data_cache_dir=args.data_cache_dir, fresh=args.fresh)  # fmt: skip
        print(f"Total wall time {time.perf_counter() - start:.0f} s (load average now {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    sys.exit(main())
