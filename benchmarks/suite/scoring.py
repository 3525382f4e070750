"""The FID judge (features of a classifier trained on the dataset's labels, or of InceptionV3, against the real test
split's cached statistics; FID/KID with bootstrap intervals) and what it scores: samples, checkpoints, Pareto points,
the floor and ceiling rows. Image i of every set is seeded by (seed, i)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from scale_space_diffusion.data import ImageDataModule
from scale_space_diffusion.io.loading import load_model
from scale_space_diffusion.metrics import (Reference, bootstrap_scores, build_feature_module, extract_features,
                                           feature_label, reference_stats, resolve_inception_weights, sampling_flops)
from scale_space_diffusion.metrics.analysis import radial_power_spectrum
from scale_space_diffusion.metrics.score import dataset_tag, extractor_id, reference_features, trained_classifier
from scale_space_diffusion.models.settings import Sampling
from scale_space_diffusion.posthoc_ema import Profile, read_index, reconstruct
from scale_space_diffusion.posthoc_ema.reconstruct import apply_to_model

from ..machine import load
from .presets import Preset

CURVE_KEYS = ("fid", "fid_ci95", "kid", "kid_ci95", "kid_std", "num_samples")  # what a checkpoint or Pareto point keeps


@contextmanager
def timed(timings: dict, stage: str):
    """Record the stage's wall seconds, CPU seconds (this process, all threads) and the load average at its start."""
    wall, cpu, start_load = time.perf_counter(), time.process_time(), load()
    yield
    timings[stage] = {"s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu, "load": start_load}


@dataclass(frozen=True)
class Judge:
    feature: torch.nn.Module  # uint8 (N, C, H, W) -> (N, D)
    reference: Reference  # the real test split's features and statistics
    held_out: Reference  # the validation split's (held out of training): what the EMA length is chosen on
    label: str  # e.g. "FID (fmnist-classifier features)"
    identity: str  # "inception", or "clf" + the classifier file's sha1: scores compare only under one identity
    resamples: int
    seed: int
    classifier_accuracy: float | None  # test accuracy of the feature classifier

    def score(self, images: torch.Tensor, desc: str = "features", held_out: bool = False) -> dict:
        """FID, KID and their 95% bootstrap intervals of uint8 images (N, C, H, W) against the test split (or the
        validation split)."""
        features = extract_features(self.feature, images, progress=desc)
        return bootstrap_scores(features, self.held_out if held_out else self.reference, resamples=self.resamples,
                                seed=self.seed)  # fmt: skip

    def curve_point(self, images: torch.Tensor, desc: str) -> dict:
        return {k: v for k, v in self.score(images, desc).items() if k in CURVE_KEYS}


def preset_data(p: Preset, data_location: dict[str, str]) -> ImageDataModule:
    """The preset's data, prepared and split (``data_location``: ImageDataModule's ``idx_dir`` and ``cache_dir``)."""
    data = ImageDataModule(p.dataset, image_size=p.image_size, channels=p.channels, batch_size=p.batch_size,
                           max_samples=p.max_data, seed=p.seed, **data_location)  # fmt: skip
    data.prepare_data()
    data.setup()
    return data


def make_judge(data: ImageDataModule, extractor: str, cache_dir: Path, epochs: int, seed: int, resamples: int,
               inception_weights: str | None) -> Judge:  # fmt: skip
    """The judge; refuses (before any training) Inception offline without weights, or a dataset without labels."""
    weights = resolve_inception_weights(inception_weights) if extractor == "inception" else None
    if extractor == "classifier" and not data.num_classes:
        raise SystemExit(f"error: dataset {data.hparams.dataset!r} has no class labels, and the offline FID "
                         "classifier is trained on them; pass --inception-weights /path/weights-inception-2015-12-05-"
                         "6726825d.pth, or a dataset with labels (e.g. an image folder with one sub-folder per class)")
    tag, reference, classifier, accuracy = dataset_tag(data.hparams.dataset), data.reference_images("test"), None, None
    if extractor == "classifier":
        classifier, accuracy = trained_classifier(data, tag, cache_dir, epochs, seed)
    fe_id = extractor_id(classifier)
    feature = build_feature_module(extractor, classifier, weights).eval()
    ref, val = (reference_stats(reference_features(feature, images, cache_dir, f"{tag}-{fe_id}"))
                for images in (reference, data.reference_images("val")))
    return Judge(feature, ref, val, feature_label(extractor, classifier_dataset=tag), fe_id, resamples, seed, accuracy)


def sample(model, p: Preset, sampler: str, steps: int, n: int) -> tuple[torch.Tensor, dict]:
    """(uint8 (n, C, S, S) images from ``model.generate`` (DDIM with eta 0, or ancestral; under bf16 autocast for
    "bf16-mixed"), that call's timing)."""
    dev, timing = "cuda" if torch.cuda.is_available() else "cpu", {}
    with timed(timing, "sample"), torch.autocast(dev, torch.bfloat16, enabled=p.precision == "bf16-mixed"):
        images = model.to(dev).generate(n, steps=steps, seed=p.run_seed, sampler=sampler, guidance_scale=1.0,
                                        eta=0.0 if sampler == "ddim" else None, output_type="uint8",
                                        batch_size=p.sample_batch)  # fmt: skip
    return images, timing["sample"]


def choose_ema(model, snapshots: Path, step: int, p: Preset, judge: Judge) -> tuple[float | None, list[dict]]:
    """EDM2's post-hoc EMA: of the tracked EMA (decay ``p.ema_decay``) and the power EMAs of ``p.ema_lengths`` rebuilt
    from the run's snapshots at ``step``, the one whose ``p.ema_samples`` images score the lowest FID against the
    held-out validation split (so no model is judged by an EMA length tuned for another). ``model`` keeps it as the
    weights it samples with; returns (its sigma_rel, None for the tracked EMA; every candidate's FID)."""
    index = [f for f in read_index(snapshots) if f.step <= step]
    states = {None: {k: v.clone() for k, v in model.sampling_net.state_dict().items()}}
    states.update({s: reconstruct(index, Profile(step, s)) for s in p.ema_lengths})
    scored = []
    for sigma_rel, state in states.items():
        images = sample(apply_to_model(model, state), p, p.sampler, p.sample_steps, p.ema_samples)[0]
        label = f"EMA sigma_rel {sigma_rel:g}" if sigma_rel else f"EMA decay {p.ema_decay:g}"
        scored.append({"sigma_rel": sigma_rel, "label": label, "fid_val": judge.score(images, label, True)["fid"]})
    chosen = min(scored, key=lambda c: c["fid_val"])["sigma_rel"]
    apply_to_model(model, states[chosen])
    return chosen, scored


def counted_flops(model, p: Preset, sampler: str, steps: int, trace: bool, cache: dict) -> dict:
    """Sampling FLOPs per image, counted per path and (``trace``) by tracing the sampler, checked equal."""
    s = Sampling(steps=steps, sampler=sampler, eta=0.0, seed=p.run_seed)
    f = sampling_flops(model.cpu(), trace=trace, cache=cache, sampling=s)
    if trace and f["flops_traced"] != f["flops"]:
        raise AssertionError(f"traced sampling FLOPs {f['flops_traced']} != per-path {f['flops']}")
    return f


def spectrum(images: torch.Tensor) -> list[float]:
    """Radially averaged power per band (16 bands) of the first 1000 uint8 images, as [-1, 1] floats."""
    return radial_power_spectrum(images[:1000].float() / 127.5 - 1).tolist()


def score_checkpoints(saved: list[dict], p: Preset, judge: Judge, main: torch.Tensor, gflops: float) -> list[dict]:
    """FID of every training checkpoint at ``curve_samples`` images (the one at ``steps``: the ``main`` set's first);
    ``gflops``: training GFLOPs per image."""
    n, points = min(p.curve_samples, p.num_samples), []
    for c in saved:
        images = main[:n] if c["step"] == p.steps else sample(load_model(c["path"]), p, p.sampler, p.sample_steps, n)[0]
        points.append({"step": c["step"], "labels": c["labels"], "train_seconds": c["train_seconds"],
                       "train_gflops_total": gflops * p.batch_size * c["step"], "checkpoint": c["path"],
                       **judge.curve_point(images, f"step {c['step']}")})  # fmt: skip
    return points


def score_pareto(model, p: Preset, judge: Judge, main: torch.Tensor, caches: dict) -> list[dict]:
    """FID at ``curve_samples`` images and sampling GFLOPs (per-path count; the main one was traced): DDIM at
    ``pareto_steps``, ancestral at ``pareto_ancestral`` and the main sampler (the ``main`` set's first images)."""
    n, points = min(p.curve_samples, p.num_samples), []
    settings = [*(("ddim", k) for k in p.pareto_steps), *(("ancestral", k) for k in p.pareto_ancestral)]
    for sampler, steps in dict.fromkeys([*settings, (p.sampler, p.sample_steps)]):
        flops = counted_flops(model, p, sampler, steps, trace=False, cache=caches[sampler])
        images = main[:n] if (sampler, steps) == (p.sampler, p.sample_steps) else sample(model, p, sampler, steps, n)[0]
        points.append({"sampler": sampler, "requested_steps": steps, "steps": flops["num_steps"],
                       "sample_gflops_per_image": flops["gflops"], **judge.curve_point(images, f"{sampler} {steps}")})
    return points


def reference_rows(data: ImageDataModule, judge: Judge, sizes: list[int], seed: int) -> list[dict]:
    """The floor (n seeded real train images vs the test split) and the ceiling (n clipped draws of N(0, I)), each n."""
    train, g, n_max = data.reference_images("train"), torch.Generator().manual_seed(seed), max(sizes)
    real = train[torch.randperm(len(train), generator=g)[:n_max]]
    noise = ((torch.randn(n_max, *train.shape[1:], generator=g).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    sets = {"train_vs_test": (real, "real train images vs the test split (the floor)"),
            "prior_noise": (noise, "pure prior noise N(0, I), clipped (the ceiling)")}  # fmt: skip
    return [{"run": name, "description": what, **judge.score(images[:n], name)}
            for n in sorted(set(sizes), reverse=True) for name, (images, what) in sets.items()]  # fmt: skip
