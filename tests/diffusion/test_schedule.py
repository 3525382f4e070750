import pytest
import torch

from scale_space_diffusion.diffusion.schedule import NoiseSchedule


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_abar_is_monotone_and_variance_preserving(kind):
    s = NoiseSchedule.make(kind, 1000)
    assert (s.abar[1:] < s.abar[:-1]).all()
    assert 0 < s.abar[-1] < 1e-2 and s.abar[0] > 0.99
    torch.testing.assert_close(s.a**2 + s.sigma**2, torch.ones(1000, dtype=torch.float64))


def test_linear_endpoints_match_adm():
    s = NoiseSchedule.make("linear", 1000)
    assert s.betas[0].item() == pytest.approx(1e-4) and s.betas[-1].item() == pytest.approx(0.02)


def test_clean_data_index():
    s = NoiseSchedule.make("linear", 100)
    a, sigma = s.a_sigma(torch.tensor([-1, 0]))
    assert a[0] == 1 and sigma[0] == 0 and a[1] == s.a[0]
