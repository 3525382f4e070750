"""Sample-quality metrics: FID/KID/precision-recall with classifier or InceptionV3 features."""

from .classifier import Classifier, load_classifier, load_or_train_classifier, save_classifier, train_classifier
from .fid import (
    FID_CLASSIFIER_LABEL,
    INCEPTION_WEIGHTS_FILE,
    FeatureModule,
    build_feature_module,
    compute_fid_kid,
    feature_label,
    make_torchmetrics_fid,
    resolve_inception_weights,
)

__all__ = [
    "FID_CLASSIFIER_LABEL",
    "INCEPTION_WEIGHTS_FILE",
    "Classifier",
    "FeatureModule",
    "build_feature_module",
    "compute_fid_kid",
    "feature_label",
    "load_classifier",
    "load_or_train_classifier",
    "make_torchmetrics_fid",
    "resolve_inception_weights",
    "save_classifier",
    "train_classifier",
]
