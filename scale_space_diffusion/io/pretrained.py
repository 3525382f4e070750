"""Save, load and share a trained model as a folder of plain files.

A ``save_pretrained`` folder holds no pickle:

    config.json         model and network class paths, ``net.config`` and the model's hyperparameters (plain JSON)
    model.safetensors   the chosen network weights (EMA by default) as ``net.*``
    README.md           a short model card (the Hub shows it)

It is rebuilt by ``<ModelClass>.from_pretrained(folder_or_hub_id)`` through :func:`~.loading.build`, the same
constructor path as a checkpoint's, and then samples the images the saved model sampled. Files a model only needs
for training (a Spectral Diffusion teacher, the authors' SSD checkpoint) are recorded as null; Spectral Diffusion's
feature adapters (``align.*``) serve distillation alone and are left out.
"""

from __future__ import annotations

import inspect
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from .settings import plain

if TYPE_CHECKING:
    from .base import DiffusionModule

CONFIG, WEIGHTS, CARD = "config.json", "model.safetensors", "README.md"
FILES = (CONFIG, WEIGHTS, CARD)
FORMAT = "scale_space_diffusion.pretrained"
FORMAT_VERSION = 1
# constructor arguments that name files only training reads; a saved folder does not need them
TRAINING_FILES = ("teacher", "official_checkpoint")
Weights = Literal["ema", "raw"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_FIX = "pass a folder written by save_pretrained or `ssd export`"


class PretrainedMixin:
    """``save_pretrained`` / ``from_pretrained`` (local folders and the Hugging Face Hub) and ``generate``, for every
    :class:`~.base.DiffusionModule`."""

    # -- saving --------------------------------------------------------------------------------
    def save_pretrained(self: DiffusionModule, folder: str | os.PathLike, weights: Weights = "ema",
                        push_to_hub: bool = False, repo_id: str | None = None) -> Path:  # fmt: skip
        """Write ``config.json``, ``model.safetensors`` and a model card to ``folder`` (created; our files replaced).

        Args:
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
        net, stored = self._pretrained_net(weights)
        config = pretrained_config(self, stored)
        try:
            text = json.dumps(config, indent=2, allow_nan=False) + "\n"
        except (TypeError, ValueError) as err:
            raise ValueError(f"the model's settings are not plain JSON ({err}); save_pretrained needs JSON values") from err
        state = {f"net.{k}": v.detach().cpu().clone().contiguous() for k, v in net.state_dict().items()}
        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(f"save_pretrained: {folder} is a file; pass a folder")
        folder.mkdir(parents=True, exist_ok=True)
        from safetensors.torch import save_file

        _atomic(folder / WEIGHTS, lambda tmp: save_file(state, str(tmp), metadata={"format": "pt", "weights": stored}))
        _atomic(folder / CONFIG, lambda tmp: tmp.write_text(text))
        _atomic(folder / CARD, lambda tmp: tmp.write_text(model_card(config, repo_id)))
        if push_to_hub:
            from huggingface_hub import HfApi

            api = HfApi()
            api.create_repo(repo_id, exist_ok=True)
            api.upload_folder(repo_id=repo_id, folder_path=str(folder), allow_patterns=list(FILES),
                              commit_message=f"{config['model_class']} ({stored} weights) from scale_space_diffusion")  # fmt: skip
        return folder

    def _pretrained_net(self: DiffusionModule, weights: str) -> tuple[torch.nn.Module, str]:
        """The network whose weights ``save_pretrained`` stores, and "ema" or "raw" for what they are."""
        if weights not in ("ema", "raw"):
            raise ValueError(f"weights={weights!r} must be 'ema' (what the model samples with) or 'raw'")
        net = self.net if weights == "raw" else self.sampling_net
        return net, "raw" if net is self.net else "ema"

    # -- loading -------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, folder_or_hub_id: str | os.PathLike, revision: str | None = None,
                        map_location: str | torch.device | None = None, **overrides: Any) -> DiffusionModule:  # fmt: skip
        """The model a ``save_pretrained`` folder (or a Hugging Face Hub repo of one) holds, in eval mode.

        ``DiffusionModule.from_pretrained`` rebuilds whatever model the folder holds; a model class (e.g.
        ``ScaleSpaceDiffusion.from_pretrained``) refuses a folder of another model.

        Args:
            folder_or_hub_id: a local folder, or a Hub repo id "owner/name" (downloaded with
                ``huggingface_hub.snapshot_download``, cached).
            revision: the Hub branch, tag or commit; None is the default branch.
            map_location: the device to move the model to, e.g. "cuda"; None keeps it on the CPU.
            **overrides: constructor arguments that replace the saved ones, e.g. ``sampling=Sampling(steps=50)``.
        """
        from .loading import build, import_class

        folder = _resolve(str(folder_or_hub_id), revision)
        config = read_config(folder)
        model_cls = import_class(config["model_class_path"])
        if not issubclass(model_cls, cls):
            raise TypeError(f"{folder_or_hub_id} holds a {model_cls.__name__}, not a {cls.__name__}; use "
                            f"{model_cls.__name__}.from_pretrained or DiffusionModule.from_pretrained")  # fmt: skip
        known = set(inspect.signature(model_cls.__init__).parameters) - {"self", "net"}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"{model_cls.__name__} has no setting {unknown}; known: {sorted(known)}")
        model = build(config["model_class_path"], config["net_class_path"], config["net_config"],
                      {**config["hparams"], **overrides})  # fmt: skip
        from safetensors.torch import load_file

        try:
            state = load_file(str(folder / WEIGHTS))
        except FileNotFoundError:
            raise FileNotFoundError(f"{folder} holds no {WEIGHTS}; {_FIX}") from None
        except Exception as err:
            raise ValueError(f"{folder / WEIGHTS} is not a readable safetensors file ({err}); export it again") from err
        try:
            model.load_checkpoint_state({"state_dict": state})  # the EMA, if configured, restarts from these weights
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0]
            raise ValueError(f"{folder / WEIGHTS} does not fit the network config.json describes ({first})") from err
        model.eval()
        return model.to(map_location) if map_location is not None else model


def pretrained_config(model: DiffusionModule, weights: str) -> dict[str, Any]:
    """What ``config.json`` records of ``model``: class paths, network config and constructor hyperparameters.

    Args:
        model: the model to describe.
        weights: "ema" or "raw", the weights stored beside it.
    """
    cls = type(model)
    known = set(inspect.signature(cls.__init__).parameters) - {"self", "net"}
    hparams = {k: v for k, v in plain(dict(model.hparams)).items() if k in known}
    hparams.update({k: None for k in TRAINING_FILES if k in hparams})
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
    missing = [k for k in ("model_class_path", "net_class_path", "net_config", "hparams") if k not in config]
    if not isinstance(config, dict) or config.get("format") != FORMAT or missing:
        raise ValueError(f"{path} is not a scale_space_diffusion model config (missing {missing or ['format']}); {_FIX}")
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path} has format_version {config['format_version']}, newer than this package reads "
                         f"({FORMAT_VERSION}); upgrade scale_space_diffusion")  # fmt: skip
    return config


def export_checkpoint(ckpt_path: str | os.PathLike, out: str | os.PathLike, weights: Weights = "ema",
                      repo_id: str | None = None) -> Path:  # fmt: skip
    """``ssd export``: the ``save_pretrained`` folder of a Lightning checkpoint.

    Args:
        ckpt_path: a .ckpt written by ``ssd fit``.
        out: the folder to write.
        weights: "ema" (what the model samples with) or "raw".
        repo_id: also upload the folder to this Hugging Face Hub repo ("owner/name").
    """
    from .loading import load_model

    model = load_model(str(ckpt_path), official_checkpoint=None)  # the weights come from the checkpoint
    return model.save_pretrained(out, weights=weights, push_to_hub=repo_id is not None, repo_id=repo_id)


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


def _atomic(path: Path, write) -> None:
    """Run ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
