"""The preset run: every model trained for equal steps (budget runs on to DDPM's FLOPs and wall-clock) and measured
alike; results.json is written after every run, and a restarted suite skips the runs it finished."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from pathlib import Path

import lightning as L
import torch

from scale_space_diffusion.data import ImageDataModule
from scale_space_diffusion.images import save_samples
from scale_space_diffusion.io.loading import load_model
from scale_space_diffusion.metrics import blockiness, param_counts, training_flops_breakdown
from scale_space_diffusion.models.base import DiffusionModule
from scale_space_diffusion.posthoc_ema import Profile
from scale_space_diffusion.posthoc_ema.reconstruct import write_checkpoint

from ..machine import hardware
from . import plots, report
from .presets import RUNS, Preset, recorded_preset
from .runs import LOSS_WINDOW, TEACHERS, Milestones, build, distilled, fit
from .scoring import Judge, choose_ema, counted_flops, make_judge, preset_data, reference_rows, sample, \
    score_checkpoints, score_pareto, spectrum, timed  # fmt: skip

SPEED_STEPS = 20  # timed training steps of a model loaded with --ckpt (its training time is unknown)
BUDGETS = {"DDPM wall-clock": "DDPM's wall-clock", "DDPM FLOPs": "DDPM's training FLOPs"}  # checkpoint label -> what


def _targets(name: str, p: Preset, gflops: float, ddpm: dict | None) -> tuple[dict[int, list[str]], int, float | None]:
    """(checkpoint steps -> labels, max_steps, DDPM's training seconds to checkpoint at) of run ``name``."""
    marks = {max(1, round(f * p.steps)): [f"{f:.0%} steps"] for f in (*p.checkpoints, 1.0)}  # scored during training
    if ddpm is None or name == "ddpm" or not ddpm["train_seconds"]:
        return marks, p.steps, None
    cap = math.ceil(p.max_extend * p.steps) if name in p.budget_runs else p.steps
    flops_step = math.ceil(ddpm["train_gflops_total_per_image"] * ddpm["train_steps"] / gflops - 1e-9)
    if flops_step <= cap:
        marks.setdefault(flops_step, []).append("DDPM FLOPs")
    return marks, cap, ddpm["train_seconds"]


def _global_step(checkpoint: str | Path) -> int | None:
    return torch.load(checkpoint, map_location="cpu", weights_only=True).get("global_step")


def choose_teacher(by_run: dict) -> dict | None:
    """The record of the distilled students' teacher: of the TEACHERS runs finished so far, the one with the lowest
    FID (a teacher chosen in the same run, by the same judge)."""
    return min((by_run[n] for n in TEACHERS if n in by_run), key=lambda r: r["fid"], default=None)


def train(name: str, p: Preset, data: ImageDataModule, run_dir: Path, ckpt: str | None, teacher: dict | None,
          ddpm: dict | None, timings: dict) -> tuple[DiffusionModule, Milestones, dict]:  # fmt: skip
    """Train run ``name`` with its milestone checkpoints (``model.ckpt``: the one at ``steps``), or load ``ckpt`` and
    time the training of a copy; returns the model to score, the training callback and the record so far."""
    L.seed_everything(p.run_seed, verbose=False)  # the same initial weights for nets of the same shape
    model = build(name, p, teacher and teacher["checkpoint"]) if ckpt is None else load_model(ckpt)
    if model.image_size != p.image_size:
        raise ValueError(f"--ckpt {name}={ckpt} is a {model.image_size}px model, the preset is {p.image_size}px")
    with timed(timings, "train FLOPs count"):
        flops = training_flops_breakdown(model)
    gflops = flops["total_flops"] / 1e9
    marks, max_steps, seconds = ({}, p.warmup_steps + SPEED_STEPS, None) if ckpt else _targets(name, p, gflops, ddpm)
    with timed(timings, "fit"):
        trained = load_model(ckpt).train() if ckpt else model  # a loaded model: a copy's training speed
        m = fit(trained, data, max_steps, p, run_dir / "checkpoints", marks, seconds)
    at = next((c for c in m.saved if c["step"] == p.steps), None)  # None for a loaded model
    checkpoint = Path(ckpt) if at is None else run_dir / "model.ckpt"
    if at is not None:
        checkpoint.unlink(missing_ok=True)
        os.link(at["path"], checkpoint)
        if len(m.losses) != p.steps:  # trained on for the budget: score the weights at `steps`
            model = load_model(checkpoint)
    steps, reached = _global_step(checkpoint), {label for c in m.saved for label in c["labels"]}
    notes = [f"{what} not reached within {max_steps} steps" for label, what in BUDGETS.items()
             if name in p.budget_runs and seconds and label not in reached]
    record = {"run": name, "checkpoint": str(checkpoint), "trained_here": ckpt is None, **param_counts(model),
              "train_steps": steps, "trained_steps": len(m.losses) if at else steps,
              "train_seconds": at["train_seconds"] if at else None, "train_loss_curve": m.loss_curve() if at else None,
              "train_loss_window": LOSS_WINDOW, "train_images_per_s": m.images_per_s(p.warmup_steps),
              "train_gflops_per_image": flops["flops"] / 1e9, "teacher_gflops": flops["teacher_flops"] / 1e9,
              "train_gflops_total_per_image": gflops, "steps_in_ddpm_time": None, "budget_notes": notes}
    if distilled(name) and teacher is not None:  # which teacher, how good, and what it cost to train
        record.update({f"teacher_{k}": teacher[k] for k in ("run", "fid", "fid_ci95", "train_seconds",
                                                            "train_gflops_total_per_image")},
                      teacher_checkpoint=teacher["checkpoint"], teacher_steps=_global_step(teacher["checkpoint"]),
                      teacher_sha1=hashlib.sha1(Path(teacher["checkpoint"]).read_bytes()).hexdigest()[:12])
    return model, m, record


def run_one(name: str, p: Preset, data: ImageDataModule, judge: Judge, out: Path, ckpt: str | None,
            teacher: dict | None, ddpm: dict | None) -> dict:  # fmt: skip
    """Train (or load) one model, count its FLOPs, sample, score its checkpoints and Pareto points, time each stage."""
    run_dir, timings, caches = out / name, {}, {"ddim": {}, "ancestral": {}}  # caches: path FLOPs per sampler
    for stale in ("checkpoints", "samples"):
        shutil.rmtree(run_dir / stale, ignore_errors=True)
    model, m, record = train(name, p, data, run_dir, ckpt, teacher, ddpm, timings)
    if record["trained_here"] and p.ema_lengths:  # model.ckpt keeps the EMA chosen: what is scored, what teaches
        with timed(timings, "EMA choice"):
            chosen, record["ema_candidates"] = choose_ema(model, run_dir / "checkpoints" / "phema", p.steps, p, judge)
        if chosen is not None:
            write_checkpoint(record["checkpoint"], model.sampling_net.state_dict(), Profile(p.steps, chosen),
                             record["checkpoint"])  # fmt: skip
        record["ema_sigma_rel"] = chosen
    with timed(timings, "sampling FLOPs count"):
        flops = counted_flops(model, p, p.sampler, p.sample_steps, trace=True, cache=caches[p.sampler])
    images, timings["sample"] = sample(model, p, p.sampler, p.sample_steps, p.num_samples)
    save_samples(images, run_dir / "samples", run_dir / "grid.png")
    with timed(timings, "score"):
        record.update(judge.score(images, f"{name}: features"))
    with timed(timings, "curves"):
        curve = score_checkpoints(m.saved, p, judge, images, record["train_gflops_total_per_image"])
        pareto = score_pareto(model, p, judge, images, caches)
    return {**record, "sample_gflops_per_image": flops["gflops"], "sample_gflops_traced": flops["flops_traced"] / 1e9,
            "steps": flops["num_steps"], "sample_images_per_s": p.num_samples / timings["sample"]["s"],
            "samples_dir": str(run_dir / "samples"), "radial_power": spectrum(images), "checkpoints": curve,
            "blockiness_2x2": blockiness(images[:1000], 2),
            "pareto": pareto, "timings": timings, "feature_extractor": judge.label, "low_sample": p.low_sample}


def check_same_judge(results: dict, judge: Judge, out: Path, start_over: str = "") -> None:
    """A run continued or extended must score with the judge its finished runs had (another machine trains another
    classifier), else its FIDs would not compare; the refusal names the run's kept classifier (``out/judge``)."""
    old, kept = results.get("judge"), out / "judge"
    if results["runs"] and old != judge.identity:
        where = f"--cache-dir {kept}" if kept.is_dir() else "--cache-dir with the classifier that run used"
        raise SystemExit(f"error: {out / 'results.json'} was scored by another FID judge ({old}; here "
                         f"{judge.identity}, accuracy {judge.classifier_accuracy}): its FIDs would not compare with "
                         f"new ones; pass {where}{start_over}")  # fmt: skip


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


def run_preset(p: Preset, out: Path, only: list[str] | None, ckpts: dict[str, str], extractor: str,
               inception_weights: str | None, cache_dir: Path, data_location: dict[str, str], fresh: bool,
               command: str) -> dict:  # fmt: skip
    """Run ``only`` (default: the preset's runs) of preset ``p``; write results.json, results.md and plots to ``out``.
    ``data_location``: ImageDataModule's ``idx_dir`` and ``cache_dir`` where given."""
    names = selected_runs(p, only, ckpts)
    if any(distilled(n) and n not in ckpts for n in names) and not set(TEACHERS) & {*names, *ckpts}:
        raise SystemExit(f"error: the distilled students learn from the better of the {' and '.join(TEACHERS)} "
                         "runs; include one of them, or pass --ckpt ddpm_x0=PATH")
    data = preset_data(p, data_location)
    results = _previous(out, p, extractor, fresh) or {"preset": p.as_dict(), "extractor": extractor, "runs": []}
    results.update(command=command, hardware={**hardware(), "lightning": L.__version__})
    timings, by_run = results.setdefault("timings", {}), {r["run"]: r for r in results["runs"]}
    out.mkdir(parents=True, exist_ok=True)
    with timed(timings, "this invocation"):
        with timed(timings, "classifier and reference features"):
            judge = make_judge(data, extractor, cache_dir, p.classifier_epochs, p.seed, p.resamples, inception_weights)
        check_same_judge(results, judge, out, ", or --fresh to start over")
        results.update(feature_extractor=judge.label, classifier_accuracy=judge.classifier_accuracy,
                       num_reference=judge.reference.num, judge=judge.identity)  # fmt: skip
        if "reference" not in results:
            with timed(timings, "reference rows"):
                sizes = [p.num_samples, min(p.curve_samples, p.num_samples)]
                results.update(reference=reference_rows(data, judge, sizes, p.seed),
                               real_radial_power=spectrum(data.reference_images("test")))  # fmt: skip
        for i, name in enumerate(names):
            if name not in ckpts and _finished(by_run.get(name)):
                print(f"[{i + 1}/{len(names)}] {name}: finished before ({by_run[name]['checkpoint']}), skipped")
                continue
            print(f"[{i + 1}/{len(names)}] {name}: {RUNS[name]}", flush=True)
            ddpm = None if "ddpm" in ckpts else by_run.get("ddpm")
            by_run[name] = run_one(name, p, data, judge, out, ckpts.get(name), choose_teacher(by_run), ddpm)
            results["runs"] = [by_run[n] for n in RUNS if n in by_run]
            (out / "results.json").write_text(json.dumps(results, indent=1))  # finished runs survive a crash
        ddpm_s = by_run.get("ddpm", {}).get("train_seconds")
        for r in results["runs"]:  # the steps each run reaches in DDPM's wall-clock
            if ddpm_s and r["train_seconds"]:
                r["steps_in_ddpm_time"] = round(r["train_steps"] * ddpm_s / r["train_seconds"])
        results["plots"] = plots.all_plots(results, out)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(report.markdown(results))
    print(f"Wrote {out / 'results.json'}, {out / 'results.md'} and {len(results['plots'])} plots")
    return results
