"""Pixels to model inputs: bit depth to uint8, transparency, channels, ADM's centre crop, and what it does to small
images."""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch
import torch.nn.functional as F

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # PIL greyscale modes read from 16-bit files


def to_uint8(a: np.ndarray) -> np.ndarray:
    """uint8 pixels unchanged; 16-bit pixels (0..65535, uint16 or PIL's int32 mode "I") scaled by 255/65535.

    A 16-bit value v becomes round(v / 257): 0 -> 0, 65535 -> 255, so the full 16-bit range spans the full 8-bit one.
    """
    if a.dtype == np.uint8:
        return a
    if a.dtype.kind in "ui" and a.dtype.itemsize >= 2:
        return np.rint(np.clip(a, 0, 65535) / 257).astype(np.uint8)
    raise ValueError(f"pixels of dtype {a.dtype} are not supported; convert the images to 8- or 16-bit integers")


BACKGROUNDS = {"white": 255, "black": 0}  # what transparent pixels are composited over (data.transparent_background)


def over_background(x: torch.Tensor, background: str) -> torch.Tensor:
    """uint8 (B,c,H,W) with alpha last (LA: c=2, RGBA: c=4) -> (B,c-1,H,W): each pixel over ``background``, as a
    viewer shows it on a page of that colour: ``round(a * colour + (255 - a) * background) / 255``."""
    colour, alpha = x[:, :-1].int(), x[:, -1:].int()
    out = (alpha * colour + (255 - alpha) * BACKGROUNDS[background] + 127) // 255
    return out.to(torch.uint8)


def has_alpha(x: torch.Tensor) -> bool:
    """Whether uint8 (B,c,H,W) pixels carry alpha (LA or RGBA) that is not opaque everywhere."""
    return x.shape[1] in (2, 4) and bool((x[:, -1] < 255).any())


def to_channels(x: torch.Tensor, channels: int, background: str = "white") -> torch.Tensor:
    """uint8 (B,c,H,W) -> (B,channels,H,W); LA and RGBA are composited over ``background`` (over_background) first;
    RGB->L uses PIL's ITU-R 601-2 luma."""
    if x.shape[1] in (2, 4):
        x = over_background(x, background)
    x = x[:, :3]
    if x.shape[1] == channels:
        return x
    if channels == 3:
        return x.expand(-1, 3, -1, -1)
    luma = (x.int() * torch.tensor([19595, 38470, 7471]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    return ((luma + 32768) >> 16).to(torch.uint8)


def center_crop_arr(x: torch.Tensor, size: int, small_images: str = "pad") -> torch.Tensor:
    """ADM's ``center_crop_arr`` (openai/guided-diffusion), batched: uint8 (B,C,H,W) -> float32 (B,C,size,size), [-1,1].

    A short side above ``size`` is resized down to it (bicubic, antialiased), then centre-cropped. A short side
    below ``size`` is padded with background (-1) when ``small_images="pad"`` (28->32 keeps every pixel sharp and
    adds a 2 px border), or bicubic-upscaled to ``size`` when ``"resize"``.
    """
    x = x.float() / 127.5 - 1
    h, w = x.shape[-2:]
    if min(h, w) > size or (min(h, w) < size and small_images == "resize"):
        s = size / min(h, w)
        hw = (max(size, round(h * s)), max(size, round(w * s)))
        x = F.interpolate(x, size=hw, mode="bicubic", antialias=True, align_corners=False).clamp(-1, 1)
    elif min(h, w) < size:
        ph, pw = max(size - h, 0), max(size - w, 0)
        x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=-1.0)
    top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
    return x[..., top:top + size, left:left + size].contiguous()


def _px(total: int) -> str:
    """Padding of ``total`` px split as `center_crop_arr` does: "5" or "4-5" px per side."""
    lo, hi = total // 2, total - total // 2
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def small_images_message(sizes: list[tuple[int, int]], total: int, size: int, small_images: str) -> str | None:
    """What `center_crop_arr` does to the images smaller than ``size``, or None if there are none.

    ``sizes`` are the (height, width) of all ``total`` training images or of a sample of them. Names how many are
    smaller, their (most common) size, the padding or upscaling used, and the setting that switches it.
    """
    small = [hw for hw in sizes if min(hw) < size]
    if not small:
        return None
    (h, w), _ = Counter(small).most_common(1)[0]
    if len(sizes) < total:
        who = (f"all {len(sizes)} sampled of the {total} training images" if len(small) == len(sizes) else
               f"about {round(100 * len(small) / len(sizes))}% of the {total} training images ({len(small)} of "
               f"{len(sizes)} sampled)")
    else:
        who = f"all {total} training images" if len(small) == total else f"{len(small)} of {total} training images"
    shape = f"are {h}x{w}" if len(set(small)) == 1 else f"are smaller (most often {h}x{w})"
    head = f"{who} {shape}, smaller than image_size={size}"
    if small_images == "resize":
        return (f"{head}: upscaled bicubically by {size / min(h, w):.3g}x; "
                "set data.small_images=pad to pad them with background instead")
    ph, pw = max(size - h, 0), max(size - w, 0)
    where = (f"{_px(ph)} px of background on each side" if ph == pw else
             f"{_px(ph)} px of background at top and bottom and {_px(pw)} px at left and right" if ph and pw else
             f"{_px(ph)} px of background at top and bottom" if ph else f"{_px(pw)} px of background at left and right")
    padding = 1 - min(h, size) * min(w, size) / size**2
    return (f"{head}: padded with {where} ({round(100 * padding)}% of each image is padding); "
            "set data.small_images=resize to upscale instead")
