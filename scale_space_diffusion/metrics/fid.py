"""FID, KID and precision/recall through torch-fidelity, and the matching torchmetrics FID.

Two feature extractors, each the same network in both libraries:
- ``"classifier"``: the penultimate features of the small MNIST-like classifier
  (:mod:`.classifier`), for offline use. Report it as "FID (fmnist-classifier features)";
  it compares models within this project, not with papers.
- ``"inception"``: torch-fidelity's InceptionV3 (the standard FID), needs the weights file.
"""

from __future__ import annotations

import hashlib
import socket
import threading
from pathlib import Path
from typing import Literal

import torch
import torch_fidelity
from torch import Tensor, nn
from torch.utils.data import Dataset
from torch_fidelity.datasets import ImagesPathDataset
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3, FeatureExtractorInceptionV3
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
from torchmetrics.image.fid import FrechetInceptionDistance

from .classifier import Classifier, load_classifier

__all__ = [
    "CLASSIFIER_EXTRACTOR",
    "FID_CLASSIFIER_LABEL",
    "INCEPTION_WEIGHTS_FILE",
    "ClassifierFeatureExtractor",
    "FeatureModule",
    "build_feature_module",
    "compute_fid_kid",
    "feature_label",
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


class _UInt8Images(Dataset):
    """uint8 (N, C, H, W) -> items (3, H, W), as torch-fidelity's loader gives PNGs (converted to RGB)."""

    def __init__(self, images: Tensor) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected uint8 (N, 1 or 3, H, W) images, got {images.dtype} {tuple(images.shape)}")
        self.images = images.cpu()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Tensor:
        return self.images[i].expand(3, -1, -1).contiguous()


def _sha1(data: bytes, n: int = 12) -> str:
    return hashlib.sha1(data).hexdigest()[:n]


def _sample_files(directory: Path, pattern: str) -> list[str]:
    if not directory.is_dir():
        raise FileNotFoundError(f"samples directory {directory} does not exist")
    files = sorted(str(p) for p in directory.glob(pattern) if p.suffix.lower() == ".png")
    if not files:
        raise FileNotFoundError(f"no PNG samples matching {pattern!r} in {directory} (JPG samples are not accepted)")
    return files


def compute_fid_kid(
    samples: str | Path | Tensor,  # directory of PNG samples, or uint8 (N, C, H, W)
    reference: Tensor,  # uint8 (M, C, H, W), e.g. the real test split
    extractor: Extractor = "classifier",
    classifier: str | Path | None = None,  # classifier file (from load_or_train_classifier)
    inception_weights: str | Path | None = None,  # local weights-inception-2015-12-05-6726825d.pth
    cache_dir: str | Path | None = None,  # reference features/statistics; None: $TORCH_HOME/fidelity_cache
    reference_key: str | None = None,  # e.g. "fashion_mnist-test-32"; None disables the cache
    kid_subsets: int = 100,
    precision_recall: bool = True,  # k-NN precision/recall (Kynkaanniemi et al. 2019), k = 3
    seed: int = 2020,  # KID subset sampling
    batch_size: int = 250,
    samples_glob: str = "[0-9]*.png",  # sample files as the prediction writer names them; skips grid.png
    verbose: bool = False,
) -> dict[str, float]:
    """FID, KID (and precision/recall) of ``samples`` against ``reference`` through torch-fidelity.

    Returns ``fid``, ``kid_mean``, ``kid_std``, ``precision``, ``recall``, ``n_samples``,
    ``n_reference``, ``kid_subset_size`` (= min(1000, N, M)). Label the numbers with
    :func:`feature_label`. The reference features are cached under a name made of
    ``reference_key``, the reference's shape and content hash and the extractor's identity, so
    a changed reference or classifier never reads stale statistics.
    """
    # Resolve the feature network first: a missing Inception file fails before any work.
    if extractor == "inception":
        fe_name, weights = INCEPTION_EXTRACTOR, resolve_inception_weights(inception_weights)
        fe_id = "inception"
    elif extractor == "classifier":
        if classifier is None or not Path(classifier).is_file():
            raise FileNotFoundError(f"extractor='classifier' needs classifier= an existing file, got {classifier!r}")
        fe_name, weights = CLASSIFIER_EXTRACTOR, str(classifier)
        fe_id = "clf" + _sha1(Path(classifier).read_bytes())
    else:
        raise ValueError(f"unknown extractor {extractor!r}")

    if isinstance(samples, Tensor):
        input1, n1 = _UInt8Images(samples), len(samples)
    else:  # read as torch-fidelity reads a directory: PIL, converted to RGB
        files = _sample_files(Path(samples).expanduser(), samples_glob)
        input1, n1 = ImagesPathDataset(files), len(files)
    input2, n2 = _UInt8Images(reference), len(reference)
    kid_subset_size = min(1000, n1, n2)

    cache_name = None
    if reference_key is not None:
        shape = "x".join(map(str, reference.shape))
        cache_name = f"{reference_key}-{shape}-{_sha1(reference.cpu().contiguous().numpy().tobytes())}-{fe_id}"

    m = torch_fidelity.calculate_metrics(
        input1=input1,
        input2=input2,
        fid=True,
        kid=True,
        prc=precision_recall,
        feature_extractor=fe_name,
        feature_extractor_weights_path=weights,
        kid_subsets=kid_subsets,
        kid_subset_size=kid_subset_size,
        rng_seed=seed,
        cache=cache_name is not None,
        cache_root=None if cache_dir is None else str(cache_dir),
        input2_cache_name=cache_name,
        cuda=torch.cuda.is_available(),
        batch_size=batch_size,
        save_cpu_ram=True,  # no DataLoader worker processes; batched precision/recall distances
        verbose=verbose,
    )
    out = {
        "fid": m[torch_fidelity.KEY_METRIC_FID],
        "kid_mean": m[torch_fidelity.KEY_METRIC_KID_MEAN],
        "kid_std": m[torch_fidelity.KEY_METRIC_KID_STD],
        "n_samples": n1,
        "n_reference": n2,
        "kid_subset_size": kid_subset_size,
    }
    if precision_recall:
        out["precision"] = m[torch_fidelity.KEY_METRIC_PRECISION]
        out["recall"] = m[torch_fidelity.KEY_METRIC_RECALL]
    return out
