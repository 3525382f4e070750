"""Local dataset layouts: hub-layout data files (parquet, arrow, csv, json), save_to_disk folders, columns, errors;
and the acceptance run: a parquet folder and a save_to_disk folder each train through the CLI."""
import json
import shutil
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from scale_space_diffusion.data import ImageDataModule

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["cat", "dog"]


def grey(v: int, size: int = 16) -> Image.Image:
    return Image.fromarray(np.full((size, size), v, np.uint8))


def value(x: torch.Tensor) -> list[int]:
    """The constant grey value of each image of a batch in [-1, 1] (as stored, before preprocessing)."""
    return ((x[:, 0, 8, 8] + 1) * 127.5).round().int().tolist()


def table(values: list[int], size: int = 16) -> datasets.Dataset:
    """Constant grey images of ``values`` with labels ``values[i] % 2`` (cat, dog)."""
    ds = datasets.Dataset.from_dict({"image": [grey(v, size) for v in values], "label": [v % 2 for v in values]})
    return ds.cast_column("image", datasets.Image()).cast_column("label", datasets.ClassLabel(names=CLASSES))


TRAIN, TEST = [10, 21, 30, 41, 50, 61], [100, 111, 120]


def dm(tmp_path: Path, dataset: Path, **kw) -> ImageDataModule:
    kw = {"cache_dir": str(tmp_path / "cache"), "image_size": 16, "val_fraction": 0.0, **kw}
    m = ImageDataModule(dataset=str(dataset), **kw)
    m.prepare_data()
    m.setup("fit")
    return m


def everything(m: ImageDataModule, split: str) -> tuple[list[int], list[int]]:
    ds = m.splits[split]
    x, y = ds.__getitems__(list(range(len(ds))))
    return value(x), y.tolist()


def check_train_test(m: ImageDataModule) -> None:
    assert m.class_names == CLASSES and m.num_classes == 2
    assert everything(m, "train") == (TRAIN, [v % 2 for v in TRAIN])
    assert everything(m, "test") == (TEST, [v % 2 for v in TEST])


@pytest.mark.parametrize("where", ["", "data/", "faces/"])
def test_hub_layout_parquet(tmp_path, where):
    root = tmp_path / "hub"
    (root / where).mkdir(parents=True)
    table(TRAIN).to_parquet(str(root / where / "train-00000-of-00001.parquet"))
    table(TEST).to_parquet(str(root / where / "test-00000-of-00001.parquet"))
    (root / "README.md").write_text("---\nlicense: mit\n---\n")
    (root / "dataset_infos.json").write_text("{}")  # datasets' metadata, not rows
    check_train_test(dm(tmp_path, root))


def test_hub_layout_parquet_without_split_names_is_train(tmp_path):
    (tmp_path / "hub").mkdir()
    table(TRAIN).to_parquet(str(tmp_path / "hub" / "faces.parquet"))
    m = dm(tmp_path, tmp_path / "hub", val_fraction=0.5)
    assert sorted(everything(m, "train")[0] + everything(m, "val")[0]) == TRAIN and len(m.splits["val"]) == 3


def test_hub_layout_arrow(tmp_path):
    table(TRAIN).save_to_disk(str(tmp_path / "saved_train"))
    table(TEST).save_to_disk(str(tmp_path / "saved_test"))
    for split in ("train", "test"):  # Arrow files without save_to_disk's json: the hub's arrow layout
        (tmp_path / "hub" / split).mkdir(parents=True)
        shutil.copy(tmp_path / f"saved_{split}" / "data-00000-of-00001.arrow", tmp_path / "hub" / split / "data.arrow")
    check_train_test(dm(tmp_path, tmp_path / "hub"))


def image_files(root: Path, values: list[int]) -> list[str]:
    (root / "pics").mkdir(parents=True, exist_ok=True)
    for v in values:
        grey(v).save(root / "pics" / f"{v}.png")
    return [f"pics/{v}.png" for v in values]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json"])
def test_hub_layout_csv_json_rows_hold_image_paths(tmp_path, monkeypatch, fmt):
    root = tmp_path / "rows"
    for split, values in (("train", TRAIN), ("test", [120, 100])):  # test has cats only: labels must still agree
        rows = [{"file": p, "label": CLASSES[v % 2]} for p, v in zip(image_files(root, values), values)]
        text = {"csv": "file,label\n" + "".join(f"{r['file']},{r['label']}\n" for r in rows),
                "jsonl": "".join(json.dumps(r) + "\n" for r in rows), "json": json.dumps(rows)}[fmt]
        (root / f"{split}.{fmt}").write_text(text)
    monkeypatch.chdir(tmp_path)  # paths are relative to the dataset folder, not to the working directory
    m = dm(tmp_path, root)
    assert m.class_names == CLASSES and everything(m, "train") == (TRAIN, [v % 2 for v in TRAIN])
    assert everything(m, "test") == ([120, 100], [0, 0])


def test_named_columns(tmp_path):
    root = tmp_path / "rows"
    files = image_files(root, TRAIN)
    lines = "".join(f"{v % 3},{f},{v}\n" for f, v in zip(files, TRAIN))
    (root / "train.csv").write_text("kind,picture,score\n" + lines)
    assert dm(tmp_path, root).num_classes is None  # no column is named label, none is a ClassLabel
    m = dm(tmp_path, root, image_column="picture", label_column="kind")
    assert m.num_classes == 3 and everything(m, "train") == (TRAIN, [v % 3 for v in TRAIN])
    with pytest.raises(ValueError, match=r"data.label_column='kinds' is not a column .*\['kind', 'picture', 'score'\]"):
        dm(tmp_path, root, label_column="kinds")
    with pytest.raises(ValueError, match=r"column 'score' is Value\('int64'\), not images; set data.image_column"):
        dm(tmp_path, root, image_column="score")


def test_csv_with_a_missing_image_is_named(tmp_path):
    root = tmp_path / "rows"
    files = image_files(root, TRAIN)
    (root / "train.csv").write_text("image\n" + "".join(f"{f}\n" for f in files) + "pics/gone.png\n")
    with pytest.raises(FileNotFoundError, match=r"1 of 7 image paths in column 'image' .*pics/gone.png.*relative to"):
        dm(tmp_path, root)


def test_save_to_disk_dataset_dict_and_dataset(tmp_path):
    datasets.DatasetDict(train=table(TRAIN), test=table(TEST)).save_to_disk(str(tmp_path / "dict"))
    m = dm(tmp_path, tmp_path / "dict")
    check_train_test(m)
    assert m.location == tmp_path / "dict"  # read in place, not copied to the cache
    table(TRAIN).save_to_disk(str(tmp_path / "one"))  # a Dataset: the train split
    m = dm(tmp_path, tmp_path / "one", val_fraction=0.5)
    assert sorted(everything(m, "train")[0] + everything(m, "val")[0]) == TRAIN and m.num_classes == 2


def test_raw_array_images_found_by_name(tmp_path):
    x = np.stack([np.full((16, 16), v, np.uint8) for v in TRAIN])
    datasets.Dataset.from_dict({"img": x.tolist(), "labels": [v % 2 for v in TRAIN]}).save_to_disk(str(tmp_path / "a"))
    m = dm(tmp_path, tmp_path / "a")
    assert everything(m, "train") == (TRAIN, [v % 2 for v in TRAIN]) and m.class_names == ["0", "1"]


def test_folder_of_other_files_names_what_it_found(tmp_path):
    (tmp_path / "notes" / "sub").mkdir(parents=True)
    for i in range(3):
        (tmp_path / "notes" / f"{i}.txt").write_text("no images")
    with pytest.raises(FileNotFoundError) as e:
        dm(tmp_path, tmp_path / "notes")
    message = str(e.value)
    assert "found 3 .txt files, 1 sub-folder and no images or data files" in message
    for layout in ("image folder", "train-00000-of-00001.parquet", "save_to_disk", "dataset_dict.json"):
        assert layout in message


# --- acceptance: both layouts train through the CLI ----------------------------------------------------------------

def parquet_folder(root: Path) -> Path:
    (root / "data").mkdir(parents=True)
    table(list(range(0, 240, 30))).to_parquet(str(root / "data" / "train-00000-of-00001.parquet"))
    table(list(range(5, 240, 60))).to_parquet(str(root / "data" / "test-00000-of-00001.parquet"))
    return root


def saved_folder(root: Path) -> Path:
    datasets.DatasetDict(train=table(list(range(0, 240, 30))), test=table([5, 65])).save_to_disk(str(root))
    return root


@pytest.mark.parametrize("make, n_test", [(parquet_folder, 4), (saved_folder, 2)], ids=["parquet", "save_to_disk"])
def test_cli_trains_on_a_local_layout(tmp_path, monkeypatch, make, n_test):
    from scale_space_diffusion.cli import run

    monkeypatch.setattr(sys, "argv", ["ssd"])  # LightningCLI warns when args and argv both exist
    monkeypatch.chdir(tmp_path)
    folder = make(tmp_path / "dataset")
    cli = run(["fit", f"--config={ROOT / 'configs/smoke/ddpm_tiny.yaml'}", f"--data.dataset={folder}",
               "--trainer.fast_dev_run=1", f"--trainer.default_root_dir={tmp_path}",
               f"--data.cache_dir={tmp_path / 'cache'}", "--trainer.callbacks=[]",
               "--trainer.enable_checkpointing=false"])
    assert cli.trainer.global_step == 1
    assert cli.datamodule.num_classes == 2 and len(cli.datamodule.splits["test"]) == n_test  # its own test split
