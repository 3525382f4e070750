"""How good are the 64 samples of ``make demo``? The share the benchmark's classifier assigns to a class with
confidence >= 0.9, and their FID against the test split (with a 95% bootstrap interval).

    python -m benchmarks demo                         # the newest outputs/ssd_fmnist32/samples/run_*/
    python -m benchmarks demo --samples DIR           # any folder of PNG samples
    python -m benchmarks demo --ckpt outputs/ssd_fmnist32/checkpoints/last.ckpt   # sample 64 as predict does

64 samples make a very biased FID (the covariance of 128-d features from 64 images has rank 63): compare it only
with other 64-sample FIDs, e.g. the 64 real train images printed beside it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from scale_space_diffusion.data import ImageDataModule
from scale_space_diffusion.metrics.features import load_png_images

from .presets import STANDARD
from .quality import make_judge

DEMO_SAMPLES = Path("outputs/ssd_fmnist32/samples")
CONFIDENT = 0.9
NUM = 64


def newest_run(root: Path = DEMO_SAMPLES) -> Path:
    runs = sorted(root.glob("run_*"))
    if not runs:
        raise SystemExit(f"error: no sample folder under {root}; run `make demo` first, or pass --samples DIR or --ckpt FILE")
    return runs[-1]


def sample_checkpoint(ckpt: str, n: int = NUM) -> torch.Tensor:
    """``n`` images as ``ssd predict`` draws them: image i from a generator seeded by (sampling.seed, i)."""
    from scale_space_diffusion.diffusion.rng import image_noise
    from scale_space_diffusion.images import to_uint8
    from scale_space_diffusion.io.loading import load_model

    model = load_model(ckpt)
    idx = torch.arange(n)
    return to_uint8(model.sample(image_noise(model.sampling.seed, idx), model.sample_labels(idx), progress=True)).cpu()


def score_demo(images: torch.Tensor, judge, train_images: torch.Tensor) -> dict:
    """Confident share, class counts, FID/KID with intervals, and the same FID for as many real train images."""
    clf = judge.feature.extractor.classifier
    with torch.no_grad():
        probs = clf(images).softmax(-1)
    conf, cls = probs.max(-1)
    names = judge.class_names or [str(i) for i in range(probs.shape[1])]
    confident = conf >= CONFIDENT
    counts = {names[k]: int((cls[confident] == k).sum()) for k in range(len(names))}
    s = judge.score(judge.features(images))
    real = judge.score(judge.features(train_images[: len(images)]))
    return {"num_samples": len(images), "confident_share": float(confident.float().mean()), "confidence": CONFIDENT,
            "confident_classes": counts, "mean_confidence": float(conf.mean()), "fid": s["fid"], "fid_ci95": s["fid_ci95"],
            "kid": s["kid"], "kid_ci95": s["kid_ci95"], "real_train_fid": real["fid"], "real_train_fid_ci95": real["fid_ci95"],
            "feature_extractor": judge.label, "classifier_accuracy": judge.classifier_accuracy}  # fmt: skip


def run_demo(ckpt: str | None, samples: str | None, cache_dir: Path, json_path: Path | None = None,
             idx_dir: str | None = None, data_cache_dir: str | None = None) -> dict:  # fmt: skip
    source = ckpt or str(samples or newest_run())
    images = sample_checkpoint(ckpt) if ckpt else load_png_images(source)
    if images.shape[1] == 3 and bool((images[:, :1] == images).all()):
        images = images[:, :1]  # grey PNGs saved as RGB
    kwargs = {k: v for k, v in dict(idx_dir=idx_dir, cache_dir=data_cache_dir).items() if v is not None}
    data = ImageDataModule("fashion_mnist", image_size=images.shape[-1], channels=images.shape[1], seed=0, **kwargs)
    data.prepare_data()
    data.setup()
    judge = make_judge(data, "classifier", Path(cache_dir), STANDARD.classifier_epochs, 0, STANDARD.resamples)
    out = {"source": source, **score_demo(images, judge, data.reference_images("train"))}
    lo, hi = out["fid_ci95"]
    top = ", ".join(f"{k} {v}" for k, v in sorted(out["confident_classes"].items(), key=lambda kv: -kv[1]) if v)
    print(f"{source}: {out['confident_share']:.0%} of {out['num_samples']} samples are assigned a class with confidence "
          f">= {CONFIDENT} by the benchmark's classifier (test accuracy {judge.classifier_accuracy:.4f}): {top or 'none'}")
    print(f"{judge.label} of these {out['num_samples']}: {out['fid']:.1f} [95% CI {lo:.1f}, {hi:.1f}]; "
          f"{out['num_samples']} real train images score {out['real_train_fid']:.1f} "
          f"(a {out['num_samples']}-sample FID is very biased: compare it only with other {out['num_samples']}-sample FIDs)")  # fmt: skip
    if json_path is not None:
        Path(json_path).write_text(json.dumps(out, indent=1))
    return out
