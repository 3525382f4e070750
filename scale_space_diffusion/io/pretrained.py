"""Save, load and share a trained model as a folder of plain files.

A ``save_pretrained`` folder holds no pickle:

    config.json         model and network class paths, ``net.config`` and the model's hyperparameters (plain JSON)
    model.safetensors   the chosen network weights (EMA by default) as ``net.*``
    README.md           a short model card (the Hub shows it)

It is rebuilt by :func:`from_pretrained` (or ``<ModelClass>.from_pretrained(folder_or_hub_id)``) through
:func:`~.loading.build`, the same constructor path as a checkpoint's, and then samples the images the saved model
sampled. The classes it names are resolved as a checkpoint's (:mod:`.classes`). Files a model only needs for
training (its class's ``training_files``: a Spectral Diffusion teacher, the authors' SSD checkpoint) are recorded as
null; Spectral Diffusion's feature adapters (``align.*``) serve distillation alone and are left out. The weights
carry a sha256 per tensor in the safetensors metadata (:mod:`.integrity`), verified on load; files are written
with the umask's mode (0644 by default).
"""

from __future__ import annotations

import inspect
import json
import os
import re
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from ..models.base import DiffusionModule
from ..models.settings import plain
from .checkpoint_io import atomic_write
from .classes import resolve_class
from .integrity import KEY, checksums, verify as verify_tensors
from .loading import build, load_model

CONFIG, WEIGHTS, CARD = "config.json", "model.safetensors", "README.md"
FILES = (CONFIG, WEIGHTS, CARD)
FORMAT = "scale_space_diffusion.pretrained"
FORMAT_VERSION = 1
Weights = Literal["ema", "raw"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_FIX = "pass a folder written by save_pretrained or `ssd export`"


# -- saving ------------------------------------------------------------------------------------
def save_pretrained(model: DiffusionModule, folder: str | os.PathLike, weights: Weights = "ema",
                    push_to_hub: bool = False, repo_id: str | None = None) -> Path:  # fmt: skip
    """Write ``config.json``, ``model.safetensors`` and a model card to ``folder`` (created; our files replaced).

    Args:
        model: the model to save.
        folder: the folder to write.
        weights: "ema" stores the weights the model samples with (its EMA once it has started, else the raw
            weights; config.json records which), "raw" the trained weights.
        push_to_hub: also upload the folder to the Hugging Face Hub repo ``repo_id`` (created if missing; log
            in first with ``huggingface-cli login`` or set HF_TOKEN).
        repo_id: "owner/name" of the Hub repo; only with push_to_hub.

    Returns:
        The folder.
    """
    if repo_id is not None and not push_to_hub:
        raise ValueError(f"repo_id={repo_id!r} is only used with push_to_hub=True; pass both, or neither")
    if push_to_hub and not (repo_id and _HUB_ID.match(repo_id)):
        raise ValueError(f"push_to_hub=True needs repo_id='owner/name' (got {repo_id!r})")
    net, stored = _pretrained_net(model, weights)
    config = pretrained_config(model, stored)
    try:
        text = json.dumps(config, indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as err:
        raise ValueError(f"the model's settings are not plain JSON ({err}); save_pretrained needs JSON values") from err
    state = {f"net.{k}": v.detach().cpu().clone().contiguous() for k, v in net.state_dict().items()}
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"save_pretrained: {folder} is a file; pass a folder")
    folder.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save

    metadata = {"format": "pt", "weights": stored, KEY: json.dumps(checksums(state))}
    atomic_write(folder / WEIGHTS, lambda f: f.write(save(state, metadata=metadata)), "weights")
    atomic_write(folder / CONFIG, lambda f: f.write(text.encode()), "config")
    atomic_write(folder / CARD, lambda f: f.write(model_card(config, repo_id).encode()), "model card")
    if push_to_hub:
        from huggingface_hub import HfApi

        api = HfApi()
        api.create_repo(repo_id, exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=str(folder), allow_patterns=list(FILES),
                          commit_message=f"{config['model_class']} ({stored} weights) from scale_space_diffusion")  # fmt: skip
    return folder


def _pretrained_net(model: DiffusionModule, weights: str) -> tuple[nn.Module, str]:
    """The network whose weights ``save_pretrained`` stores, and "ema" or "raw" for what they are."""
    if weights not in ("ema", "raw"):
        raise ValueError(f"weights={weights!r} must be 'ema' (what the model samples with) or 'raw'")
    net = model.net if weights == "raw" else model.sampling_net
    return net, "raw" if net is model.net else "ema"


# -- loading -----------------------------------------------------------------------------------
def from_pretrained(folder_or_hub_id: str | os.PathLike, expected: type[DiffusionModule] = DiffusionModule,
                    revision: str | None = None, map_location: str | torch.device | None = None, *,
                    model_class: type[DiffusionModule] | None = None, net_class: type[nn.Module] | None = None,
                    trust_remote_code: bool = False, verify: bool = True, **overrides: Any) -> DiffusionModule:  # fmt: skip
    """The model a ``save_pretrained`` folder (or a Hugging Face Hub repo of one) holds, in eval mode.

    Args:
        folder_or_hub_id: a local folder, or a Hub repo id "owner/name" (downloaded with
            ``huggingface_hub.snapshot_download``, cached).
        expected: the model must be this class or a subclass (``ScaleSpaceDiffusion.from_pretrained`` refuses a
            folder of another model).
        revision: the Hub branch, tag or commit; None is the default branch.
        map_location: the device to move the model to, e.g. "cuda"; None keeps it on the CPU.
        model_class, net_class: the classes to rebuild, instead of those config.json names (a class of your own).
        trust_remote_code: import the modules config.json names even if they are not imported yet.
        verify: check the weights' checksums (files without them load unchecked).
        **overrides: constructor arguments that replace the saved ones, e.g. ``sampling=Sampling(steps=50)``.
    """
    folder = _resolve(str(folder_or_hub_id), revision)
    config = read_config(folder)
    source = folder / CONFIG
    model_cls = resolve_class(config["model_class_path"], "model", source, model_class, trust_remote_code)
    if not issubclass(model_cls, expected):
        raise TypeError(f"{folder_or_hub_id} holds a {model_cls.__name__}, not a {expected.__name__}; use "
                        f"{model_cls.__name__}.from_pretrained or DiffusionModule.from_pretrained")  # fmt: skip
    known = set(inspect.signature(model_cls.__init__).parameters) - {"self", "net"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"{model_cls.__name__} has no setting {unknown}; known: {sorted(known)}")
    net_cls = resolve_class(config["net_class_path"], "network", source, net_class, trust_remote_code)
    model = build(model_cls, net_cls, config["net_config"], {**config["hparams"], **overrides})
    state = _read_weights(folder / WEIGHTS, verify)
    try:
        model.load_checkpoint_state({"state_dict": state})  # the EMA, if configured, restarts from these weights
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise ValueError(f"{folder / WEIGHTS} does not fit the network config.json describes ({first})") from err
    model.eval()
    return model.to(map_location) if map_location is not None else model


def _read_weights(path: Path, verify: bool) -> dict[str, torch.Tensor]:
    """The tensors of a ``model.safetensors``, their checksums verified if it has them and ``verify``."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except FileNotFoundError:
        raise FileNotFoundError(f"{path.parent} holds no {WEIGHTS}; {_FIX}") from None
    except Exception as err:
        raise ValueError(f"{path} is not a readable safetensors file ({err}); export it again") from err
    if verify and KEY in metadata:
        verify_tensors(state, json.loads(metadata[KEY]), path)
    return state


def pretrained_config(model: DiffusionModule, weights: str) -> dict[str, Any]:
    """What ``config.json`` records of ``model``: class paths, network config and constructor hyperparameters.

    Args:
        model: the model to describe.
        weights: "ema" or "raw", the weights stored beside it.
    """
    cls = type(model)
    known = set(inspect.signature(cls.__init__).parameters) - {"self", "net"}
    hparams = {k: v for k, v in plain(dict(model.hparams)).items() if k in known}
    hparams.update({k: None for k in cls.training_files if k in hparams})
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library_version": _version(),
        "model_class": cls.__name__,
        "model_class_path": f"{cls.__module__}.{cls.__name__}",
        "net_class_path": f"{type(model.net).__module__}.{type(model.net).__name__}",
        "net_config": plain(model.net.config),
        "hparams": hparams,
        "weights": weights,
    }


def read_config(folder: Path) -> dict[str, Any]:
    """The ``config.json`` of a ``save_pretrained`` folder, checked.

    Args:
        folder: the folder.
    """
    path = folder / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{folder} holds no {CONFIG}; {_FIX}")
    try:
        config = json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); export the model again") from err
    if not isinstance(config, dict):
        raise ValueError(f"{path} holds a JSON {type(config).__name__}, not a model config; {_FIX}")
    missing = [k for k in ("model_class_path", "net_class_path", "net_config", "hparams") if k not in config]
    if config.get("format") != FORMAT or missing:
        raise ValueError(f"{path} is {_other_model(config)}, not a scale_space_diffusion model config (it lacks "
                         f"{'format' if config.get('format') != FORMAT else missing[0]}); {_FIX}")  # fmt: skip
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path} has format_version {config['format_version']}, newer than this package reads "
                         f"({FORMAT_VERSION}); upgrade scale_space_diffusion")  # fmt: skip
    return config


def _other_model(config: dict[str, Any]) -> str:
    """What a foreign ``config.json`` describes, as far as its keys tell: "a diffusers UNet2DModel config", ..."""
    if "_class_name" in config or "_diffusers_version" in config:
        return f"a diffusers {config.get('_class_name', 'model')} config (load it with diffusers)"
    if "model_type" in config or "architectures" in config:
        name = (config.get("architectures") or [config.get("model_type", "model")])[0]
        return f"a transformers {name} config (load it with transformers)"
    if "format" in config:
        return f"a config of format {config['format']!r}"
    return "another model's config"


def export_checkpoint(ckpt_path: str | os.PathLike, out: str | os.PathLike, weights: Weights = "ema",
                      repo_id: str | None = None) -> Path:  # fmt: skip
    """``ssd export``: the ``save_pretrained`` folder of a Lightning checkpoint.

    Args:
        ckpt_path: a .ckpt written by ``ssd fit``.
        out: the folder to write.
        weights: "ema" (what the model samples with) or "raw".
        repo_id: also upload the folder to this Hugging Face Hub repo ("owner/name").
    """
    model = load_model(str(ckpt_path), training_files=False)  # the weights come from the checkpoint
    return save_pretrained(model, out, weights=weights, push_to_hub=repo_id is not None, repo_id=repo_id)


def model_card(config: dict[str, Any], repo_id: str | None = None) -> str:
    """A short README.md for the folder: what it is and how to load it.

    Args:
        config: the folder's config.json.
        repo_id: the Hub repo it is pushed to, if any (shown in the loading call).
    """
    net = config["net_config"]
    source = repo_id or "path/to/this/folder"
    return (
        f"---\nlibrary_name: scale_space_diffusion\ntags:\n- diffusion\n- unconditional-image-generation\n---\n\n"
        f"# {config['model_class']}\n\n"
        f"A {config['model_class']} ({net.get('in_channels')}x{net.get('image_size')}px, "
        f"{config['weights']} weights) saved by scale_space_diffusion: `config.json` describes the model, "
        f"`model.safetensors` holds its weights.\n\n"
        f"```python\nfrom scale_space_diffusion import DiffusionModule\n\n"
        f"model = DiffusionModule.from_pretrained(\"{source}\")\n"
        f"images = model.generate(num_images=16, seed=0)  # a list of PIL images\n```\n"
    )


def _resolve(source: str, revision: str | None) -> Path:
    """A local folder as is; a Hub id "owner/name" downloaded (only our files) into the Hugging Face cache."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise NotADirectoryError(f"{source} is a file; {_FIX} (a .ckpt loads with load_model)")
    if not _HUB_ID.match(source):
        raise FileNotFoundError(f"{source!r} is neither a folder nor a Hugging Face Hub id ('owner/name'); {_FIX}")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source, revision=revision, allow_patterns=list(FILES)))
    except Exception as err:
        reason = (str(err).strip().splitlines() or [""])[0][:160]
        raise OSError(
            f"{source!r} is no local folder, and downloading it from the Hugging Face Hub failed "
            f"({type(err).__name__}{': ' + reason if reason else ''}); check the id and the connection (or log in "
            f"with `huggingface-cli login` for a private repo), or {_FIX}"
        ) from err


def _version() -> str | None:
    """This package's installed version, if it is installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("scale-space-diffusion")
    except PackageNotFoundError:
        return None
