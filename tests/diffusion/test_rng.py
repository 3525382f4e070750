"""Per-image counter-based noise: Threefry-2x32-20 bit for bit, Box-Muller normals with the right moments, and an
image's noise independent of the batch it is drawn in."""

import math

import pytest
import torch

from scale_space_diffusion.diffusion.rng import ImageNoise, box_muller, image_noise, int32, randn, threefry2x32

KNOWN_ANSWERS = [  # Random123's kat_vectors for threefry2x32_20: (counter, key) -> output
    ((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6B200159, 0x99BA4EFE)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
    ((0x243F6A88, 0x85A308D3), (0x13198A2E, 0x03707344), (0xC4923A9C, 0x483DF7A0)),
]


@pytest.mark.parametrize("counter, key, expected", KNOWN_ANSWERS)
def test_threefry_matches_the_known_answers(counter, key, expected):
    word = lambda v: torch.tensor(int32(v), dtype=torch.int32)  # noqa: E731
    out = threefry2x32((word(key[0]), word(key[1])), (word(counter[0]), word(counter[1])))
    assert [int(x) & 0xFFFFFFFF for x in out] == list(expected)


def test_box_muller_of_exact_uniforms():
    """u = 1/2 (top bits 2^23), v = 0 and v = 1/4 give r = sqrt(2 ln 2) at angles 0 and pi/2."""
    u = torch.tensor([1 << 31, 1 << 31], dtype=torch.int64).to(torch.int32) - 128  # top 24 bits 2^23 - 1, +1/2
    v = torch.tensor([0, 1 << 30], dtype=torch.int32)
    z0, z1 = box_muller(u, v)
    r = math.sqrt(-2 * math.log((2**23 - 0.5) / 2**24))
    torch.testing.assert_close(z0, torch.tensor([r, 0.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(z1, torch.tensor([0.0, r]), atol=1e-6, rtol=0)


def test_an_image_gets_the_same_noise_in_any_batch():
    whole = image_noise(7, range(6)).randn((6, 3, 5, 5), draw=11)
    parts = [image_noise(7, idx).randn((len(idx), 3, 5, 5), draw=11) for idx in ([4, 5], [0], [1, 2, 3])]
    assert torch.equal(torch.cat([parts[1], parts[2], parts[0]]), whole)
    assert torch.equal(image_noise(7, [3, 1]).randn((2, 3, 5, 5), 11), whole[[3, 1]])


def test_seeds_images_and_draws_are_distinct_streams():
    base = image_noise(0, [0]).randn((1, 64), draw=1)
    for other in (image_noise(1, [0]).randn((1, 64), 1), image_noise(0, [1]).randn((1, 64), 1),
                  image_noise(0, [0]).randn((1, 64), 2)):  # fmt: skip
        assert not torch.equal(base, other)
        assert abs(torch.corrcoef(torch.cat([base, other]))[0, 1]) < 0.5
    assert torch.equal(base, image_noise(0, [0]).randn((1, 64), draw=1))  # and deterministic


def test_normal_moments():
    """4M draws: mean 0, variance 1, skewness 0, kurtosis 3, pairs uncorrelated; 5-sigma bounds of each estimator."""
    z = image_noise(3, range(64)).randn((64, 65536), draw=5).double()
    n = z.numel()
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.var() - 1) < 5 * math.sqrt(2 / n)
    assert abs((z**3).mean()) < 5 * math.sqrt(15 / n)
    assert abs((z**4).mean() - 3) < 5 * math.sqrt(96 / n)
    pairs = z.view(64, -1, 2)  # the two outputs of one Box-Muller draw
    assert abs((pairs[..., 0] * pairs[..., 1]).mean()) < 5 / math.sqrt(n / 2)
    tail = (z.abs() > 3).double().mean()  # P(|z| > 3) = 0.0026998
    assert abs(tail - 0.0026998) < 5 * math.sqrt(0.0027 / n)


def test_odd_sizes_and_the_randn_front_door():
    noise = ImageNoise(0, torch.arange(2))
    z = randn((2, 1, 3, 3), noise, like=torch.empty(0, dtype=torch.float64), draw=4)
    assert z.shape == (2, 1, 3, 3) and z.dtype == torch.float64
    torch.testing.assert_close(z.float(), noise.randn((2, 1, 3, 3), 4))
    with pytest.raises(ValueError, match="got 2 image indices for a batch of 3"):
        noise.randn((3, 4), 0)
