"""Facts of the blockiness and spectrum statistics on synthetic images with known answers."""

import math

import pytest
import torch
import torch.nn.functional as F

from scale_space_diffusion.metrics.sharpness import (blockiness, boundary_energy, power_distance, power_log_ratio, spectrum_distance,
                                                     spectrum_log_ratio)
from scale_space_diffusion.metrics.spectrum import radial_power_spectrum


def smooth_images(n=64, size=32, seed=0):
    """Random low-frequency images: a few sinusoids of period >= 8 px, in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    out = torch.zeros(n, 1, size, size, dtype=torch.float64)
    for _ in range(4):
        kx, ky = (torch.randint(-4, 5, (n, 1, 1, 1), generator=g) for _ in range(2))
        phase = torch.rand(n, 1, 1, 1, generator=g, dtype=torch.float64) * 2 * math.pi
        out += torch.cos(2 * math.pi * (kx * x + ky * y) / size + phase) / 4
    return out


def test_nearest_upsampled_images_are_blocky_and_smooth_or_noisy_ones_are_not():
    g = torch.Generator().manual_seed(0)
    low = torch.rand(8, 1, 8, 8, generator=g) * 2 - 1
    up2 = F.interpolate(low, scale_factor=2, mode="nearest")
    up4 = F.interpolate(low, scale_factor=4, mode="nearest")
    assert blockiness(up2, 2) == math.inf  # nothing differs inside a 2x2 block
    assert blockiness(up4, 4) == math.inf
    assert blockiness(up4, 2) > 1e6  # a 4x4 block is made of 2x2 blocks; inside ones are flat
    assert blockiness(smooth_images(), 2) == pytest.approx(1.0, abs=0.1)
    assert blockiness(smooth_images(), 4) == pytest.approx(1.0, abs=0.1)
    noise = torch.randn(16, 1, 32, 32, generator=g)
    assert blockiness(noise, 2) == pytest.approx(1.0, abs=0.05)


def test_blockiness_sees_the_grid_alignment_and_mild_blocks():
    g = torch.Generator().manual_seed(1)
    up2 = F.interpolate(torch.rand(8, 1, 16, 16, generator=g), scale_factor=2, mode="nearest")
    shifted = up2[..., 1:-1, 1:-1]  # block edges now fall inside the 2x2 cells counted from the corner
    across, inside = boundary_energy(shifted, 2)
    assert float(across) == 0 and float(inside) > 0
    assert blockiness(shifted, 2) == 0.0
    mild = smooth_images(8) + 0.2 * (2 * up2.double() - 1)  # a faint blocky layer (std 0.12) on a smooth image
    assert 1.4 < blockiness(mild, 2) < 3  # 1.71 measured
    # bilinear 2x upsampling of noise: inside differences (x_{i+1} - x_{i-1}) / 4, across ones (x_{i+1} - x_i) / 2
    bil = F.interpolate(torch.randn(64, 1, 16, 16, generator=g), scale_factor=2, mode="bilinear", align_corners=False)
    assert blockiness(bil[..., 2:-2, 2:-2], 2) == pytest.approx(4.0, rel=0.1)  # E across^2 / E inside^2 = (1/2) / (1/8)


def test_blockiness_takes_uint8_and_float_alike():
    x = smooth_images()
    u8 = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    assert blockiness(u8, 2) == pytest.approx(blockiness(x, 2), rel=0.05)
    assert blockiness(torch.zeros(2, 1, 8, 8), 2) == 0.0


def test_spectrum_distance_is_zero_for_equal_spectra_and_signs_missing_detail():
    real = torch.randn(16, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    assert spectrum_distance(real, real) == 0.0
    assert spectrum_distance(real, real.flip(-1)) == pytest.approx(0.0, abs=1e-12)  # a mirror keeps the spectrum
    blurred = F.avg_pool2d(F.pad(real, (1, 1, 1, 1), mode="circular"), 3, stride=1)
    ratio = spectrum_log_ratio(blurred, real)
    assert ratio[-4:].max() < -0.5 and ratio[0] > -0.05  # high bands lost, the lowest kept
    assert spectrum_distance(blurred, real) > 0.3
    assert spectrum_distance(2 * real, real) == pytest.approx(math.log10(4), rel=1e-9)  # x2 amplitude: x4 power
    u8 = ((real.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    assert spectrum_distance(u8, real.clamp(-1, 1)) < 0.01  # uint8 is mapped to [-1, 1]


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: blockiness(torch.zeros(1, 8, 8)), r"images must be \(B,C,H,W\)"),
        (lambda: blockiness(torch.zeros(1, 1, 8, 8), 1), "block=1 must be >= 2"),
        (lambda: blockiness(torch.zeros(1, 1, 6, 6), 4), "hold no two 4x4 blocks"),
        (lambda: spectrum_distance(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 16, 16)), "differ in shape"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_the_log_ratio_of_stored_spectra_is_the_log_ratio_of_the_images():
    g = torch.Generator().manual_seed(1)
    samples, real = torch.rand(4, 1, 16, 16, generator=g) * 2 - 1, torch.rand(4, 1, 16, 16, generator=g) * 2 - 1
    stored = power_log_ratio(radial_power_spectrum(samples).float(), radial_power_spectrum(real).float())
    assert torch.allclose(stored, spectrum_log_ratio(samples, real), atol=1e-6)  # float32 storage, float64 math
    powers = radial_power_spectrum(samples), radial_power_spectrum(real)
    assert power_distance(*powers) == pytest.approx(spectrum_distance(samples, real), rel=1e-12)
