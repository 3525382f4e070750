"""Preprocessing facts: ADM's centre crop, and grey conversion as PIL does it."""

import numpy as np
import torch
from PIL import Image

from scale_space_diffusion.data.preprocess import center_crop_arr, to_channels

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
