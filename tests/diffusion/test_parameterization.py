"""eps <-> x0 through x0_hat: each conversion inverts the other (Ho et al. 2020, Eqs. 4 and 15)."""

import pytest
import torch

from scale_space_diffusion.diffusion.parameterization import Parameterization
from scale_space_diffusion.diffusion.schedule import NoiseSchedule

EPS, X0 = Parameterization("eps"), Parameterization("x0")


def draw():
    g = torch.Generator().manual_seed(0)
    schedule = NoiseSchedule(timesteps=100)
    t = torch.tensor([0, 10, 50, 99])
    x0, eps = torch.randn(4, 2, 8, 8, generator=g, dtype=torch.float64), torch.randn(4, 2, 8, 8, generator=g, dtype=torch.float64)
    x_t = schedule.at("a", t, x0) * x0 + schedule.at("sigma", t, x0) * eps  # Eq. 4
    return schedule, t, x0, eps, x_t


def test_the_true_eps_and_x0_convert_into_each_other():
    schedule, t, x0, eps, x_t = draw()
    torch.testing.assert_close(EPS.convert(eps, x_t, t, schedule, X0), x0)
    torch.testing.assert_close(X0.convert(x0, x_t, t, schedule, EPS), eps)


@pytest.mark.parametrize("p, q", [(EPS, X0), (X0, EPS), (EPS, EPS), (X0, X0)])
def test_round_trips(p, q):
    schedule, t, x0, eps, x_t = draw()
    raw = torch.randn_like(x0)
    torch.testing.assert_close(q.convert(p.convert(raw, x_t, t, schedule, q), x_t, t, schedule, p), raw)
