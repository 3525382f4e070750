"""The preset run: every model trained for equal steps (budget runs on to DDPM's FLOPs and wall-clock), measured
alike; results.json is written after every run, and a restarted suite skips the runs it finished."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import lightning as L
import torch

from scale_space_diffusion.data import ImageDataModule
from scale_space_diffusion.metrics.model_flops import param_counts, training_flops_breakdown
from scale_space_diffusion.io.loading import load_model

from ..machine import hardware, load
from . import plots, report
from .presets import RUNS, Preset, recorded_preset
from .quality import Judge, check_extractor, check_labels, make_judge, reference_rows
from .runs import build, distilled, fit
from .scoring import score_checkpoints, score_main, score_pareto, spectrum

SPEED_STEPS = 20  # timed steps for a model loaded with --ckpt (its training time is unknown)


def _targets(name: str, p: Preset, per_image: float, ddpm: dict | None) -> tuple[dict[int, list[str]], int, float | None]:
    """(checkpoint steps -> labels, max_steps, DDPM's training seconds to checkpoint at) for run ``name``."""
    marks = {m: [f"{round(100 * m / p.steps)}% steps"] for m in p.milestones()}
    if ddpm is None or name == "ddpm" or not ddpm.get("train_seconds"):
        return marks, p.steps, None
    budget = name in p.budget_runs
    cap = math.ceil(p.max_extend * p.steps) if budget else p.steps
    flops_step = math.ceil(ddpm["train_gflops_total_per_image"] * ddpm["train_steps"] / per_image - 1e-9)
    if flops_step <= cap:
        marks.setdefault(flops_step, []).append("DDPM FLOPs")
    return marks, cap, ddpm["train_seconds"]


def train_run(name: str, p: Preset, data: ImageDataModule, run_dir: Path, teacher: str | None,
              ddpm: dict | None) -> dict:  # fmt: skip
    """Train run ``name`` with its milestone checkpoints; ``model.ckpt`` is the one at ``steps``."""
    for stale in ("checkpoints", "samples"):
        shutil.rmtree(run_dir / stale, ignore_errors=True)
    L.seed_everything(p.run_seed, verbose=False)  # the same initial weights for nets of the same shape
    model = build(name, p, teacher)
    start = time.perf_counter()
    train = training_flops_breakdown(model)
    train_flops_s = time.perf_counter() - start
    per_image = train["total_flops"] / 1e9
    marks, max_steps, seconds = _targets(name, p, per_image, ddpm)
    timer, saved = fit(model, data, max_steps, p.warmup_steps, run_dir, p.run_seed, marks, seconds, p.precision)
    at_steps = next(c for c in saved if c["step"] == p.steps)
    checkpoint = run_dir / "model.ckpt"
    checkpoint.unlink(missing_ok=True)
    os.link(at_steps["path"], checkpoint)
    trained = saved[-1]["step"]
    notes = []
    if name in p.budget_runs and seconds is not None and not any("DDPM wall-clock" in c["labels"] for c in saved):
        notes.append(f"DDPM's wall-clock ({seconds:.0f} s) not reached within {max_steps} steps")
    if name in p.budget_runs and ddpm is not None and not any("DDPM FLOPs" in c["labels"] for c in saved):
        notes.append(f"DDPM's training FLOPs not reached within {max_steps} steps (max_extend {p.max_extend})")
    return {
        "model": model, "checkpoint": str(checkpoint), "trained_here": True, "train": train, "saved": saved,
        "train_seconds": at_steps["train_seconds"], "train_steps": p.steps, "trained_steps": trained,
        "fit_seconds": timer.fit_seconds, "fit_cpu_seconds": timer.fit_cpu_seconds, "train_images_per_s": timer.images_per_s, "budget_notes": notes,
        "train_loss_curve": timer.loss_curve(),
        "load": {"train_start": timer.load_start, "train_end": timer.load_end}, "train_flops_s": train_flops_s,
    }  # fmt: skip


def load_run(name: str, p: Preset, data: ImageDataModule, run_dir: Path, ckpt: str) -> dict:
    model = load_model(ckpt)
    if model.image_size != p.image_size:
        raise ValueError(f"--ckpt {name}={ckpt} is a {model.image_size}px model, the preset is {p.image_size}px")
    steps = torch.load(ckpt, map_location="cpu", weights_only=True).get("global_step")
    timer, _ = fit(load_model(ckpt).train(), data, p.warmup_steps + SPEED_STEPS, p.warmup_steps, run_dir, p.run_seed,
                   precision=p.precision)
    return {"model": model, "checkpoint": str(ckpt), "trained_here": False, "train": training_flops_breakdown(model),
            "saved": [], "train_steps": steps, "trained_steps": steps, "train_images_per_s": timer.images_per_s,
            "budget_notes": [], "load": {"train_start": timer.load_start, "train_end": timer.load_end},
            **dict.fromkeys(("train_seconds", "fit_seconds", "fit_cpu_seconds", "train_flops_s", "train_loss_curve"))}


def run_one(name: str, p: Preset, data: ImageDataModule, judge: Judge, out: Path, ckpt: str | None,
            teacher: str | None, ddpm: dict | None) -> dict:  # fmt: skip
    """Train (or load) one model, count its FLOPs, sample, score its checkpoints and Pareto points, time it."""
    run_dir = out / name
    run_dir.mkdir(parents=True, exist_ok=True)
    t = train_run(name, p, data, run_dir, teacher, ddpm) if ckpt is None else load_run(name, p, data, run_dir, ckpt)
    model = t["model"].eval()
    if t["trained_steps"] != t["train_steps"]:  # training went on for the budget: the weights at `steps`
        model = load_model(t["checkpoint"])
    train, params, caches = t["train"], param_counts(model), {"ddim": {}, "ancestral": {}}  # per-sampler path FLOPs
    main, features = score_main(model, name, p, judge, run_dir, caches)
    per_image = train["total_flops"] / 1e9
    start, cpu_start = time.perf_counter(), time.process_time()
    curve = score_checkpoints(t["saved"], name, p, judge, features, per_image, p.batch_size)
    pareto = score_pareto(model, name, p, judge, features, caches)
    teacher_info = {}
    if distilled(name) and teacher is not None:
        teacher_info = {"teacher_checkpoint": str(teacher), "teacher_sha1": hashlib.sha1(Path(teacher).read_bytes()).hexdigest()[:12],
                        "teacher_steps": torch.load(teacher, map_location="cpu", weights_only=True).get("global_step")}  # fmt: skip
    return {
        "run": name, "description": RUNS[name], "model": type(model).__name__, "network": type(model.net).__name__,
        "checkpoint": t["checkpoint"], "trained_here": t["trained_here"], **teacher_info, **params,
        "train_gflops_per_image": train["flops"] / 1e9, "teacher_gflops": train["teacher_flops"] / 1e9,
        "train_gflops_total_per_image": per_image,
        "train_gflops_total": per_image * p.batch_size * t["train_steps"] if t["train_steps"] else None,
        "train_gflops_by_path": {k: {"share": v["share"], "gflops": v["flops"] / 1e9} for k, v in train["paths"].items()},
        "train_images_per_s": t["train_images_per_s"], "train_seconds": t["train_seconds"],
        "train_steps": t["train_steps"], "trained_steps": t["trained_steps"], "fit_seconds": t["fit_seconds"],
        "batch_size": p.batch_size, "steps_in_ddpm_time": None, "budget_notes": t["budget_notes"],
        "train_loss_curve": t["train_loss_curve"], "train_loss_window": 50,
        **main, "load": {**t["load"], **main["load"]},
        "timings": {**main["timings"], "train_flops_s": t["train_flops_s"], "fit_s": t["fit_seconds"],
                    "fit_cpu_s": t["fit_cpu_seconds"], "curves_s": time.perf_counter() - start,
                    "curves_cpu_s": time.process_time() - cpu_start},
        "checkpoints": curve, "pareto": pareto,
        "feature_extractor": judge.label, "extractor": judge.extractor, "classifier_accuracy": judge.classifier_accuracy,
        "low_sample": p.low_sample, "image_format": "PNG", "sampler_name": p.sampler,
        "sampler": (f"DDIM (eta = 0), respaced to {p.sample_steps} steps" if p.sampler == "ddim" else
                    f"ancestral (exact posterior), respaced to {p.sample_steps} steps") + " (SSD keeps every transition)",
        "ema": model.optim.ema_decay is not None, "ema_decay": model.optim.ema_decay, "seed": p.run_seed,
    }  # fmt: skip


def equal_wall_clock(records: list[dict]) -> None:
    """steps_in_ddpm_time = steps * ddpm_seconds / run_seconds: the steps each run reaches in DDPM's wall-clock."""
    ddpm = next((r for r in records if r["run"] == "ddpm" and r["train_seconds"]), None)
    for r in records:
        if ddpm is not None and r["train_seconds"]:
            r["steps_in_ddpm_time"] = round(r["train_steps"] * ddpm["train_seconds"] / r["train_seconds"])


def _finished(record: dict | None) -> bool:
    if record is None or not Path(record["checkpoint"]).is_file():
        return False
    return len(list(Path(record["samples_dir"]).glob("[0-9]*.png"))) >= record["num_samples"]


def _previous(out: Path, p: Preset, extractor: str, fresh: bool) -> dict | None:
    path = out / "results.json"
    if fresh or not path.is_file():
        return None
    old = json.loads(path.read_text())
    if recorded_preset(old) != json.loads(json.dumps(p.as_dict())) or old.get("extractor") != extractor:
        raise SystemExit(f"error: {path} holds results of other settings (preset or extractor); pass --fresh to "
                         "start over there, or another --out")  # fmt: skip
    return old


def selected_runs(p: Preset, only: list[str] | None, ckpts: dict[str, str]) -> list[str]:
    """The runs to train or load in the suite's order: ``only``, else the preset's runs and those given a checkpoint."""
    chosen = only or (*(p.runs or RUNS), *ckpts)
    unknown = set(chosen) - set(RUNS) | set(ckpts) - set(RUNS)
    if unknown:
        raise SystemExit(f"error: unknown run(s) {sorted(unknown)}; choose from {', '.join(RUNS)}")
    return [n for n in RUNS if n in chosen]


def run_preset(p: Preset, out: Path, only: list[str] | None = None, ckpts: dict[str, str] | None = None,
               extractor: str = "classifier", inception_weights: str | None = None,
               cache_dir: Path = Path(__file__).parents[1] / "cache", idx_dir: str | None = None,
               data_cache_dir: str | None = None, fresh: bool = False, command: str | None = None) -> dict:  # fmt: skip
    """Run ``only`` (default: the preset's runs) of preset ``p``; write results.json, results.md and plots to ``out``."""
    suite_start, suite_cpu = time.perf_counter(), time.process_time()
    ckpts = dict(ckpts or {})
    names = selected_runs(p, only, ckpts)
    if any(distilled(n) and n not in ckpts for n in names) and "ddpm" not in names and "ddpm" not in ckpts:
        raise SystemExit("error: the distilled students learn from the ddpm run: include ddpm, or pass --ckpt ddpm=PATH")
    check_extractor(extractor, inception_weights)  # a missing Inception file fails before any training
    out.mkdir(parents=True, exist_ok=True)
    data_kwargs = {k: v for k, v in dict(idx_dir=idx_dir, cache_dir=data_cache_dir).items() if v is not None}
    data = ImageDataModule(p.dataset, image_size=p.image_size, channels=p.channels, batch_size=p.batch_size,
                           max_samples=p.max_data, seed=p.seed, **data_kwargs)  # fmt: skip
    data.prepare_data()
    data.setup()
    check_labels(data, extractor)  # before any training
    results = _previous(out, p, extractor, fresh) or {"preset": p.as_dict(), "extractor": extractor, "runs": []}
    results.update(command=command or " ".join(["python", "-m", "benchmarks", *sys.argv[1:]]),
                   hardware={**hardware(), "lightning": L.__version__})
    start, cpu_start = time.perf_counter(), time.process_time()
    judge = make_judge(data, extractor, Path(cache_dir), p.classifier_epochs, p.seed, p.resamples, inception_weights)
    results.update(feature_extractor=judge.label, classifier_accuracy=judge.classifier_accuracy,
                   num_reference=judge.reference.num, judge_seconds=time.perf_counter() - start,
                   judge_cpu_seconds=time.process_time() - cpu_start)  # fmt: skip
    if "reference" not in results:
        start = time.perf_counter()
        sizes = [p.num_samples, min(p.curve_samples, p.num_samples)]
        results["reference"] = reference_rows(data, judge, sizes, p.seed)
        results["real_radial_power"] = spectrum(data.reference_images("test"))
        results["reference_seconds"] = time.perf_counter() - start
    by_run = {r["run"]: r for r in results["runs"]}
    teacher = ckpts.get("ddpm") or (by_run["ddpm"]["checkpoint"] if "ddpm" in by_run else None)
    for i, name in enumerate(names):
        prefix = f"[{i + 1}/{len(names)}] {name}"
        if name not in ckpts and _finished(by_run.get(name)):
            r = by_run[name]
            print(f"{prefix}: finished before (results.json, {r['checkpoint']} and {r['num_samples']} samples), skipped",
                  flush=True)  # fmt: skip
            continue
        print(f"{prefix}: {RUNS[name]}", flush=True)
        ddpm = by_run.get("ddpm") if "ddpm" not in ckpts else None
        record = run_one(name, p, data, judge, out, ckpts.get(name), teacher, ddpm)
        record.update(preset=p.name, hardware=results["hardware"])
        by_run[name] = record
        if name == "ddpm":
            teacher = ckpts.get("ddpm") or record["checkpoint"]
        results["runs"] = [by_run[n] for n in RUNS if n in by_run]
        (out / "results.json").write_text(json.dumps(results, indent=1))  # finished runs survive a crash
    equal_wall_clock(results["runs"])
    results["plots"] = plots.all_plots(results, out)
    results.update(total_seconds=time.perf_counter() - suite_start, total_cpu_seconds=time.process_time() - suite_cpu,
                   load_end=load())  # this invocation (a restarted suite: the part it ran)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(report.markdown(results))
    print(f"Wrote {out / 'results.json'}, {out / 'results.md'} and {len(results['plots'])} plots")
    return results

