"""``ssd fid``: FID and KID of a folder of PNG samples against a folder, a hub dataset or our DataModule's split.

    ssd fid --samples outputs/ssd_fmnist32/samples/run_000 --reference fashion_mnist
    ssd fid --samples my_samples --reference path/to/my_folder --inception_weights weights-inception-2015-12-05-6726825d.pth

Features come from torch-fidelity's extractors (:mod:`.features`): InceptionV3 from a local weights file (the
standard FID, comparable with papers) when one is given or in the torch hub cache; otherwise a small classifier
trained on the reference's own labels (:mod:`.classifier`), cached, and refused below ``--min_accuracy`` on the
reference's test split. Every printed line names the features. FID and KID carry 95 % bootstrap intervals over the
samples (:mod:`.intervals`). Beside them: as many real images scored alike (the floor at that sample count) and,
with classifier features, the share of samples the classifier recognises with confidence >= 0.9. The numbers go to
``fid.json`` in the samples folder.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

BIASED_BELOW = 2048  # FID is biased upwards below about this many samples (Inception's feature dimension)
MIN_ACCURACY = 0.85  # a trained feature classifier below this test accuracy is refused
CLASSIFIER_EPOCHS = 3  # Fashion-MNIST: 0.90 test accuracy (classifier.py)
CONFIDENT = 0.9  # a sample counts as recognisable when the feature classifier gives a class this probability


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ssd fid", description="FID and KID of a folder of PNG samples against real "
                                "images, with 95%% bootstrap intervals; writes fid.json into the samples folder.")  # fmt: skip
    p.add_argument("--samples", required=True, help="a folder of PNG samples (e.g. outputs/<run>/samples/run_000)")
    p.add_argument("--reference", default="fashion_mnist", help="the real images: fashion_mnist, a local folder, "
                   "or a hub dataset name, read as `ssd fit`'s --data.dataset reads it (default: fashion_mnist)")  # fmt: skip
    p.add_argument("--split", default="test", choices=("train", "val", "test"), help="the reference split (default: test)")
    p.add_argument("--max_reference", type=int, default=None, help="use at most this many reference images")
    p.add_argument("--inception_weights", default=None, help=f"a local InceptionV3 file (weights-inception-2015-12-"
                   f"05-6726825d.pth): standard FID. Without it, the torch hub cache is tried, then classifier features")  # fmt: skip
    p.add_argument("--classifier", default=None, help="a feature classifier file (save_classifier); default: train "
                   "one on the reference's labels and cache it")  # fmt: skip
    p.add_argument("--min_accuracy", type=float, default=MIN_ACCURACY,
                   help=f"refuse a feature classifier below this test accuracy (default {MIN_ACCURACY})")
    p.add_argument("--resamples", type=int, default=500, help="bootstrap resamples for the 95%% intervals")
    p.add_argument("--seed", type=int, default=0, help="bootstrap and classifier-training seed")
    p.add_argument("--json", default=None, help="where to write the numbers (default: <samples>/fid.json)")
    p.add_argument("--idx_dir", default="/usr/share/datasets/fashion-mnist", help="Fashion-MNIST's IDX files")
    p.add_argument("--cache_dir", default=None, help="data, classifier and feature caches "
                   "(default ~/.cache/scale_space_diffusion)")  # fmt: skip
    return p


def _inception_file(path: str | None) -> str | None:
    """The Inception weights to use: the given file, else the torch hub cache's copy, else None (classifier)."""
    import torch

    from .features import INCEPTION_WEIGHTS_FILE

    if path is not None:
        if not Path(path).expanduser().is_file():
            raise FileNotFoundError(f"--inception_weights={path} is not a file; download {INCEPTION_WEIGHTS_FILE} "
                                    "on a machine with network, or leave the option out for classifier features")  # fmt: skip
        return str(Path(path).expanduser())
    cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE
    return str(cached) if cached.is_file() else None


def labelled(data, split: str):
    import torch

    images = data.reference_images(split)
    ds = data.splits[split]
    return images, torch.tensor(ds.ds[ds.label].to_numpy(), dtype=torch.long)


def dataset_tag(dataset: str) -> str:
    """The name a dataset's cached classifier and features go by: fmnist, or the folder's or hub name's."""
    name = Path(dataset).name or str(dataset)
    return "fmnist" if name in ("fashion_mnist", "fashion-mnist") else name.replace("/", "_")


def trained_classifier(data, tag: str, cache: Path, epochs: int, seed: int) -> tuple[Path, float]:
    """(file, test accuracy) of the feature classifier trained on ``data``'s train labels, cached in ``cache``."""
    from .classifier import load_or_train_classifier

    train_x, train_y = labelled(data, "train")
    path = cache / f"classifier-{tag}-{train_x.shape[1]}x{train_x.shape[-1]}-e{epochs}.pt"
    return path, load_or_train_classifier(path, train_x, train_y, *labelled(data, "test"), epochs=epochs, seed=seed)[1]


def extractor_id(classifier: Path | None) -> str:
    """"inception", or "clf" + the classifier file's sha1: features (and scores) compare only under one id."""
    import hashlib

    return "inception" if classifier is None else "clf" + hashlib.sha1(Path(classifier).read_bytes()).hexdigest()[:12]


def classifier_features(data, opts, tag: str, cache: Path):
    """(feature module, test accuracy, classifier file) of a classifier trained on the reference's labels, or read
    from ``--classifier``; refused below ``--min_accuracy``."""
    from .classifier import load_classifier
    from .features import build_feature_module

    if opts.classifier is not None:
        path = Path(opts.classifier).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"--classifier={opts.classifier} is not a file; leave it out to train one")
        accuracy = load_classifier(path)[1]["test_accuracy"]
    else:
        if not data.num_classes:
            raise ValueError(f"--reference={opts.reference} has no class labels to train the feature classifier on; "
                             "pass --inception_weights=/path/weights-inception-2015-12-05-6726825d.pth, or a "
                             "reference with labels (one sub-folder per class)")  # fmt: skip
        path, accuracy = trained_classifier(data, tag, cache, CLASSIFIER_EPOCHS, opts.seed)
    if not accuracy >= opts.min_accuracy:
        raise ValueError(f"the feature classifier {path} has test accuracy {accuracy:.3f} < --min_accuracy="
                         f"{opts.min_accuracy}: its features would not judge images; use --inception_weights, a "
                         "reference with more labelled images, or lower --min_accuracy knowingly")  # fmt: skip
    return build_feature_module("classifier", path), accuracy, path


def reference_features(feature, images, cache: Path, fe_id: str):
    """Features of the reference images, cached by their content and the extractor."""
    import hashlib

    import torch

    from .features import extract_features

    digest = hashlib.sha1(images.contiguous().numpy().tobytes()).hexdigest()[:12]
    path = cache / f"reference-{len(images)}-{digest}-{fe_id}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    features = extract_features(feature, images, progress="reference features")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(features, path)
    return features


def score(opts: argparse.Namespace) -> dict:
    """Runs ``ssd fid`` with parsed options; returns what it writes to the JSON."""
    from ..data.datamodule import ImageDataModule
    from .features import build_feature_module, extract_features, feature_label, load_png_images
    from .intervals import bootstrap_scores, reference_stats

    samples = load_png_images(opts.samples)
    if samples.shape[1] == 3 and bool((samples[:, :1] == samples).all()):
        samples = samples[:, :1]  # grey PNGs saved as RGB
    n, channels, size = len(samples), samples.shape[1], samples.shape[-1]
    if n < 2:
        raise ValueError(f"--samples={opts.samples} holds {n} PNG; FID needs at least 2 (thousands to be unbiased)")
    weights = _inception_file(opts.inception_weights)
    cache = Path(opts.cache_dir or "~/.cache/scale_space_diffusion").expanduser()
    data = ImageDataModule(opts.reference, image_size=size, channels=channels, idx_dir=opts.idx_dir,
                           cache_dir=opts.cache_dir, random_flip=False)  # fmt: skip
    data.prepare_data()
    data.setup()
    reference = data.reference_images(opts.split, opts.max_reference)
    tag, accuracy, classifier = dataset_tag(opts.reference), None, None
    if weights is not None:
        feature, label = build_feature_module("inception", inception_weights=weights), feature_label("inception")
    else:
        feature, accuracy, classifier = classifier_features(data, opts, tag, cache / "fid")
        label = feature_label("classifier", classifier_dataset=tag)
    fe_id = extractor_id(classifier)
    label = label[len("FID ("):-1]  # "fmnist-classifier features"
    ref = reference_stats(reference_features(feature, reference, cache / "fid", fe_id))
    result = bootstrap_scores(extract_features(feature, samples, progress="sample features"), ref,
                              resamples=opts.resamples, seed=opts.seed)  # fmt: skip
    floor_split = "train" if opts.split != "train" else "test"  # up to n real images the reference does not hold
    real, floor = data.reference_images(floor_split, n), None
    if len(real) >= 2:
        floor = bootstrap_scores(extract_features(feature, real, progress="real features"), ref,
                                 resamples=opts.resamples, seed=opts.seed)  # fmt: skip
    out = {"samples": str(opts.samples), "reference": opts.reference, "split": opts.split, "features": label,
           "classifier": None if classifier is None else str(classifier), "classifier_test_accuracy": accuracy,
           "biased_low_sample": n < BIASED_BELOW, **result,
           "real_floor": floor and {"split": floor_split, "num_samples": floor["num_samples"], "fid": floor["fid"]},
           "confident": None if classifier is None else confident(feature, samples, data.class_names)}  # fmt: skip
    lines = report(out)
    for line in lines:
        print(line)
    path = Path(opts.json) if opts.json else Path(opts.samples) / "fid.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"[{label}] numbers written to {path}")
    return out


def confident(feature, images, class_names: list[str] | None, threshold: float = CONFIDENT) -> dict:
    """The share of ``images`` (uint8) that the feature classifier assigns a class with probability >= ``threshold``,
    and how many per class (named, or numbered): a recognisability check that needs no thousands of samples."""
    import torch

    with torch.no_grad():  # in batches, as the features are: tens of thousands of samples at once would not fit
        probs = torch.cat([feature.extractor.classifier(x).softmax(-1) for x in images.split(500)])
    p, k = probs.max(-1)
    names, sure = class_names or [str(i) for i in range(probs.shape[-1])], k[p >= threshold]
    return {"threshold": threshold, "share": float((p >= threshold).float().mean()),
            "classes": {name: int((sure == i).sum()) for i, name in enumerate(names)}}


def report(r: dict) -> list[str]:
    """The printed lines; each names the features (``r["features"]``)."""
    tag = f"[{r['features']}]"
    what = f"{r['num_samples']} samples vs {r['num_reference']} {r['split']} images of {r['reference']}"
    lines = [f"{tag} FID {r['fid']:.3g} [95% CI {r['fid_ci95'][0]:.3g}, {r['fid_ci95'][1]:.3g}] ({what})",
             f"{tag} KID {r['kid']:.3g} [95% CI {r['kid_ci95'][0]:.3g}, {r['kid_ci95'][1]:.3g}]"]  # fmt: skip
    if r["classifier_test_accuracy"] is not None:
        lines.append(f"{tag} feature classifier {r['classifier']}: test accuracy {r['classifier_test_accuracy']:.3f}; "
                     "these numbers compare models within this project, not with papers (InceptionV3 does)")  # fmt: skip
    if floor := r["real_floor"]:
        lines.append(f"{tag} {floor['num_samples']} real {floor['split']} images score FID {floor['fid']:.3g} against "
                     "the same reference: the floor at this sample count")  # fmt: skip
    if c := r["confident"]:
        top = ", ".join(f"{k} {v}" for k, v in sorted(c["classes"].items(), key=lambda kv: -kv[1]) if v)
        lines.append(f"{tag} {c['share']:.0%} of the {r['num_samples']} samples are assigned a class with confidence "
                     f">= {c['threshold']:g} by the feature classifier: {top or 'none'}")  # fmt: skip
    if r["biased_low_sample"]:
        lines.append(f"{tag} warning: {r['num_samples']} samples < {BIASED_BELOW}: FID is biased upwards at this "
                     "size; compare it only with FIDs of the same sample count")  # fmt: skip
    return lines


def main(args: list[str]) -> dict:
    """``ssd fid`` with the options after ``fid``."""
    return score(build_parser().parse_args(args))
