"""FID, KID and precision/recall through torch-fidelity, and the matching torchmetrics FID.

The feature networks (the offline classifier and InceptionV3) live in :mod:`.features`; FID and KID with bootstrap
intervals from features computed once are in :mod:`.intervals`. Names defined there are re-exported here.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
import torch_fidelity
from torch import Tensor
from torch.utils.data import Dataset
from torch_fidelity.datasets import ImagesPathDataset

from .features import (  # noqa: F401  (re-exported: the public names lived here)
    CLASSIFIER_EXTRACTOR,
    FID_CLASSIFIER_LABEL,
    INCEPTION_EXTRACTOR,
    INCEPTION_WEIGHTS_FILE,
    ClassifierFeatureExtractor,
    Extractor,
    FeatureModule,
    build_feature_module,
    feature_label,
    make_torchmetrics_fid,
    resolve_inception_weights,
)

__all__ = ["compute_fid_kid"]


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
