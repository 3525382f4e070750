"""The FID judge: a feature network (a classifier trained on the dataset's labels, offline default, or InceptionV3)
and the real test split's cached statistics; FID/KID with bootstrap intervals, and the floor and ceiling rows."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from scale_space_diffusion.data import ImageDataModule
from scale_space_diffusion.metrics import feature_label, load_or_train_classifier, resolve_inception_weights
from scale_space_diffusion.metrics.features import build_feature_module, extract_features
from scale_space_diffusion.metrics.intervals import Reference, bootstrap_scores, reference_stats
from scale_space_diffusion.metrics.score import labelled, reference_features


@dataclass
class Judge:
    feature: torch.nn.Module  # uint8 (N, C, H, W) -> (N, D)
    reference: Reference  # the real test split's features and statistics
    extractor: str  # "classifier" or "inception"
    label: str  # e.g. "FID (fmnist-classifier features)"
    resamples: int
    seed: int
    classifier_accuracy: float | None  # test accuracy of the feature classifier
    class_names: list[str] | None

    def features(self, images: torch.Tensor, desc: str = "features") -> torch.Tensor:
        return extract_features(self.feature, images, 500, progress=desc)

    def score(self, features: torch.Tensor) -> dict:
        """FID, KID and their 95% intervals for features of generated images."""
        return bootstrap_scores(features, self.reference, resamples=self.resamples, seed=self.seed)


def check_extractor(extractor: str, inception_weights: str | None) -> str | None:
    """Fail before any training when Inception FID cannot run (no weights file, offline)."""
    return resolve_inception_weights(inception_weights) if extractor == "inception" else None


def check_labels(data: ImageDataModule, extractor: str) -> None:
    """The classifier is trained on the dataset's labels: refuse a dataset without them before any training."""
    if extractor == "classifier" and not data.num_classes:
        raise SystemExit(f"error: dataset {data.hparams.dataset!r} has no class labels, and the offline FID classifier "
                         "is trained on them; pass --inception-weights /path/weights-inception-2015-12-05-6726825d.pth, "
                         "or a dataset with labels (e.g. an image folder with one sub-folder per class)")  # fmt: skip


def make_judge(data: ImageDataModule, extractor: str, cache_dir: Path, epochs: int, seed: int, resamples: int,
               inception_weights: str | None = None) -> Judge:  # fmt: skip
    weights = check_extractor(extractor, inception_weights)
    name = Path(data.hparams.dataset).name or str(data.hparams.dataset)
    tag = "fmnist" if name in ("fashion_mnist", "fashion-mnist") else name.replace("/", "_")
    reference = data.reference_images("test")
    classifier = acc = None
    fe_id = "inception"
    if extractor == "classifier":
        classifier = cache_dir / f"classifier-{tag}-{reference.shape[1]}x{reference.shape[-1]}-e{epochs}.pt"
        _, acc = load_or_train_classifier(classifier, *labelled(data, "train"), *labelled(data, "test"), epochs=epochs,
                                          seed=seed)  # fmt: skip
        fe_id = "clf" + hashlib.sha1(classifier.read_bytes()).hexdigest()[:12]
    feature = build_feature_module(extractor, classifier, weights).eval()
    ref = reference_stats(reference_features(feature, reference, cache_dir, f"{tag}-{fe_id}"))
    label = feature_label(extractor, classifier_dataset=tag)
    return Judge(feature, ref, extractor, label, resamples, seed, acc, data.class_names)


def reference_rows(data: ImageDataModule, judge: Judge, sizes: list[int], seed: int) -> list[dict]:
    """The floor (n seeded real train images vs the test split) and the ceiling (n clipped draws of N(0, I)), each n."""
    train = data.reference_images("train")
    g, n_max = torch.Generator().manual_seed(seed), max(sizes)
    real = train[torch.randperm(len(train), generator=g)[:n_max]]
    noise = ((torch.randn(n_max, *train.shape[1:], generator=g).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    feats = {"train_vs_test": judge.features(real, "features: train images"),
             "prior_noise": judge.features(noise, "features: prior noise")}  # fmt: skip
    what = {"train_vs_test": "real train images vs the test split (the floor)",
            "prior_noise": "pure prior noise N(0, I), clipped (the ceiling)"}  # fmt: skip
    return [{"run": name, "description": what[name], "num_samples": min(n, len(f)), **judge.score(f[: min(n, len(f))])}
            for n in sorted(set(sizes), reverse=True) for name, f in feats.items()]  # fmt: skip
