"""Load the authors' released Scale Space Diffusion checkpoints (github.com/prateksha/ScaleSpaceDiffusion).

Their Flexi-UNet is openai/guided-diffusion's UNet with adapters; its keys look like
``input_blocks.N.*``, ``middle_block.*``, ``output_blocks.N.*``, ``out.*``, ``time_embed.*`` and
``adapters_in/out.<res>.*``. :func:`to_ours` renames them onto :class:`FlexiUNet` (blocks keyed
by resolution), :func:`to_official` goes back, and :func:`infer_config` reads the architecture
off the tensor shapes and the file name.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import Tensor

from .flexi_unet import FlexiUNet

_RES = {"in_layers.0": "norm0", "in_layers.2": "conv0", "emb_layers.1": "emb", "out_layers.0": "norm1",
        "out_layers.3": "conv1", "skip_connection": "skip"}  # fmt: skip
_ATTN = {"norm": "norm", "qkv": "qkv", "proj_out": "proj"}
_MID = {"0": "res0", "1": "attn", "2": "res1"}

# Official UNet-level layouts of the released models (image size -> channel_mult).
OFFICIAL_CHANNEL_MULT = {32: (1, 2, 4), 64: (1, 2, 3, 4), 128: (1, 1, 2, 3, 4), 256: (1, 1, 2, 2, 4, 4)}


def _rename(suffix: str, table: dict[str, str]) -> str:
    for old, new in table.items():
        if suffix == old or suffix.startswith(old + "."):
            return new + suffix[len(old) :]
    raise KeyError(suffix)


def key_map(net: FlexiUNet) -> dict[str, str]:
    """Official parameter name prefix -> ours, for every module of ``net``."""
    R = net.image_size
    m = {"time_embed.": "time_embed.", "label_emb.": "label_emb.", "out.0.": "out_norm.", "out.2.": "out_conv.",
         "input_blocks.0.0.": f"enc.{R}x{R}_conv."}  # fmt: skip
    enc = [k for k in net.enc if not k.endswith("_conv")]
    for n, key in enumerate(enc, start=1):
        m[f"input_blocks.{n}.0.op." if key.endswith("_down") else f"input_blocks.{n}.0."] = f"enc.{key}." + (
            "" if key.endswith("_down") else "res."
        )
        m[f"input_blocks.{n}.1."] = f"enc.{key}.attn."
    blocks = [k for k in net.dec if not k.endswith("_up")]
    ups = iter(k for k in net.dec if k.endswith("_up"))
    for n, key in enumerate(blocks):
        m[f"output_blocks.{n}.0."] = f"dec.{key}.res."
        has_attn = net.dec[key].attn is not None
        if has_attn:
            m[f"output_blocks.{n}.1."] = f"dec.{key}.attn."
        if key.endswith(f"_block{net.num_res_blocks}") and not key.startswith(f"{R}x"):
            m[f"output_blocks.{n}.{2 if has_attn else 1}."] = f"dec.{next(ups)}."
    return m


_ARCH_FIX = ("the network is not the checkpoint's architecture: use the matching configs/official/*.yaml, or "
             "ScaleSpaceDiffusion.from_official(<file>), which reads the architecture off the checkpoint")


def _convert(state: dict[str, Tensor], table: dict[str, str], inner: bool) -> dict[str, Tensor]:
    out = {}
    for k, v in state.items():
        if k.startswith(("adapters_in.", "adapters_out.")):
            out[k] = v
            continue
        prefix = next((p for p in sorted(table, key=len, reverse=True) if k.startswith(p)), None)
        if prefix is None:
            raise KeyError(f"unexpected key {k!r}: not part of this architecture; {_ARCH_FIX}")
        rest = k[len(prefix) :]
        if inner:
            new = table[prefix]
            if new.endswith(".res.") or new.startswith(("mid.res",)):
                rest = _rename(rest, _RES)
            elif new.endswith(".attn.") or new == "mid.attn.":
                rest = _rename(rest, _ATTN)
        out[table[prefix] + rest] = v
    return out


def to_ours(state: dict[str, Tensor], net: FlexiUNet) -> dict[str, Tensor]:
    """Rename an official state dict onto ``net`` and check every shape; errors name the first bad key."""
    table = key_map(net)
    for i, name in _MID.items():
        table[f"middle_block.{i}."] = f"mid.{name}."
    ours = _convert(state, table, inner=True)
    expected = net.state_dict()
    for k, v in expected.items():
        if k not in ours:
            raise KeyError(f"official checkpoint lacks {k!r} (our name); {_ARCH_FIX}")
        if ours[k].shape != v.shape:
            shapes = f"checkpoint {tuple(ours[k].shape)} vs model {tuple(v.shape)}"
            raise ValueError(f"shape mismatch at {k!r}: {shapes}; {_ARCH_FIX}")
    extra = sorted(set(ours) - set(expected))
    if extra:
        raise KeyError(f"official checkpoint has keys this model lacks, first {extra[0]!r}; {_ARCH_FIX}")
    return ours


def to_official(state: dict[str, Tensor], net: FlexiUNet) -> dict[str, Tensor]:
    """Inverse of :func:`to_ours`: our FlexiUNet state dict under the authors' key names."""
    inverse_res = {v: k for k, v in _RES.items()}
    inverse_attn = {v: k for k, v in _ATTN.items()}
    table = {v: k for k, v in key_map(net).items()}
    table.update({f"mid.{n}.": f"middle_block.{i}." for i, n in _MID.items()})
    out = {}
    for k, v in state.items():
        if k.startswith(("adapters_in.", "adapters_out.")):
            out[k] = v
            continue
        prefix = max((p for p in table if k.startswith(p)), key=len)
        rest = k[len(prefix) :]
        if prefix.endswith(".res.") or prefix.startswith("mid.res"):
            rest = _rename(rest, inverse_res)
        elif prefix.endswith(".attn.") or prefix == "mid.attn.":
            rest = _rename(rest, inverse_attn)
        out[table[prefix] + rest] = v
    return out


HUB_REPO = "prateksha-u/ssd"


def resolve(checkpoint: str) -> str:
    """A local file, or ``prateksha-u/ssd/<file>`` downloaded through huggingface_hub (needs network)."""
    if Path(checkpoint).is_file():
        return checkpoint
    if checkpoint.startswith(HUB_REPO + "/"):
        from huggingface_hub import hf_hub_download

        try:
            return hf_hub_download(HUB_REPO, checkpoint[len(HUB_REPO) + 1 :])
        except Exception as err:  # offline, or no such file
            raise FileNotFoundError(
                f"could not download {checkpoint!r} from the Hugging Face hub ({type(err).__name__}); "
                "download it on a networked machine and pass the local .pt path"
            ) from err
    raise FileNotFoundError(
        f"official checkpoint {checkpoint!r} is neither a file nor '{HUB_REPO}/<file>'; pass the path of a downloaded "
        f".pt file, or '{HUB_REPO}/<file>' on a machine with network access"
    )


def infer_config(
    state: dict[str, Tensor], filename: str | None = None, image_size: int | None = None, num_heads: int = 4
) -> dict:
    """FlexiUNet arguments and ladder levels read off an official state dict (and its file name)."""
    mc = state["input_blocks.0.0.weight"].shape[0]
    in_ch = state["input_blocks.0.0.weight"].shape[1]
    n_in = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("input_blocks."))
    n_out = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("output_blocks."))
    n_levels = sum(1 for k in state if re.fullmatch(r"input_blocks\.\d+\.0\.op\.weight", k)) + 1
    nrb = n_out // n_levels - 1
    mult, n = [], 1
    for _ in range(n_levels):
        mult.append(state[f"input_blocks.{n}.0.in_layers.2.weight"].shape[0] // mc)
        n += nrb + 1
    if n - 1 != n_in:
        raise ValueError("cannot infer the UNet layout from the input block count")
    cfg = dict(model_channels=mc, in_channels=in_ch, out_channels=state["out.2.weight"].shape[0],
               channel_mult=tuple(mult), num_res_blocks=nrb, layout="official")  # fmt: skip
    if "label_emb.weight" in state:
        cfg["num_classes"] = state["label_emb.weight"].shape[0]
    match = re.search(r"(\d+)res_\w+?_(\d+)levels", Path(filename).name) if filename else None
    if match:
        cfg["image_size"], cfg["num_levels"] = int(match[1]), int(match[2])
    if image_size is not None:
        cfg["image_size"] = image_size
    if "image_size" not in cfg:
        raise ValueError("cannot tell the image size from the file name; pass image_size")
    # Attention sits where input block n has a second (attention) module; level of block n is (n-1)//(nrb+1).
    attn = {cfg["image_size"] >> ((int(k.split(".")[1]) - 1) // (nrb + 1))
            for k in state if re.fullmatch(r"input_blocks\.\d+\.1\.qkv\.weight", k)}  # fmt: skip
    cfg["attention_resolutions"] = tuple(sorted(attn, reverse=True))
    cfg["num_heads"] = num_heads  # 4 in the released models; the head count is not visible in the weights
    return cfg


def load_official_state(path: str) -> dict[str, Tensor]:
    """Load a released checkpoint safely (weights only), unwrapping a nested ``state_dict``."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state
