import torch
import torch.nn.functional as F

from scale_space_diffusion.diffusion.schedule import NoiseSchedule
from scale_space_diffusion.models.settings import Optimization
from scale_space_diffusion.metrics.analysis import band_error, band_recovery, plot, radial_power_spectrum
from scale_space_diffusion.models.ssd import ScaleSpaceDiffusion
from scale_space_diffusion.networks.flexi_unet import FlexiUNet


def test_white_noise_spectrum_is_flat_and_blur_removes_high_frequencies():
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(64, 1, 32, 32, generator=g, dtype=torch.float64)
    flat = radial_power_spectrum(noise, 8)
    assert (flat / flat.mean() - 1).abs().max() < 0.1
    blurred = radial_power_spectrum(F.avg_pool2d(noise, 3, stride=1, padding=1), 8)
    assert blurred[-1] < 0.1 * blurred[1]


def test_band_error_is_one_for_a_perfect_estimate_and_zero_for_nothing():
    x0 = torch.randn(4, 1, 16, 16, dtype=torch.float64)
    torch.testing.assert_close(band_error(x0, x0, 4), torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(band_error(torch.zeros_like(x0), x0, 4), torch.zeros(4, dtype=torch.float64))


def test_band_recovery_and_plot(tmp_path):
    net = FlexiUNet(16, 1, None, 8, (1, 2), 1, (), 2)
    model = ScaleSpaceDiffusion(net, num_levels=2, schedule=NoiseSchedule(timesteps=50), optim=Optimization(ema_decay=None)).eval()
    x0 = torch.rand(3, 1, 16, 16) * 2 - 1
    rec = band_recovery(model, x0, [0, 25, 49], num_bins=6)
    assert rec.shape == (3, 6) and torch.isfinite(rec).all()
    out = plot(radial_power_spectrum(x0, 6), radial_power_spectrum(x0, 6), rec, [0, 25, 49], tmp_path / "f.png")
    assert out.stat().st_size > 1000
