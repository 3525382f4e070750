"""``python -m benchmarks demo``: the share of `make demo`'s 64 samples the suite's classifier assigns a class with
confidence >= 0.9, and their FID with a 95% interval next to that of as many real train images (64-sample FIDs are
very biased: compare them only with each other)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from scale_space_diffusion.data import ImageDataModule
from scale_space_diffusion.metrics.features import load_png_images

from .presets import STANDARD
from .quality import make_judge

CONFIDENT = 0.9


def run_demo(samples: str | None, cache_dir: Path, json_path: Path | None = None, idx_dir: str | None = None,
             data_cache_dir: str | None = None) -> dict:  # fmt: skip
    runs = sorted(Path("outputs/ssd_fmnist32/samples").glob("run_*"))
    if samples is None and not runs:
        raise SystemExit("error: no outputs/ssd_fmnist32/samples/run_*; run `make demo` first, or pass --samples DIR")
    source = str(samples or runs[-1])
    images = load_png_images(source)
    if images.shape[1] == 3 and bool((images[:, :1] == images).all()):
        images = images[:, :1]  # grey PNGs saved as RGB
    kwargs = {k: v for k, v in dict(idx_dir=idx_dir, cache_dir=data_cache_dir).items() if v is not None}
    data = ImageDataModule("fashion_mnist", image_size=images.shape[-1], channels=images.shape[1], seed=0, **kwargs)
    data.prepare_data()
    data.setup()
    judge = make_judge(data, "classifier", Path(cache_dir), STANDARD.classifier_epochs, 0, STANDARD.resamples)
    with torch.no_grad():
        conf, cls = judge.feature.extractor.classifier(images).softmax(-1).max(-1)
    names, n = judge.class_names, len(images)
    counts = {names[k]: int((cls[conf >= CONFIDENT] == k).sum()) for k in range(len(names))}
    s = judge.score(judge.features(images))
    real = judge.score(judge.features(data.reference_images("train")[:n]))
    out = {"source": source, "num_samples": n, "confident_share": float((conf >= CONFIDENT).float().mean()),
           "confidence": CONFIDENT, "confident_classes": counts, "mean_confidence": float(conf.mean()),
           **{k: s[k] for k in ("fid", "fid_ci95", "kid", "kid_ci95")}, "real_train_fid": real["fid"],
           "real_train_fid_ci95": real["fid_ci95"], "feature_extractor": judge.label,
           "classifier_accuracy": judge.classifier_accuracy}  # fmt: skip
    top = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]) if v)
    print(f"{source}: {out['confident_share']:.0%} of {n} samples are assigned a class with confidence >= {CONFIDENT} "
          f"by the benchmark's classifier (test accuracy {judge.classifier_accuracy:.4f}): {top or 'none'}")
    print(f"{judge.label} of these {n}: {s['fid']:.1f} [95% CI {s['fid_ci95'][0]:.1f}, {s['fid_ci95'][1]:.1f}]; {n} real "
          f"train images score {real['fid']:.1f} (a {n}-sample FID is very biased: compare it only with other {n}-sample FIDs)")
    if json_path is not None:
        Path(json_path).write_text(json.dumps(out, indent=1))
    return out
