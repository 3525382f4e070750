"""Which columns of a source hold the images and the labels: named, or found by feature type.

The image column is the first ``datasets.Image`` feature, else a column named ``image`` or ``img`` (e.g. raw uint8
arrays), else, in a local folder, a string column of image file paths (csv/json rows), which is cast to
``datasets.Image`` with the paths made absolute. The label column is the first ``datasets.ClassLabel``, else an
integer or string column named ``label`` or ``labels``; integers and strings are cast to ``ClassLabel`` (the same
classes in every split), so that ``num_classes`` is known.
"""
from __future__ import annotations

from pathlib import Path

from .folders import IMAGE_EXTS

_IMAGE_NAMES = ("image", "img")
_LABEL_NAMES = ("label", "labels")


def _dtype(feature) -> str:
    return str(getattr(feature, "dtype", ""))


def _is_string(feature) -> bool:
    return _dtype(feature) in ("string", "large_string")


def _is_int(feature) -> bool:
    return _dtype(feature).startswith(("int", "uint"))


def _holds_paths(ds: datasets.Dataset, column: str) -> bool:
    value = next((v for v in ds.select(range(min(len(ds), 5)))[column] if v), "")
    return str(value).lower().endswith(IMAGE_EXTS)


def _image_column(ds: datasets.Dataset, folder: Path | None) -> str | None:
    import datasets
    features = ds.features
    return (next((c for c, f in features.items() if isinstance(f, datasets.Image)), None)
            or next((c for c in _IMAGE_NAMES if c in features), None)
            or next((c for c, f in features.items() if folder and _is_string(f) and _holds_paths(ds, c)), None))


def _label_column(ds: datasets.Dataset) -> str | None:
    import datasets
    features = ds.features
    return (next((c for c, f in features.items() if isinstance(f, datasets.ClassLabel)), None)
            or next((c for c in _LABEL_NAMES if c in features and (_is_int(features[c]) or _is_string(features[c]))),
                    None))


def _paths_to_images(source: datasets.DatasetDict, column: str, folder: Path) -> datasets.DatasetDict:
    """A column of image paths relative to ``folder`` -> ``datasets.Image``; every file must exist."""
    import datasets

    def absolute(paths: list[str | None]) -> dict[str, list[str | None]]:
        return {column: [str(folder / p) if p else p for p in paths]}

    source = source.map(absolute, input_columns=column, batched=True, desc=f"resolving {column} paths")
    for split, ds in source.items():
        paths = ds[column]
        missing = [p for p in paths if not p or not Path(p).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} of {len(paths)} image paths in column {column!r} of split {split!r} are not files, "
                f"e.g. {missing[0]!r} (paths are read relative to the dataset folder {folder}); fix the paths or add "
                "the files")
    return source.cast_column(column, datasets.Image())


def _to_class_labels(source: datasets.DatasetDict, column: str) -> datasets.DatasetDict:
    """Integer labels 0..n-1 or string labels -> one ``ClassLabel`` for every split."""
    import datasets
    feature = next(iter(source.values())).features[column]
    values = set().union(*(ds.unique(column) for ds in source.values()))
    if None in values:
        raise ValueError(f"label column {column!r} has empty values; fill them, or set data.label_column=null")
    if _is_string(feature):
        return source.cast_column(column, datasets.ClassLabel(names=sorted(values)))
    if min(values) < 0:
        raise ValueError(f"label column {column!r} holds {min(values)}; labels must be >= 0 (or set "
                         "data.label_column=null to train without labels)")
    return source.cast_column(column, datasets.ClassLabel(num_classes=max(values) + 1))


def find_columns(source: datasets.DatasetDict, image_column: str | None, label_column: str | None,
                 folder: Path | None) -> tuple[datasets.DatasetDict, str, str | None]:
    """``(source, image column, label column or None)``, with path strings cast to images and labels to classes.

    ``folder``: the local folder that relative image paths are read from; None for a hub dataset.
    """
    import datasets
    ds = next(iter(source.values()))
    features, columns = ds.features, list(ds.features)
    for arg, name in (("image_column", image_column), ("label_column", label_column)):
        if name is not None and name not in features:
            raise ValueError(f"data.{arg}={name!r} is not a column of the dataset; use one of {columns}")
    image = image_column or _image_column(ds, folder)
    if image is None:
        raise ValueError(f"no image column in {columns} (looked for a datasets.Image feature, a column named 'image' "
                         "or 'img', and in local csv/json files a column of image file paths); set data.image_column")
    label = label_column or _label_column(ds)
    feature = features[image]
    if _is_string(feature):
        if folder is None:
            raise ValueError(f"image column {image!r} holds strings, not images; give a dataset with a datasets.Image "
                             "column, or a local folder whose csv/json rows hold image file paths")
        source = _paths_to_images(source, image, folder)
    elif not isinstance(feature, (datasets.Image, datasets.List, datasets.LargeList, datasets.Array2D,
                                  datasets.Array3D)):
        raise ValueError(f"column {image!r} is {feature}, not images; set data.image_column to one of {columns}")
    if label is not None and not isinstance(features[label], datasets.ClassLabel):
        if not (_is_int(features[label]) or _is_string(features[label])):
            raise ValueError(f"label column {label!r} is {features[label]}, not integer or string classes; set "
                             f"data.label_column to another of {columns}")
        source = _to_class_labels(source, label)
    return source, image, label
