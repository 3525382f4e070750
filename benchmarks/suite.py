"""The preset run: every model trained for the same number of steps, then measured the same way."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

import lightning as L
import torch

from scale_space_diffusion.data import ImageDataModule
from scale_space_diffusion.metrics.model_flops import param_counts, sampling_flops, training_flops_breakdown
from scale_space_diffusion.models.loading import load_model

from . import plots, report
from .presets import Preset
from .quality import Judge, check_extractor, make_judge
from .runs import DESCRIPTIONS, RUNS, build, fit, sample_pngs

SPEED_STEPS = 20  # timed steps for a model loaded with --ckpt (its training time is unknown)


def hardware() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        names = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu_model": cpu, "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "gpu": gpu,
            "torch": torch.__version__, "lightning": L.__version__, "python": platform.python_version(),
            "platform": platform.platform()}  # fmt: skip


def run_one(name: str, p: Preset, data: ImageDataModule, judge: Judge, out: Path, ckpt: str | None,
            teacher: str | None) -> dict:  # fmt: skip
    """Train (or load) one model, count its FLOPs, sample its PNGs, time it and score it."""
    run_dir = out / name
    if ckpt is None:
        L.seed_everything(p.seed, verbose=False)  # the same initial weights for nets of the same shape
        model = build(name, p, teacher)
        timer, trainer = fit(model, data, p.steps, p.warmup_steps, run_dir, p.seed)
        checkpoint, steps, train_seconds = run_dir / "model.ckpt", p.steps, timer.fit_seconds
        trainer.save_checkpoint(checkpoint)
    else:
        model, checkpoint = load_model(ckpt), Path(ckpt)
        if model.image_size != p.image_size:
            raise ValueError(f"--ckpt {name}={ckpt} is a {model.image_size}px model, the preset is {p.image_size}px")
        steps = torch.load(ckpt, map_location="cpu", weights_only=True).get("global_step")
        timer, _ = fit(load_model(ckpt).train(), data, p.warmup_steps + SPEED_STEPS, p.warmup_steps, run_dir, p.seed)
        train_seconds = None  # not trained here
    model.eval()
    sampling = sampling_flops(model, p.sample_steps)
    if sampling["flops_traced"] != sampling["flops"]:
        raise AssertionError(f"{name}: traced sampling FLOPs {sampling['flops_traced']} != per-path {sampling['flops']}")
    train = training_flops_breakdown(model)
    params = param_counts(model)
    speed = sample_pngs(model, p, run_dir / "samples", name)
    quality = judge.score(run_dir / "samples")
    return {
        "run": name, "description": DESCRIPTIONS[name], "model": type(model).__name__, "network": type(model.net).__name__,
        "checkpoint": str(checkpoint), "trained_here": ckpt is None,
        **params,
        "train_gflops_per_image": train["flops"] / 1e9, "teacher_gflops": train["teacher_flops"] / 1e9,
        "train_gflops_by_path": {k: {"share": v["share"], "gflops": v["flops"] / 1e9} for k, v in train["paths"].items()},
        "sample_gflops_per_image": sampling["flops"] / 1e9, "sample_gflops_traced": sampling["flops_traced"] / 1e9,
        "sample_paths": sampling["paths"],
        "train_images_per_s": timer.images_per_s, "sample_images_per_s": speed["sample_images_per_s"],
        "sample_seconds": speed["sample_seconds"], "train_seconds": train_seconds, "train_steps": steps,
        "batch_size": p.batch_size, "steps_in_ddpm_time": None,
        **quality,
        "feature_extractor": judge.label, "extractor": judge.extractor, "classifier_accuracy": judge.classifier_accuracy,
        "num_samples": p.num_samples, "low_sample": p.low_sample, "image_format": "PNG",
        "sampler": f"ancestral, exact posterior, respaced to {p.sample_steps} steps (SSD keeps every transition)",
        "steps": sampling["num_steps"], "ema": model.optim.ema_decay is not None, "ema_decay": model.optim.ema_decay,
        "seed": p.seed, "samples_dir": str(run_dir / "samples"),
    }  # fmt: skip


def equal_wall_clock(records: list[dict]) -> None:
    """steps_in_ddpm_time = steps * ddpm_seconds / run_seconds: the optimisation steps each run
    would reach in the DDPM's training wall-clock at its own measured pace (FID is not re-measured)."""
    ddpm = next((r for r in records if r["run"] == "ddpm" and r["train_seconds"]), None)
    for r in records:
        if ddpm is not None and r["train_seconds"]:
            r["steps_in_ddpm_time"] = round(r["train_steps"] * ddpm["train_seconds"] / r["train_seconds"])


def run_preset(p: Preset, out: Path, only: list[str] | None = None, ckpts: dict[str, str] | None = None,
               extractor: str = "classifier", inception_weights: str | None = None,
               cache_dir: Path = Path(__file__).parent / "cache", idx_dir: str | None = None,
               data_cache_dir: str | None = None) -> dict:  # fmt: skip
    """Run ``only`` (default: every run) of preset ``p`` and write results.json, results.md and plots to ``out``."""
    ckpts = dict(ckpts or {})
    names = [n for n in RUNS if only is None or n in only]
    unknown = set(only or []) - set(RUNS) | set(ckpts) - set(RUNS)
    if unknown:
        raise SystemExit(f"error: unknown run(s) {sorted(unknown)}; choose from {', '.join(RUNS)}")
    if "sd_distilled" in names and "sd_distilled" not in ckpts and "ddpm" not in names and "ddpm" not in ckpts:
        raise SystemExit("error: sd_distilled is distilled from the ddpm run: include ddpm, or pass --ckpt ddpm=PATH")
    check_extractor(extractor, inception_weights)  # a missing Inception file fails before any training
    out.mkdir(parents=True, exist_ok=True)
    data_kwargs = {k: v for k, v in dict(idx_dir=idx_dir, cache_dir=data_cache_dir).items() if v is not None}
    data = ImageDataModule("fashion_mnist", image_size=p.image_size, batch_size=p.batch_size, max_samples=p.max_data,
                           seed=p.seed, **data_kwargs)  # fmt: skip
    data.prepare_data()
    data.setup()
    judge = make_judge(data, extractor, Path(cache_dir), p.classifier_epochs, p.seed, inception_weights)
    results = {"command": " ".join([Path(sys.executable).name, "-m", "benchmarks", *sys.argv[1:]]),
               "preset": p.as_dict(), "hardware": hardware(), "runs": []}  # fmt: skip
    teacher = ckpts.get("ddpm")
    for i, name in enumerate(names):
        print(f"[{i + 1}/{len(names)}] {name}: {DESCRIPTIONS[name]}", flush=True)
        record = run_one(name, p, data, judge, out, ckpts.get(name), teacher)
        record.update(preset=p.name, hardware=results["hardware"])
        results["runs"].append(record)
        if name == "ddpm":
            teacher = record["checkpoint"]
        (out / "results.json").write_text(json.dumps(results, indent=2))  # finished runs survive a crash
    equal_wall_clock(results["runs"])
    (out / "results.json").write_text(json.dumps(results, indent=2))
    results["plots"] = plots.all_plots(results, out)
    (out / "results.md").write_text(report.markdown(results))
    print(f"Wrote {out / 'results.json'}, {out / 'results.md'} and {len(results['plots'])} plots")
    return results
