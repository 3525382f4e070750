"""``ssd export`` and ``ssd sample``: plain argparse commands beside LightningCLI (whose subcommands are Trainer methods
run from a config) for shareable model folders (``save_pretrained``: config.json + model.safetensors, no pickle).

    ssd export --ckpt_path outputs/ssd_fmnist32/checkpoints/last.ckpt --out my_model   # checkpoint -> folder
    ssd sample --model my_model --num_images 64                                         # folder -> PNGs and a grid
"""

from __future__ import annotations

import argparse
from pathlib import Path


def export_parser() -> argparse.ArgumentParser:
    """The options of ``ssd export``."""
    parser = argparse.ArgumentParser(prog="ssd export", description="Write a Lightning checkpoint as a save_pretrained "
                                     "folder (config.json + model.safetensors, no pickle).")  # fmt: skip
    parser.add_argument("--ckpt_path", required=True, help="a .ckpt written by `ssd fit`")
    parser.add_argument("--out", required=True, help="the folder to write (created; its config.json, "
                        "model.safetensors and README.md are replaced)")  # fmt: skip
    parser.add_argument("--weights", choices=("ema", "raw"), default="ema",
                        help="ema: what the model samples with (its EMA, if it has one); raw: the trained weights")  # fmt: skip
    parser.add_argument("--repo_id", help="also upload the folder to this Hugging Face Hub repo (owner/name)")
    return parser


def export(args: list[str]) -> Path:
    """``ssd export``: a Lightning checkpoint as a ``save_pretrained`` folder."""
    opts = export_parser().parse_args(args)
    from .io.pretrained import export_checkpoint

    folder = export_checkpoint(opts.ckpt_path, opts.out, opts.weights, opts.repo_id)
    print(f"exported {opts.ckpt_path} to {folder}" + (f" and https://huggingface.co/{opts.repo_id}" if opts.repo_id else ""))
    return folder


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return int(text)


def sample_parser() -> argparse.ArgumentParser:
    """The options of ``ssd sample``."""
    parser = argparse.ArgumentParser(prog="ssd sample", description="Sample PNGs and a grid from a save_pretrained "
                                     "folder (`ssd export`'s output) or a Hugging Face Hub repo of one.")  # fmt: skip
    parser.add_argument("--model", required=True, help="the folder, or a Hub repo id owner/name")
    parser.add_argument("--out", type=Path, help="samples go to OUT/run_NNN (default outputs/<folder name>/samples)")
    parser.add_argument("--num_images", type=_positive, default=64)
    parser.add_argument("--steps", type=_positive, help="sampler steps (default: the folder's sampling.steps)")
    parser.add_argument("--seed", type=int, default=0, help="image i is drawn from the stream (seed, i)")
    parser.add_argument("--batch_size", type=_positive, default=64)
    parser.add_argument("--device", help="e.g. cuda or cpu (default: cuda if there is one, else cpu)")
    return parser


def sample(args: list[str]) -> Path:
    """``ssd sample``: ``num_images`` PNGs and ``grid.png`` (the first 64) in a new ``run_NNN`` folder."""
    opts = sample_parser().parse_args(args)
    import torch

    from .callbacks import next_run_dir
    from .images import save_samples
    from .io.pretrained import from_pretrained

    device = opts.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = from_pretrained(opts.model, map_location=device)
    run_dir = next_run_dir(opts.out or Path("outputs") / Path(opts.model).name / "samples")
    steps = opts.steps or model.sampling.steps
    print(f"Sampling {opts.num_images} images from {opts.model} ({type(model).__name__}, {steps or 'all'} steps, "
          f"seed {opts.seed}, {device}) into {run_dir}", flush=True)  # fmt: skip
    images = model.generate(opts.num_images, steps=steps, seed=opts.seed, output_type="uint8", batch_size=opts.batch_size)
    save_samples(images, run_dir, run_dir / "grid.png")
    print(f"Wrote {len(images)} samples and grid.png to {run_dir}")
    return run_dir
