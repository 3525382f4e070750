"""Arrow-backed images for the data module: whole batches decoded, preprocessed (preprocess.py) and flipped."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from .preprocess import SIXTEEN_BIT_MODES, center_crop_arr, has_alpha, over_background, to_channels, to_uint8

# `datasets` is imported inside functions, so that `ssd --help` stays light (see datamodule.py).


def _arrow_to_uint8(col) -> np.ndarray:
    """A (nested) list column of equal-shaped arrays, or an ``ArrayND`` extension column, -> uint8 array (B, *shape)."""
    import pyarrow.compute as pc
    col, shape = getattr(col, "storage", col), []
    while hasattr(col.type, "value_type"):  # a list type: fixed-size, or variable (e.g. from Python lists)
        if hasattr(col.type, "list_size"):
            shape.append(col.type.list_size)
        else:
            lengths = pc.list_value_length(col).unique().to_pylist()
            if len(lengths) != 1:
                raise ValueError(f"images of different sizes ({sorted(lengths)} pixels along one axis) in one batch of "
                                 "a raw-array image column; store them as a datasets.Image column instead")
            shape.append(lengths[0])
        col = col.flatten()
    a = col.to_numpy(zero_copy_only=False)
    return (to_uint8(a) if a.dtype == np.uint16 else a.astype(np.uint8)).reshape(-1, *shape)


_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_TURNED = (5, 6, 7, 8)  # EXIF orientations that rotate by 90 degrees: a viewer swaps height and width


def _transparent(im) -> bool:
    """Whether a PIL image has an alpha channel or a transparent palette colour."""
    return im.mode in _ALPHA_MODES or "transparency" in im.info


def _pixels(im, channels: int, background: str = "white") -> np.ndarray:
    """A PIL image -> uint8 (H, W, c) as a photo viewer shows it: turned by its EXIF orientation, transparency
    composited over ``background`` (preprocess.over_background); 16-bit greyscale scaled from its full range (PIL's
    convert would clip it)."""
    from PIL import ImageOps

    im = ImageOps.exif_transpose(im)
    if im.mode in SIXTEEN_BIT_MODES:
        return to_uint8(np.asarray(im))[..., None]  # (H, W, 1); to_channels makes RGB of it if asked
    if _transparent(im):
        rgba = torch.from_numpy(np.array(im.convert("RGBA"))).permute(2, 0, 1)[None]
        rgb = over_background(rgba, background)  # (1, 3, H, W)
        return to_channels(rgb, channels)[0].permute(1, 2, 0).numpy()
    return np.array(im.convert("RGB" if channels == 3 else "L")).reshape(im.height, im.width, -1)


def _viewed_size(im) -> tuple[int, int]:
    """(height, width) after the EXIF orientation, from the header."""
    turned = im.getexif().get(0x0112) in _TURNED  # 0x0112: Orientation
    return (im.width, im.height) if turned else (im.height, im.width)


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
                 small_images: str, background: str = "white"):
        import datasets
        self.encoded = isinstance(ds.features[image], datasets.Image)
        if self.encoded:  # decode ourselves, so that a failure can name the file
            ds = ds.cast_column(image, datasets.Image(decode=False))
        self.ds, self.image, self.label = ds.with_format("arrow"), image, label
        self.size, self.channels, self.small_images, self.background = size, channels, small_images, background

    def __len__(self) -> int:
        return len(self.ds)

    def _each(self, col, indices: list[int], fn: Callable) -> list:
        """``fn(PIL image)`` for each image of an encoded image column; a failure to open or decode names the file."""
        from PIL import Image
        out = []
        for i, data, path in zip(indices, col.field("bytes").to_pylist(), col.field("path").to_pylist()):
            try:
                with Image.open(io.BytesIO(data) if data is not None else path) as im:
                    out.append(fn(im))
            except Exception as e:
                raise ValueError(f"cannot decode image {path or f'#{i}'}: {e}; delete or replace it") from e
        return out

    def _decode(self, im) -> torch.Tensor:
        a = to_channels(torch.from_numpy(_pixels(im, self.channels, self.background)).permute(2, 0, 1)[None],
                        self.channels)
        return center_crop_arr(a, self.size, self.small_images)

    def _column(self, indices: list[int]):
        return self.ds[indices].column(self.image).combine_chunks()

    @property
    def same_size(self) -> bool:
        """Whether every image has one known shape (a fixed-size array column, as Fashion-MNIST's)."""
        kind = self.ds.data.schema.field(self.image).type
        return not self.encoded and "fixed_size_list" in str(getattr(kind, "storage_type", kind))

    def sizes(self, indices: list[int]) -> list[tuple[int, int]]:
        """(height, width) of the stored images at ``indices``, before preprocessing; encoded images: headers only."""
        if self.encoded:
            return self._each(self._column(indices), indices, _viewed_size)
        rows = [indices[:1]] if self.same_size else [[i] for i in indices]
        shapes = [tuple(_arrow_to_uint8(self._column(r)).shape[1:3]) for r in rows]
        return shapes * len(indices) if self.same_size else shapes

    def transparent(self, indices: list[int]) -> list[bool]:
        """Whether each stored image at ``indices`` has transparent pixels (composited over the background)."""
        if self.encoded:
            def alpha(im) -> bool:
                return _transparent(im) and bool((np.array(im.convert("RGBA"))[..., 3] < 255).any())

            return self._each(self._column(indices), indices, alpha)
        out = []
        for i in indices:
            a = torch.from_numpy(_arrow_to_uint8(self._column([i])))
            if a.ndim == 3 and self.same_size:  # (1, H, W): greyscale arrays, all of one shape
                return [False] * len(indices)
            out.append(a.ndim == 4 and has_alpha(a.permute(0, 3, 1, 2)))
        return out

    @_one_thread()
    def __getitems__(self, keys: list[int] | list[tuple[int, bool]]) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch for sample indices, or for ``(index, flip)`` pairs from :class:`EpochSampler`."""
        pairs = [k if isinstance(k, tuple) else (k, False) for k in keys]
        indices = [i for i, _ in pairs]
        batch = self.ds[indices]  # one Arrow take for the whole batch
        col = batch.column(self.image).combine_chunks()
        if self.encoded:
            x = torch.cat(self._each(col, indices, self._decode))
        else:
            a = torch.from_numpy(_arrow_to_uint8(col))
            a = a[:, None] if a.ndim == 3 else a.permute(0, 3, 1, 2)  # (B,H,W) or (B,H,W,C) -> (B,C,H,W)
            x = center_crop_arr(to_channels(a, self.channels, self.background), self.size, self.small_images)
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
