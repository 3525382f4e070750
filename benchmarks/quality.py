"""Sample quality: FID and KID through torch-fidelity against the real test split.

The feature network is the small Fashion-MNIST classifier (offline default; its numbers are
labelled "FID (fmnist-classifier features)" and compare models within one run, not with papers)
or InceptionV3 (standard FID, needs its weights file). The classifier is trained once on the
train split, after exactly the preprocessing the FID reference gets, and cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from scale_space_diffusion.data import ImageDataModule
from scale_space_diffusion.metrics import compute_fid_kid, feature_label, load_or_train_classifier, resolve_inception_weights


@dataclass
class Judge:
    """Everything needed to score a directory of samples."""

    reference: torch.Tensor  # uint8 (M, C, S, S), the real test split
    reference_key: str  # names the cached reference statistics (with the content hash and extractor)
    extractor: str  # "classifier" or "inception"
    label: str  # e.g. "FID (fmnist-classifier features)"
    cache_dir: Path
    classifier: Path | None = None
    classifier_accuracy: float | None = None  # test accuracy of the feature classifier
    inception_weights: str | None = None

    def score(self, samples: Path) -> dict:
        m = compute_fid_kid(samples, self.reference, extractor=self.extractor, classifier=self.classifier,
                            inception_weights=self.inception_weights, cache_dir=self.cache_dir / "fidelity",
                            reference_key=self.reference_key, precision_recall=True)  # fmt: skip
        return {"fid": m["fid"], "kid": m["kid_mean"], "kid_std": m["kid_std"], "precision": m["precision"],
                "recall": m["recall"], "kid_subset_size": m["kid_subset_size"], "num_reference": m["n_reference"]}  # fmt: skip


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


def make_judge(data: ImageDataModule, extractor: str, cache_dir: Path, epochs: int, seed: int,
               inception_weights: str | None = None) -> Judge:  # fmt: skip
    weights = check_extractor(extractor, inception_weights)
    reference = data.reference_images("test")
    size = reference.shape[-1]
    key = f"{Path(data.hparams.dataset).name}-test-{size}"
    judge = Judge(reference, key, extractor, feature_label(extractor), cache_dir, inception_weights=weights)
    if extractor == "classifier":
        train_x, train_y = labelled(data, "train")
        test_x, test_y = labelled(data, "test")
        path = cache_dir / f"classifier-{key.replace('-test', '')}.pt"
        _, acc = load_or_train_classifier(path, train_x, train_y, test_x, test_y, epochs=epochs, seed=seed)
        judge.classifier, judge.classifier_accuracy = path, acc
    return judge
