"""Scoring a trained run: the main sample set, the training checkpoints, the Pareto points (FID vs sampling GFLOPs)
and the samples' radial power spectrum. Image i of every set is seeded by (seed, i), so curves reuse main samples."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from scale_space_diffusion.metrics.analysis import radial_power_spectrum
from scale_space_diffusion.metrics.model_flops import sampling_flops
from scale_space_diffusion.io.loading import load_model

from ..machine import load
from .presets import Preset
from .quality import Judge
from .runs import sample_images, sampling_settings, write_grid

SPECTRUM_IMAGES = 1000  # images per radial power spectrum


def counted_flops(model, sampling, trace: bool = True, cache: dict | None = None) -> dict:
    """FLOPs of ``model``'s sampling with ``sampling``, counted per path and (``trace``) by tracing it, checked equal."""
    f = sampling_flops(model, trace=trace, cache=cache, sampling=sampling)
    if trace and f["flops_traced"] != f["flops"]:
        raise AssertionError(f"traced sampling FLOPs {f['flops_traced']} != per-path {f['flops']}")
    return f


def spectrum(images: torch.Tensor) -> list[float]:
    """Radially averaged power per band (16 bands) of uint8 images, as [-1, 1] floats."""
    return radial_power_spectrum(images[:SPECTRUM_IMAGES].float() / 127.5 - 1).tolist()


def score_main(model, name: str, p: Preset, judge: Judge, run_dir: Path, caches: dict) -> tuple[dict, torch.Tensor]:
    """The end-of-training set: ``num_samples`` PNGs with the main sampler, its grid, features and scores."""
    sampling, start = sampling_settings(p), time.perf_counter()
    flops = counted_flops(model, sampling, cache=caches[p.sampler])
    flops_s = time.perf_counter() - start
    sample_load = load()
    images, seconds, cpu = sample_images(model, sampling, p.num_samples, p.sample_batch,
                                         f"{name}: sampling {p.num_samples} images", run_dir / "samples", p.precision)  # fmt: skip
    write_grid(images, run_dir / "grid.png")
    start = time.perf_counter()
    features = judge.features(images, f"{name}: features")
    torch.save(features, run_dir / "samples" / "features.pt")
    features_s = time.perf_counter() - start
    start = time.perf_counter()
    scores = judge.score(features)
    record = {
        **scores, "sample_gflops_per_image": flops["gflops"], "sample_gflops_traced": flops["flops_traced"] / 1e9,
        "sample_paths": flops["paths"], "steps": flops["num_steps"], "sample_seconds": seconds,
        "sample_images_per_s": p.num_samples / seconds, "grid": str(run_dir / "grid.png"),
        "samples_dir": str(run_dir / "samples"), "radial_power": spectrum(images),
        "timings": {"sampling_flops_s": flops_s, "sample_s": seconds, "sample_cpu_s": cpu, "features_s": features_s,
                    "score_s": time.perf_counter() - start},
        "load": {"sample": sample_load},
    }  # fmt: skip
    return record, features


def _curve_point(judge: Judge, features: torch.Tensor, **extra) -> dict:
    s = judge.score(features)
    keep = ("fid", "fid_ci95", "kid", "kid_ci95", "kid_std", "num_samples")
    return {**extra, **{k: s[k] for k in keep}}


def score_checkpoints(saved: list[dict], name: str, p: Preset, judge: Judge, main_features: torch.Tensor,
                      per_image_gflops: float, batch_size: int) -> list[dict]:  # fmt: skip
    """FID of every training checkpoint at ``curve_samples`` images (the one at ``steps``: the main set's first)."""
    n = min(p.curve_samples, p.num_samples)
    points = []
    for c in saved:
        extra = {"step": c["step"], "labels": c["labels"], "train_seconds": c["train_seconds"], "load": c["load"],
                 "train_gflops_total": per_image_gflops * batch_size * c["step"], "checkpoint": c["path"]}  # fmt: skip
        if c["step"] == p.steps:
            feats = main_features[:n]
        else:
            images, *_ = sample_images(load_model(c["path"]), sampling_settings(p), n, p.sample_batch,
                                       f"{name}: step {c['step']}, {n} images", precision=p.precision)
            feats = judge.features(images, f"{name}: features")
        points.append(_curve_point(judge, feats, **extra))
    return points


def score_pareto(model, name: str, p: Preset, judge: Judge, main_features: torch.Tensor, caches: dict) -> list[dict]:
    """FID at ``curve_samples`` images vs sampling GFLOPs, DDIM at ``pareto_steps``, ancestral at ``pareto_ancestral``."""
    n = min(p.curve_samples, p.num_samples)
    settings = [("ddim", s) for s in p.pareto_steps] + [("ancestral", s) for s in p.pareto_ancestral]
    if (p.sampler, p.sample_steps) not in settings:
        settings.append((p.sampler, p.sample_steps))
    points = []
    for sampler, steps in settings:
        sampling = sampling_settings(p, sampler, steps)
        flops = counted_flops(model, sampling, trace=False, cache=caches[sampler])  # the main count was traced
        if (sampler, steps) == (p.sampler, p.sample_steps):
            feats = main_features[:n]
        else:
            images, *_ = sample_images(model, sampling, n, p.sample_batch, f"{name}: {sampler} {steps} steps, {n} images",
                                       precision=p.precision)
            feats = judge.features(images, f"{name}: features")
        points.append(_curve_point(judge, feats, sampler=sampler, eta=0.0 if sampler == "ddim" else 1.0,
                                   requested_steps=steps, steps=flops["num_steps"], sample_gflops_per_image=flops["gflops"]))  # fmt: skip
    return points
