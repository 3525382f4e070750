"""Sample quality: features computed once per image set, FID and KID with bootstrap intervals against the fixed
statistics of the real test split, and the two reference rows (the floor and the ceiling).

The feature network is a small classifier trained on the dataset's own labels (offline default; its numbers are
labelled e.g. "FID (fmnist-classifier features)" and compare models within one run, not with papers) or
InceptionV3 (standard FID, needs its weights file). The classifier is trained once on the train split, after
exactly the preprocessing the FID reference gets, and cached; so are the reference features.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from scale_space_diffusion.data import ImageDataModule
from scale_space_diffusion.metrics import feature_label, load_or_train_classifier, resolve_inception_weights
from scale_space_diffusion.metrics.features import build_feature_module, extract_features
from scale_space_diffusion.metrics.intervals import Reference, bootstrap_scores, reference_stats


def dataset_tag(dataset: str) -> str:
    """Short name in labels and cache keys: "fmnist" for Fashion-MNIST, else the folder or hub name."""
    name = Path(dataset).name or str(dataset)
    return "fmnist" if name in ("fashion_mnist", "fashion-mnist") else name.replace("/", "_")


def _sha1(data: bytes, n: int = 12) -> str:
    return hashlib.sha1(data).hexdigest()[:n]


@dataclass
class Judge:
    """Everything needed to score a set of generated images: the feature network and the reference statistics."""

    feature: torch.nn.Module  # uint8 (N, C, H, W) -> (N, D)
    reference: Reference  # the real test split's features and statistics
    extractor: str  # "classifier" or "inception"
    label: str  # e.g. "FID (fmnist-classifier features)"
    resamples: int = 500
    seed: int = 0
    classifier: Path | None = None
    classifier_accuracy: float | None = None  # test accuracy of the feature classifier
    class_names: list[str] | None = None
    batch_size: int = 500
    timings: dict = field(default_factory=dict)

    def features(self, images: torch.Tensor, desc: str = "features") -> torch.Tensor:
        return extract_features(self.feature, images, self.batch_size, progress=desc)

    def score(self, features: torch.Tensor) -> dict:
        """FID, KID and their intervals for features of generated images (no network pass)."""
        return bootstrap_scores(features, self.reference, resamples=self.resamples, seed=self.seed)


def labelled(data: ImageDataModule, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images of ``split`` exactly as the FID reference is made, and their labels."""
    images = data.reference_images(split)
    ds = data.splits[split]
    labels = torch.tensor(ds.ds[ds.label].to_numpy(), dtype=torch.long)
    return images, labels


def check_extractor(extractor: str, inception_weights: str | None) -> str | None:
    """Fail before any training when Inception FID cannot run (no weights file, offline)."""
    if extractor not in ("classifier", "inception"):
        raise ValueError(f"unknown extractor {extractor!r}; use 'classifier' or 'inception'")
    return resolve_inception_weights(inception_weights) if extractor == "inception" else None


def check_labels(data: ImageDataModule, extractor: str) -> None:
    """The classifier is trained on the dataset's labels: refuse, before any training, a dataset without them."""
    if extractor == "classifier" and not data.num_classes:
        raise SystemExit(f"error: dataset {data.hparams.dataset!r} has no class labels, and the offline FID "
                         "classifier is trained on them; pass --inception-weights /path/weights-inception-2015-12-05-"
                         "6726825d.pth for InceptionV3 features, or a dataset with labels (e.g. an image folder "
                         "with one sub-folder per class)")  # fmt: skip


def make_judge(data: ImageDataModule, extractor: str, cache_dir: Path, epochs: int, seed: int, resamples: int,
               inception_weights: str | None = None) -> Judge:  # fmt: skip
    weights = check_extractor(extractor, inception_weights)
    tag = dataset_tag(data.hparams.dataset)
    reference = data.reference_images("test")
    key = f"{tag}-{reference.shape[1]}x{reference.shape[-1]}"
    classifier = acc = None
    if extractor == "classifier":
        train_x, train_y = labelled(data, "train")
        test_x, test_y = labelled(data, "test")
        classifier = cache_dir / f"classifier-{key}-e{epochs}.pt"
        _, acc = load_or_train_classifier(classifier, train_x, train_y, test_x, test_y, epochs=epochs, seed=seed)
        fe_id = "clf" + _sha1(classifier.read_bytes())
    else:
        fe_id = "inception"
    feature = build_feature_module(extractor, classifier, weights).eval()
    digest = _sha1(reference.contiguous().numpy().tobytes())
    cached = cache_dir / f"features-{key}-test{len(reference)}-{digest}-{fe_id}.pt"
    if cached.is_file():
        ref_features = torch.load(cached, weights_only=True)
    else:
        ref_features = extract_features(feature, reference, progress="reference features (test split)")
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.save(ref_features, cached)
    label = feature_label(extractor, classifier_dataset=tag)
    return Judge(feature, reference_stats(ref_features), extractor, label, resamples, seed, classifier, acc,
                 data.class_names)  # fmt: skip


def reference_rows(data: ImageDataModule, judge: Judge, sizes: list[int], seed: int) -> list[dict]:
    """The floor and the ceiling, scored exactly as the models: ``n`` real train images (a seeded subset) against
    the test split, and ``n`` draws of the prior N(0, I) (clipped to [-1, 1], as samples are), for each ``n``."""
    train = data.reference_images("train")
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(train), generator=g)
    rows = []
    n_max = max(sizes)
    noise = torch.randn(n_max, *train.shape[1:], generator=g)
    noise = ((noise.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    real = train[perm[: min(n_max, len(train))]]
    feats = {"train_vs_test": judge.features(real, "features: train images"),
             "prior_noise": judge.features(noise, "features: prior noise")}  # fmt: skip
    what = {"train_vs_test": "real train images vs the test split (the floor)",
            "prior_noise": "pure prior noise N(0, I), clipped (the ceiling)"}  # fmt: skip
    for n in sorted(set(sizes), reverse=True):
        for name, f in feats.items():
            k = min(n, len(f))
            rows.append({"run": name, "description": what[name], "num_samples": k, **judge.score(f[:k])})
    return rows
