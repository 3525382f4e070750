"""Preprocessing facts: ADM's centre crop, grey conversion as PIL does it, 16-bit images, and the one warning about
images smaller than image_size."""
import logging
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scale_space_diffusion.data import ImageDataModule
from scale_space_diffusion.data.image_dataset import _pixels
from scale_space_diffusion.data.preprocess import (center_crop_arr, over_background, small_images_message, to_channels,
                                                   to_uint8)


def test_center_crop_arr_facts():
    const = torch.full((2, 3, 40, 48), 200, dtype=torch.uint8)
    for small in ("pad", "resize"):
        assert torch.allclose(center_crop_arr(const, 32, small), torch.full((2, 3, 32, 32), 200 / 127.5 - 1))
    small = torch.full((1, 1, 28, 28), 255, dtype=torch.uint8)
    padded = center_crop_arr(small, 32, "pad")
    assert (padded[..., 2:30, 2:30] == 1).all() and padded.sum() == 28 * 28 - (32 * 32 - 28 * 28)  # border is -1
    assert (center_crop_arr(small, 32, "resize") == 1).all()
    stripes = torch.zeros(1, 1, 64, 64, dtype=torch.uint8)
    stripes[..., ::2] = 255  # antialiased 2x downscale averages the stripes to grey
    assert center_crop_arr(stripes, 32)[..., 4:-4, 4:-4].abs().max() < 0.05


def test_rgb_to_grey_matches_pil():
    rgb = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    ours = to_channels(torch.from_numpy(rgb).permute(2, 0, 1)[None], 1)[0, 0].numpy()
    assert np.array_equal(ours, np.asarray(Image.fromarray(rgb).convert("L")))


# --- 16-bit images ------------------------------------------------------------------------------------------------

RAMP = np.linspace(0, 65535, 16).round().astype(np.uint16)[None].repeat(16, 0)  # 16x16, 0 .. 65535 left to right


def png16(path: Path, rgb: np.ndarray) -> None:
    """A 16-bit RGB PNG written by hand (PIL cannot write one): IHDR bit depth 16, colour type 2."""
    h, w = rgb.shape[:2]
    raw = b"".join(b"\x00" + rgb[y].astype(">u2").tobytes() for y in range(h))
    chunk = lambda kind, d: struct.pack(">I", len(d)) + kind + d + struct.pack(">I", zlib.crc32(kind + d))  # noqa: E731
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_to_uint8_scales_16_bit_by_its_range():
    assert to_uint8(np.array([0, 257, 32896, 65535], np.uint16)).tolist() == [0, 1, 128, 255]
    a = np.array([7, 255], np.uint8)
    assert to_uint8(a) is a
    for im in (Image.fromarray(RAMP), Image.fromarray(RAMP.astype(">u2")), Image.fromarray(RAMP.astype(np.int32))):
        assert im.mode in ("I;16", "I;16B", "I")
        assert _pixels(im, 1)[0, :, 0].tolist() == (RAMP[0] / 257).round().tolist()


def test_16_bit_pngs_become_a_full_range_ramp(tmp_path):
    (tmp_path / "imgs").mkdir()
    Image.fromarray(RAMP).save(tmp_path / "imgs" / "grey16.png")
    png16(tmp_path / "imgs" / "rgb16.png", np.stack([RAMP] * 3, -1))
    assert Image.open(tmp_path / "imgs" / "grey16.png").mode == "I;16"
    for channels in (1, 3):
        m = ImageDataModule(dataset=str(tmp_path / "imgs"), image_size=16, channels=channels, val_fraction=0.0,
                            cache_dir=str(tmp_path / "cache"))
        m.setup("fit")
        x, _ = m.splits["train"].__getitems__([0, 1])
        assert x.shape == (2, channels, 16, 16)
        for row in x[:, :, 8]:  # (channels, 16): every channel of both images is the same rising ramp
            assert (row.diff(dim=-1) > 0).all() and row[:, 0].max() < -0.99 and row[:, -1].min() > 0.99
            assert torch.allclose(row, torch.linspace(-1, 1, 16).expand_as(row), atol=0.01)


# --- images smaller than image_size -------------------------------------------------------------------------------

def caught(make):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        make()
    return [str(x.message) for x in w if "smaller than image_size" in str(x.message)]


def small_folder(root: Path) -> Path:
    """6 images of 6x6 and 2 of 16x16."""
    root.mkdir()
    for i in range(8):
        Image.fromarray(np.full((6, 6) if i < 6 else (16, 16), 10 + 30 * i, np.uint8)).save(root / f"{i}.png")
    return root


PADDED = ("padded with 5 px of background on each side (86% of each image is padding); "
          "set data.small_images=resize to upscale instead")


@pytest.mark.parametrize("small, how", [
    (None, PADDED), ("pad", PADDED),
    ("resize", "upscaled bicubically by 2.67x; set data.small_images=pad to pad them with background instead")],
    ids=["unset", "pad", "resize"])
def test_small_images_are_announced_once(tmp_path, caplog, small, how):
    """A warning when the config leaves the choice unset; the same line as information when it names it."""
    m = ImageDataModule(dataset=str(small_folder(tmp_path / "imgs")), image_size=16, small_images=small,
                        val_fraction=0.0, cache_dir=str(tmp_path / "cache"))

    def use():
        m.prepare_data()
        m.setup("fit")
        next(iter(m.train_dataloader()))
        m.setup("test")
        m.reference_images("test")

    message = f"6 of 8 training images are 6x6, smaller than image_size=16: {how}"
    with caplog.at_level(logging.INFO):
        warned = caught(use)
    assert warned == ([message] if small is None else [])
    assert [r.getMessage() for r in caplog.records if "smaller than image_size" in r.getMessage()] == (
        [] if small is None else [message])
    x, _ = m.splits["train"].__getitems__(list(range(6)))
    assert ((x[..., :5, :] == -1).all() and (x[..., 5:11, 5:11] > -1).all()) == (small != "resize")


def test_fashion_mnist_padding_is_announced(tmp_path, fmnist_idx):
    def setup(size: int):
        return lambda: ImageDataModule(idx_dir=str(fmnist_idx), image_size=size, cache_dir=str(tmp_path)).setup("fit")

    assert caught(setup(32)) == ["all 94 training images are 28x28, smaller than image_size=32: padded with 2 px of "
                                 "background on each side (23% of each image is padding); set data.small_images=resize "
                                 "to upscale instead"]
    assert caught(setup(16)) == []  # downscaled: nothing to say


def test_small_images_message_for_samples_mixed_and_oblong_sizes():
    sampled = small_images_message([(6, 6)] * 40 + [(32, 32)] * 60, 5000, 16, "pad")
    assert sampled.startswith("about 40% of the 5000 training images (40 of 100 sampled) are 6x6, smaller than")
    assert small_images_message([(6, 6)] * 100, 5000, 16, "pad").startswith("all 100 sampled of the 5000 training")
    mixed = small_images_message([(6, 6), (6, 6), (7, 7), (20, 20)], 4, 16, "pad")
    assert mixed.startswith("3 of 4 training images are smaller (most often 6x6), smaller than image_size=16")
    oblong = small_images_message([(7, 40)], 1, 16, "pad")
    assert "padded with 4-5 px of background at top and bottom (56% of each image is padding)" in oblong
    assert small_images_message([(16, 16), (40, 20)], 2, 16, "pad") is None


@pytest.mark.parametrize("background", ["white", "black"])
def test_transparency_composites_as_pil_does(background):
    """RGBA and LA over a background equal PIL's alpha_composite onto an opaque page of that colour (to rounding);
    raw RGBA arrays (to_channels) get the same as decoded files."""
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (5, 7, 4), dtype=np.uint8)
    page = Image.new("RGBA", (7, 5), {"white": (255, 255, 255, 255), "black": (0, 0, 0, 255)}[background])
    pil = np.array(Image.alpha_composite(page, Image.fromarray(rgba, "RGBA")).convert("RGB"))
    ours = over_background(torch.from_numpy(rgba).permute(2, 0, 1)[None], background)[0].permute(1, 2, 0).numpy()
    assert np.abs(ours.astype(int) - pil.astype(int)).max() <= 1
    x = torch.from_numpy(rgba).permute(2, 0, 1)[None]
    assert torch.equal(to_channels(x, 3, background), over_background(x, background))
    la = x[:, [0, 3]]  # grey + alpha
    assert torch.equal(to_channels(la, 1, background), over_background(la, background))
    opaque = x.clone()
    opaque[:, 3] = 255
    assert torch.equal(to_channels(opaque, 3, background), x[:, :3])  # opaque pixels are unchanged
