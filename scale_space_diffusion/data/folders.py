"""A local dataset folder -> ``datasets.DatasetDict``, by what the folder holds.

Three layouts, tried in this order:

- a ``save_to_disk`` folder: ``dataset_dict.json`` (a ``DatasetDict``), or ``dataset_info.json`` and ``state.json``
  (one ``Dataset``, used as the train split); read in place with ``datasets.load_from_disk``;
- data files in the hub layout: ``.parquet``, ``.arrow``, ``.csv``, ``.json`` or ``.jsonl`` files whose names or
  folders give the split, as on the hub (``train-00000-of-00001.parquet``, ``data/test-....parquet``,
  ``<name>/validation.csv``, ``train.jsonl``; files without a split name are the train split); read with the
  matching ``datasets`` builder. csv/json rows hold image file paths relative to the folder (columns.py);
- an image folder: images, one sub-folder per class (or none), optionally in ``train/``, ``test/`` ... folders;
  read with the ``imagefolder`` builder after every image is checked once.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from .idx import cache_key

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_BUILDERS = {".parquet": "parquet", ".arrow": "arrow", ".jsonl": "json", ".json": "json", ".csv": "csv"}  # by priority
_METADATA = {"dataset_info.json", "dataset_infos.json", "dataset_dict.json", "state.json"}  # datasets' own, not rows
LAYOUTS = ("an image folder (add images, one sub-folder per class), data files in the hub layout (.parquet, .arrow, "
           ".csv, .json or .jsonl, e.g. train-00000-of-00001.parquet and test-00000-of-00001.parquet, also under "
           "data/), or a save_to_disk folder (dataset_dict.json, or dataset_info.json and state.json)")


def is_saved(folder: Path) -> bool:
    """Whether ``folder`` was written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``."""
    one = all((folder / f).is_file() for f in ("dataset_info.json", "state.json"))
    return one or (folder / "dataset_dict.json").is_file()


def _files(folder: Path) -> list[Path]:
    """Every file under ``folder``, hidden files and folders (``.git``, ``.cache``) left out."""
    return sorted(p for p in folder.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _is_data(path: Path) -> bool:
    return path.suffix.lower() in _BUILDERS and path.name not in _METADATA


def _found(files: list[Path], folder: Path) -> str:
    """"3 .txt files and 1 sub-folder": what a folder holds, for the error that it holds no dataset."""
    kinds = Counter(p.suffix.lower() or "extension-less" for p in files)
    parts = [f"{n} {kind} file{'s' * (n != 1)}" for kind, n in kinds.most_common(5)]
    subs = sum(p.is_dir() for p in folder.iterdir())
    parts += [f"{subs} sub-folder{'s' * (subs != 1)}"] if subs else []
    return ", ".join(parts) if parts else "nothing"


def load_folder(folder: Path, cache_dir: Path) -> tuple[datasets.DatasetDict, Path]:
    """The dataset in ``folder`` and where its Arrow data lives (the folder itself, or ``cache_dir/hf``)."""
    import datasets
    if is_saved(folder):
        saved = datasets.load_from_disk(str(folder))
        return (saved if isinstance(saved, datasets.DatasetDict) else datasets.DatasetDict(train=saved)), folder
    files = _files(folder)
    data = [p for p in files if _is_data(p)]
    if data:
        return _load_data_files(folder, data, cache_dir / "hf"), cache_dir / "hf"
    images = [p for p in files if p.suffix.lower() in IMAGE_EXTS]
    if not images:
        raise FileNotFoundError(f"dataset folder {folder}: found {_found(files, folder)} and no images or data files "
                                f"(also looked in sub-folders); give {LAYOUTS}")
    _check_images(folder, images, cache_dir)
    return datasets.load_dataset("imagefolder", data_dir=str(folder), cache_dir=str(cache_dir / "hf")), cache_dir / "hf"


def _load_data_files(folder: Path, data: list[Path], cache_dir: Path) -> datasets.DatasetDict:
    """Data files -> splits named as on the hub (``datasets``' own patterns), read by the commonest format's builder."""
    import datasets
    from datasets.data_files import DataFilesDict, get_data_patterns
    counts = Counter(_BUILDERS[p.suffix.lower()] for p in data)
    order = list(dict.fromkeys(_BUILDERS.values()))
    builder = max(counts, key=lambda b: (counts[b], -order.index(b)))  # a tie goes to the earlier format
    resolved = DataFilesDict.from_patterns(get_data_patterns(str(folder)), base_path=str(folder))
    splits = {str(split): [f for f in files if _is_data(Path(f)) and _BUILDERS[Path(f).suffix.lower()] == builder]
              for split, files in resolved.items()}
    splits = {split: files for split, files in splits.items() if files}
    if not splits:
        raise FileNotFoundError(
            f"dataset folder {folder}: {counts[builder]} {builder} files, but none in a split that datasets "
            f"recognises (e.g. {', '.join(sorted({p.name for p in data})[:3])}); name them train-00000-of-00001."
            f"{builder} etc., or put them in train/ and test/ sub-folders")
    try:
        return datasets.load_dataset(builder, data_files=splits, cache_dir=str(cache_dir))
    except Exception as e:
        raise ValueError(f"dataset folder {folder}: cannot read its {builder} files ({type(e).__name__}: {e}); "
                         "fix or remove the broken file") from e


def _check_images(folder: Path, files: list[Path], cache_dir: Path) -> None:
    """Fail early on a corrupt image (PIL ``verify``); a passed check is remembered."""
    from PIL import Image
    from tqdm.auto import tqdm
    marker = cache_dir / "verified" / cache_key(files, folder)
    if marker.exists():
        return
    for f in tqdm(files, desc=f"checking {folder}", disable=len(files) < 1000):
        try:
            with Image.open(f) as im:
                im.verify()
        except Exception as e:
            raise ValueError(f"corrupt image file {f}: {e}; delete or replace it") from e
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
