"""Arrow-backed images for the data module: decoding, ADM's centre crop, channel conversion and flips."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

# `datasets` is imported inside functions, so that `ssd --help` stays light (see data.py).


def center_crop_arr(x: torch.Tensor, size: int, small_images: str = "pad") -> torch.Tensor:
    """ADM's ``center_crop_arr`` (openai/guided-diffusion) on a batch: uint8 (B,C,H,W) -> float32 (B,C,size,size) in [-1,1].

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


def to_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 (B,c,H,W) -> (B,channels,H,W); RGB->L uses PIL's ITU-R 601-2 luma, alpha is dropped."""
    x = x[:, :1] if x.shape[1] == 2 else x[:, :3]  # LA -> L, RGBA -> RGB
    if x.shape[1] == channels:
        return x
    if channels == 3:
        return x.expand(-1, 3, -1, -1)
    luma = (x.int() * torch.tensor([19595, 38470, 7471]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    return ((luma + 32768) >> 16).to(torch.uint8)


def _arrow_to_uint8(col) -> np.ndarray:
    """A fixed-size (nested) list column, or an ``ArrayND`` extension column, -> uint8 array (B, *shape)."""
    col = getattr(col, "storage", col)
    shape = []
    while hasattr(col.type, "list_size"):
        shape.append(col.type.list_size)
        col = col.flatten()
    return col.to_numpy(zero_copy_only=False).astype(np.uint8).reshape(-1, *shape)


@contextlib.contextmanager
def _one_thread():
    """Batches are small: waking torch's intra-op pool costs more than it saves (60 ms vs 0.3 ms on 2 busy cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


class ArrowImages(Dataset):
    """Arrow-backed images; ``__getitems__`` returns a whole batch ``(images (B,C,S,S) in [-1,1], labels (B,))``."""

    def __init__(self, ds: datasets.Dataset, image: str, label: str | None, size: int, channels: int,
                 small_images: str):
        import datasets
        self.encoded = isinstance(ds.features[image], datasets.Image)
        if self.encoded:  # decode ourselves, so that a failure can name the file
            ds = ds.cast_column(image, datasets.Image(decode=False))
        self.ds, self.image, self.label = ds.with_format("arrow"), image, label
        self.size, self.channels, self.small_images = size, channels, small_images

    def __len__(self) -> int:
        return len(self.ds)

    def _decode(self, col, indices: list[int]) -> torch.Tensor:
        from PIL import Image
        mode, out = "RGB" if self.channels == 3 else "L", []
        for i, (data, path) in enumerate(zip(col.field("bytes").to_pylist(), col.field("path").to_pylist())):
            try:
                with Image.open(io.BytesIO(data) if data is not None else path) as im:
                    a = np.array(im.convert(mode)).reshape(im.height, im.width, -1)
            except Exception as e:
                raise ValueError(f"cannot decode image {path or f'#{indices[i]}'}: {e}; delete or replace it") from e
            out.append(center_crop_arr(torch.from_numpy(a).permute(2, 0, 1)[None], self.size, self.small_images))
        return torch.cat(out)

    @_one_thread()
    def __getitems__(self, keys: list[int] | list[tuple[int, bool]]) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch for sample indices, or for ``(index, flip)`` pairs from :class:`EpochSampler`."""
        pairs = [k if isinstance(k, tuple) else (k, False) for k in keys]
        indices = [i for i, _ in pairs]
        batch = self.ds[indices]  # one Arrow take for the whole batch
        col = batch.column(self.image).combine_chunks()
        if self.encoded:
            x = self._decode(col, indices)
        else:
            a = torch.from_numpy(_arrow_to_uint8(col))
            a = a[:, None] if a.ndim == 3 else a.permute(0, 3, 1, 2)  # (B,H,W) or (B,H,W,C) -> (B,C,H,W)
            x = center_crop_arr(to_channels(a, self.channels), self.size, self.small_images)
        y = (torch.tensor(batch.column(self.label).to_numpy(), dtype=torch.long) if self.label
             else torch.zeros(len(indices), dtype=torch.long))
        flip = torch.tensor([f for _, f in pairs], dtype=torch.bool)
        x[flip] = x[flip].flip(-1)
        return x, y

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.__getitems__([i])
        return x[0], y[0]


def whole_batch(batch):  # `__getitems__` already returns a collated batch
    return batch
