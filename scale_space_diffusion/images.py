"""Image helpers: [-1, 1] tensors to uint8 and lossless PNG grids."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def to_uint8(x: Tensor) -> Tensor:
    """(B,C,H,W) in [-1, 1] -> uint8 in [0, 255], rounded as ADM does."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def save_png(image: Tensor, path: str | Path) -> Path:
    """Save one uint8 (C,H,W) image as PNG (lossless; never JPG for FID)."""
    from PIL import Image

    array = image.permute(1, 2, 0).cpu().numpy()
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(path, format="PNG")
    return Path(path)


def grid(images: Tensor, nrow: int | None = None, pad: int = 2) -> Tensor:
    """Tile uint8 (B,C,H,W) into one (C, rows*(H+pad)+pad, nrow*(W+pad)+pad) image."""
    B, C, H, W = images.shape
    nrow = nrow or math.ceil(math.sqrt(B))
    rows = math.ceil(B / nrow)
    canvas = torch.full((C, rows * (H + pad) + pad, nrow * (W + pad) + pad), 255, dtype=torch.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, nrow)
        canvas[:, pad + r * (H + pad) : pad + r * (H + pad) + H, pad + c * (W + pad) : pad + c * (W + pad) + W] = img
    return canvas


def save_grid(images: Tensor, path: str | Path, nrow: int | None = None, upscale: int = 1) -> Path:
    """Save (B,C,H,W) images in [-1, 1] or uint8 as one PNG grid, optionally nearest-upscaled."""
    x = images if images.dtype == torch.uint8 else to_uint8(images)
    if upscale > 1:
        x = F.interpolate(x.float(), scale_factor=upscale, mode="nearest").to(torch.uint8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return save_png(grid(x.cpu(), nrow), path)


def ladder_strip(rows: Sequence[Sequence[Tensor]], size: int) -> Tensor:
    """Rows of (C,h,w) [-1,1] images at mixed resolutions, nearest-upscaled to ``size``, as one uint8 grid."""
    tiles = [F.interpolate(img[None].float(), size=(size, size), mode="nearest")[0] for row in rows for img in row]
    return grid(to_uint8(torch.stack(tiles)), nrow=len(rows[0]))


def save_samples(images: Tensor, folder: str | Path, grid_path: str | Path) -> None:
    """uint8 (N,C,H,W) as ``folder/000000.png``, ... (``folder`` is created and must not exist) and the first 64 as an
    8-wide grid at ``grid_path``, nearest-upscaled to about 128 px per image (at most 4x)."""
    Path(folder).mkdir(parents=True)
    for i, image in enumerate(images):
        save_png(image, Path(folder) / f"{i:06d}.png")
    save_grid(images[:64], grid_path, nrow=8, upscale=max(1, min(4, 128 // images.shape[-1])))
