"""Feature networks for FID/KID: the offline classifier and InceptionV3, as torch-fidelity extractors and as
``(N, D)`` modules (torchmetrics, and :func:`extract_features` for the bootstrap of :mod:`.intervals`).

- ``"classifier"``: the penultimate features of the small classifier of :mod:`.classifier`, trained on the
  dataset's own labels, for offline use. Report it as e.g. "FID (fmnist-classifier features)"; it compares models
  within this project, not with papers.
- ``"inception"``: torch-fidelity's InceptionV3 (the standard FID), needs the weights file.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Literal

import torch
import torch_fidelity
from torch import Tensor, nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3, FeatureExtractorInceptionV3
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
from torchmetrics.image.fid import FrechetInceptionDistance
from tqdm.auto import tqdm

from .classifier import Classifier, load_classifier

__all__ = [
    "CLASSIFIER_EXTRACTOR",
    "FID_CLASSIFIER_LABEL",
    "INCEPTION_EXTRACTOR",
    "INCEPTION_WEIGHTS_FILE",
    "ClassifierFeatureExtractor",
    "FeatureModule",
    "build_feature_module",
    "extract_features",
    "feature_label",
    "load_png_images",
    "make_torchmetrics_fid",
    "resolve_inception_weights",
]

Extractor = Literal["classifier", "inception"]
CLASSIFIER_EXTRACTOR = "ssd-classifier"  # torch-fidelity registry name of the classifier extractor
INCEPTION_EXTRACTOR = "inception-v3-compat"
INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"


def feature_label(extractor: Extractor, metric: str = "FID", classifier_dataset: str = "fmnist") -> str:
    """How a number must be labelled in reports, e.g. ``"FID (fmnist-classifier features)"``."""
    if extractor == "classifier":
        return f"{metric} ({classifier_dataset}-classifier features)"
    if extractor == "inception":
        return f"{metric} (InceptionV3 features)"
    raise ValueError(f"unknown extractor {extractor!r}")


FID_CLASSIFIER_LABEL = feature_label("classifier")


class ClassifierFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity extractor around :class:`Classifier`; weights from ``feature_extractor_weights_path``.

    ``forward``: uint8 (N, C, H, W), C in {1, 3} -> tuple of float32 tensors in the order of
    ``features_list``: ``"features"`` (N, feature_dim) and/or ``"logits"`` (N, num_classes).
    """

    def __init__(
        self,
        name: str,
        features_list: list[str],
        feature_extractor_weights_path: str | None = None,  # file written by save_classifier
        classifier: Classifier | None = None,  # in-memory alternative to the path
        **kwargs,  # the rest of torch-fidelity's options, unused
    ) -> None:
        super().__init__(name, features_list)
        if classifier is None:
            if feature_extractor_weights_path is None:
                raise ValueError("the classifier extractor needs feature_extractor_weights_path (a classifier file)")
            classifier, _ = load_classifier(feature_extractor_weights_path)
        self.classifier = classifier
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return "features", "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return {"isc": "logits", "fid": "features", "kid": "features", "prc": "features"}[metric]

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> Tensor:
        return torch.zeros(1, 1, 32, 32, dtype=torch.uint8)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        features = self.classifier.features(x)
        out = {"features": features}
        if "logits" in self.features_list:
            out["logits"] = self.classifier.head(features)
        return tuple(out[name].float() for name in self.features_list)


if CLASSIFIER_EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:
    torch_fidelity.register_feature_extractor(CLASSIFIER_EXTRACTOR, ClassifierFeatureExtractor)


def _can_reach(host: str = "github.com", port: int = 443, timeout: float = 3.0) -> bool:
    """True if a TCP connection opens within ``timeout`` seconds (DNS included)."""
    ok: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)  # bounds a slow DNS lookup too
    thread.start()
    thread.join(timeout)
    return bool(ok)


def resolve_inception_weights(inception_weights: str | Path | None = None) -> str | None:
    """Path of the InceptionV3 weights, or None when torch-fidelity can download them.

    Raises FileNotFoundError at once when the file is not given, not in the torch hub cache,
    and github.com cannot be reached.
    """
    if inception_weights is not None:
        path = Path(inception_weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"inception_weights={str(inception_weights)!r} is not a file")
        return str(path)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE
    if cached.is_file():
        return str(cached)
    if _can_reach():
        return None
    raise FileNotFoundError(
        f"Inception FID needs the InceptionV3 weights file {INCEPTION_WEIGHTS_FILE}, which is not in the "
        f"torch hub cache ({cached}) and cannot be downloaded (no network). Download it on a machine with "
        f"network from {URL_INCEPTION_V3}, then either put it in $TORCH_HOME/hub/checkpoints/ "
        f"(here: {cached.parent}/) or pass its path with the option inception_weights=/path/to/"
        f"{INCEPTION_WEIGHTS_FILE}. Offline, extractor='classifier' works without it "
        f"(reported as {FID_CLASSIFIER_LABEL!r})."
    )


class FeatureModule(nn.Module):
    """uint8 (N, C, H, W) -> float32 (N, num_features) through a torch-fidelity extractor.

    The module torchmetrics needs for a custom feature extractor. It stays in eval mode
    whatever ``.train()`` is called with, and 1-channel images are repeated to 3 channels,
    exactly as torch-fidelity's PNG loader and :func:`compute_fid_kid` feed them.
    """

    def __init__(self, extractor: FeatureExtractorBase, num_features: int) -> None:
        super().__init__()
        self.extractor = extractor.requires_grad_(False).eval()
        self.num_features = num_features  # read by torchmetrics

    def train(self, mode: bool = True) -> FeatureModule:
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        if x.dtype != torch.uint8:
            raise TypeError(f"expected uint8 images, got {x.dtype}; convert with images.to_uint8")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.extractor(x)[0].float()


def build_feature_module(
    extractor: Extractor = "classifier",
    classifier: str | Path | Classifier | None = None,  # file from load_or_train_classifier, or the model
    inception_weights: str | Path | None = None,
) -> FeatureModule:
    """The same feature network :func:`compute_fid_kid` uses, as an ``(N, D)`` module."""
    if extractor == "classifier":
        if classifier is None:
            raise ValueError("extractor='classifier' needs classifier= (a file or a Classifier)")
        if isinstance(classifier, Classifier):
            fe = ClassifierFeatureExtractor(CLASSIFIER_EXTRACTOR, ["features"], classifier=classifier)
        else:
            fe = ClassifierFeatureExtractor(CLASSIFIER_EXTRACTOR, ["features"], str(classifier))
        return FeatureModule(fe, fe.classifier.num_features)
    if extractor == "inception":
        path = resolve_inception_weights(inception_weights)
        fe = FeatureExtractorInceptionV3(INCEPTION_EXTRACTOR, ["2048"], feature_extractor_weights_path=path)
        return FeatureModule(fe, 2048)
    raise ValueError(f"unknown extractor {extractor!r}")


def make_torchmetrics_fid(feature: nn.Module, reset_real_features: bool = True, **metric_kwargs) -> FrechetInceptionDistance:
    """torchmetrics FID over ``feature`` (e.g. :func:`build_feature_module`); update it with uint8 images.

    ``feature`` must map uint8 (N, C, H, W) to (N, D) and carry ``num_features = D``.
    Pass ``reset_real_features=False`` to keep the real statistics across ``reset()``.
    """
    if not isinstance(getattr(feature, "num_features", None), int):
        raise ValueError("feature module needs an int attribute num_features (its output dimension)")
    return FrechetInceptionDistance(
        feature=feature, reset_real_features=reset_real_features, normalize=False, **metric_kwargs
    )


def load_png_images(directory: str | Path, pattern: str = "[0-9]*.png") -> Tensor:
    """uint8 (N, C, H, W) of the PNG samples in ``directory`` (sorted; ``grid.png`` is not matched), read as
    torch-fidelity reads them but without forcing RGB: greyscale stays 1 channel (the features are the same)."""
    import numpy as np
    from PIL import Image

    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise FileNotFoundError(f"samples directory {directory} does not exist")
    files = sorted(p for p in directory.glob(pattern) if p.suffix.lower() == ".png")
    if not files:
        raise FileNotFoundError(f"no PNG samples matching {pattern!r} in {directory} (JPG samples are not accepted)")
    arrays = []
    for f in files:
        with Image.open(f) as im:
            a = np.asarray(im.convert("L") if im.mode in ("L", "1") else im.convert("RGB"))
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    return torch.from_numpy(np.stack(arrays))


@torch.no_grad()
def extract_features(feature: nn.Module, images: Tensor, batch_size: int = 500, progress: bool | str = False) -> Tensor:
    """float32 (N, D) features of uint8 images (N, C, H, W) through ``feature`` (:func:`build_feature_module`), on
    the GPU if there is one; ``progress`` (True or a label) shows a bar over the batches."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    feature = feature.to(device)
    chunks = images.split(batch_size)
    label = progress if isinstance(progress, str) else "features"
    out = [feature(c.to(device)).cpu() for c in tqdm(chunks, desc=label, unit="batch", disable=not progress, leave=False)]
    return torch.cat(out) if out else torch.zeros(0, feature.num_features)
