"""Measuring models: FLOPs and parameters, FID/KID with classifier or InceptionV3 features (and with bootstrap
intervals from features computed once), the FID callback, the frequency-bias analysis and the blockiness and
spectrum statistics of samples (``sharpness``). Names are imported
lazily: ``metrics.flops`` does not pull in torch-fidelity."""

from importlib import import_module

_EXPORTS = {
    **dict.fromkeys(["Classifier", "load_classifier", "load_or_train_classifier", "save_classifier",
                     "train_classifier"], ".classifier"),
    **dict.fromkeys(["FID_CLASSIFIER_LABEL", "INCEPTION_WEIGHTS_FILE", "FeatureModule", "build_feature_module",
                     "extract_features", "feature_label", "load_png_images", "make_torchmetrics_fid",
                     "resolve_inception_weights"], ".features"),
    "compute_fid_kid": ".fid",
    **dict.fromkeys(["Reference", "bootstrap_scores", "fid_from_features", "kid_subsets_metric", "rank_by_intervals",
                     "reference_stats", "separable"], ".intervals"),
    **dict.fromkeys(["count_flops", "count_params", "count_train_flops"], ".flops"),
    **dict.fromkeys(["param_counts", "sampling_flops", "training_flops", "training_flops_breakdown"], ".model_flops"),
    "FIDCallback": ".fid_callback",
    **dict.fromkeys(["blockiness", "power_distance", "spectrum_distance", "spectrum_log_ratio"], ".sharpness"),
}  # fmt: skip
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
