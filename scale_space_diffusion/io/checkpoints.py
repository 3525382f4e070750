"""Reading checkpoint files: clear refusals, checksums verified, ``last``, and (for the command line) the config
winning over the checkpoint for what only changes training or sampling (the model class's ``run_settings``)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any, Sequence

import torch

from ..models.base import DiffusionModule
from .classes import resolve_class
from .integrity import KEY, verify as verify_tensors
from .legacy import upgrade_checkpoint, upgrade_hparams


def read_checkpoint(path: str | os.PathLike, what: str = "--ckpt_path", mmap: bool = True,
                    verify: bool = True) -> dict[str, Any]:  # fmt: skip
    """The checkpoint at ``path`` (weights only, today's layout), or a one-line error naming the file and what is
    wrong with it; ``verify`` checks its tensor checksums, if it has them."""
    path = Path(path)
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.ckpt"))
        raise IsADirectoryError(f"{what}={path} is a folder; pass a .ckpt file in it "
                                f"({', '.join(found) if found else 'it holds none'})")  # fmt: skip
    if not path.is_file():
        raise FileNotFoundError(f"{what}={path} does not exist; pass an existing .ckpt file (e.g. "
                                "<run>/checkpoints/last.ckpt, or --ckpt_path=last with the training config)")  # fmt: skip
    if path.stat().st_size == 0:
        raise ValueError(f"{what}={path} is empty (0 bytes), not a checkpoint: a save cut short? Use another file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:
        with open(path, "rb") as f:
            zipped = f.read(4) == b"PK\x03\x04"
        if zipped and not zipfile.is_zipfile(path):
            raise ValueError(f"{what}={path} is truncated (an incomplete write); use an earlier checkpoint") from err
        if zipped:
            raise ValueError(f"{what}={path} is a corrupt checkpoint ({type(err).__name__}); use another") from err
        raise ValueError(f"{what}={path} is not a PyTorch checkpoint; pass a .ckpt written by `ssd fit`") from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"{what}={path} is not a Lightning checkpoint (no state_dict); pass a .ckpt from `ssd fit`")
    if verify and KEY in ckpt:
        verify_tensors(ckpt, ckpt[KEY], path)
    return upgrade_checkpoint(ckpt)


def resolve(ckpt_path: str, callbacks: Sequence[Any], root: str | os.PathLike = ".") -> str:
    """``last`` is the newest ``last*.ckpt`` or ``interrupted.ckpt`` of the run: in the config's ModelCheckpoint
    folders, else where Lightning puts them by default (``<root>/checkpoints``, ``<root>/*/version_*/checkpoints``)."""
    if ckpt_path != "last":
        return ckpt_path
    dirs = [Path(d) for cb in callbacks if _class_name(cb) == "ModelCheckpoint" and (d := _init_args(cb).get("dirpath"))]
    dirs = dirs or [Path(root) / "checkpoints", *Path(root).glob("*/version_*/checkpoints")]
    found = [p for d in dirs for p in d.glob("*.ckpt") if p.stem.startswith(("last", "interrupted"))]
    if not found:
        raise FileNotFoundError(f"--ckpt_path=last found no last.ckpt or interrupted.ckpt in {[str(d) for d in dirs]}; "
                                "run `fit` with this config first or pass a checkpoint file")  # fmt: skip
    return str(max(found, key=lambda p: p.stat().st_mtime))


def checkpoint_dirs(trainer) -> list[str]:
    """The folders a Trainer's ModelCheckpoints write to (before their setup resolves them)."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    default = os.path.join(trainer.default_root_dir, "checkpoints") if trainer.logger is None else None
    dirs = [cb.dirpath or default for cb in trainer.callbacks if isinstance(cb, ModelCheckpoint)]
    return [d for d in dirs if d]


def running_pid(folder: str | os.PathLike) -> int | None:
    """The pid of another live run that holds ``folder`` (its lock file, run_lock.py), or None."""
    from ..run_lock import live_owner

    holder = live_owner(folder)
    return None if holder is None else holder.pid


def refuse_owned_folders(dirs: Sequence[str]) -> None:
    """A new ``fit`` must not write into a folder that a running run holds or another run's checkpoints fill."""
    for d in dirs:
        pid = running_pid(d)
        if pid is not None:
            raise FileExistsError(f"{d} belongs to a running fit (pid {pid}); give this run its own folder "
                                  "(--trainer.default_root_dir and the ModelCheckpoint dirpath)")  # fmt: skip
        held = sorted(p.name for p in Path(d).glob("*.ckpt")) if Path(d).is_dir() else []
        if held:
            raise FileExistsError(
                f"{d} already holds checkpoints of another run ({', '.join(held[:3])}{', ...' if len(held) > 3 else ''}); "
                "resume it with --ckpt_path=last, or give this run its own folder (--trainer.default_root_dir and "
                "the ModelCheckpoint dirpath), or remove them"
            )


def merged_model(path: str, given, argv: Sequence[str]) -> tuple[dict, list[str]]:
    """The model config for a run from checkpoint ``path``: its definition from the checkpoint, the model class's
    ``run_settings`` from ``given`` (the parsed config), its ``training_files`` that are no run settings unset (the
    weights come from the checkpoint). A definition option named on the command line that differs is refused.
    Returns (``{"class_path", "init_args"}``, notes for the log). The Trainer's ``AtomicCheckpointIO`` verifies the
    file's checksums when it restores it."""
    ckpt = read_checkpoint(path, verify=False)
    saved_cls = ckpt.get("model_class_path") or ckpt.get("hyper_parameters", {}).get("_class_path")
    given_cls = given.class_path if given is not None else saved_cls
    if saved_cls and given_cls and saved_cls.rsplit(".", 1)[-1] != given_cls.rsplit(".", 1)[-1]:
        raise ValueError(f"--ckpt_path={path} holds a {saved_cls.rsplit('.', 1)[-1]}, but the config's model is "
                         f"{given_cls}; pass the config it was trained with, or --model={saved_cls.rsplit('.', 1)[-1]}")  # fmt: skip
    cls = resolve_class(given_cls, "model", f"--ckpt_path={path}") if given_cls else DiffusionModule
    settings, files = cls.run_settings, cls.training_files
    saved = {k: v for k, v in upgrade_hparams(ckpt.get("hyper_parameters", {})).items() if not k.startswith("_")}
    if "net_config" in ckpt:
        saved["net"] = {"class_path": ckpt["net_class_path"], "init_args": ckpt["net_config"]}
    wanted = _plain(given.init_args) if given is not None else {}
    explicit = {_option_key(a) for a in argv if a.startswith("--model.")}
    out, changed, kept = {}, [], []
    for key in dict.fromkeys([*saved, *wanted]):
        mine, theirs = wanted.get(key, saved.get(key)), saved.get(key, wanted.get(key))
        if key in settings:
            out[key] = mine
            changed += [f"{key}{sub}: {a} -> {b}" for sub, a, b in _differences(theirs, mine)]
        elif key in files:
            out[key] = None  # the weights come from the checkpoint
        else:
            out[key] = theirs
            for sub, a, b in _differences(theirs, mine):
                where = f"{key}{sub}"
                if any(where == e or where.startswith(e + ".") or e.startswith(where + ".") for e in explicit):
                    raise ValueError(f"--model.init_args.{where}={b} contradicts the checkpoint {path}, whose model has "
                                     f"{where}={a}; the model's definition comes from the checkpoint: drop the option, "
                                     "or train a new model with it")  # fmt: skip
                kept.append(f"{where}={a} (the config has {b})")
    notes = []
    if changed:
        notes.append(f"changed from the checkpoint by the config or command line: {'; '.join(changed)}")
    if kept:
        notes.append(f"the checkpoint's model definition wins: {'; '.join(kept)}")
    return {"class_path": given_cls or saved_cls, "init_args": out}, notes


def _option_key(arg: str) -> str:
    key = arg.split("=", 1)[0][len("--model."):]
    return key[len("init_args."):] if key.startswith("init_args.") else key


def _class_name(cb: Any) -> str:
    path = cb.get("class_path", "") if isinstance(cb, dict) else getattr(cb, "class_path", type(cb).__name__)
    return str(path).rsplit(".", 1)[-1]


def _init_args(cb: Any) -> dict:
    args = cb.get("init_args", {}) if isinstance(cb, dict) else getattr(cb, "init_args", None)
    return _plain(args) if args is not None else vars(cb)


def _plain(value: Any) -> Any:
    """Namespaces, dataclasses and tuples as plain dicts and lists, for comparison and re-parsing."""
    from dataclasses import fields, is_dataclass

    if hasattr(value, "as_dict"):
        value = value.as_dict()
    if is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in fields(value) if f.init}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k != "__path__"}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _differences(a: Any, b: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(".sub.key", a, b) for every leaf where ``a`` and ``b`` differ; class paths compare by class name."""
    a, b = _plain(a), _plain(b)
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in dict.fromkeys([*a, *b]):
            if k == "class_path":
                if str(a.get(k, "")).rsplit(".", 1)[-1] != str(b.get(k, "")).rsplit(".", 1)[-1]:
                    out.append((f"{prefix}.{k}", a.get(k), b.get(k)))
            elif k in a and k in b:
                out += _differences(a[k], b[k], f"{prefix}.{k}")
        return out
    return [] if a == b else [(prefix, a, b)]
