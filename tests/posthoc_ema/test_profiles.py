"""Facts of the power-function EMA math (EDM2 App. C): profiles, widths, updates, inner products, the solve."""

import pytest
import torch

from scale_space_diffusion.posthoc_ema.profiles import (
    Profile, continuous_overlap, discrete_profile, gamma_to_sigma_rel, gram, power_beta, profile_residual,
    sigma_rel_to_gamma, solve_weights,
)  # fmt: skip


@pytest.mark.parametrize("gamma", [0.5, 6.94, 16.97, 50.0])
def test_continuous_profile_integrates_to_one_and_has_width_e2(gamma):
    t = 1000.0
    tau = torch.linspace(0, t, 2_000_001, dtype=torch.float64)
    p = (gamma + 1) * tau**gamma / t ** (gamma + 1)  # (E1)
    assert float(torch.trapezoid(p, tau)) == pytest.approx(1.0, abs=1e-6)
    mean = torch.trapezoid(p * tau, tau) / t
    std = (torch.trapezoid(p * tau**2, tau) / t**2 - mean**2).sqrt()
    assert float(std) == pytest.approx(gamma_to_sigma_rel(gamma), rel=1e-5)


@pytest.mark.parametrize("sigma_rel", [0.01, 0.05, 0.07, 0.10, 0.2, 0.28])
def test_sigma_rel_gamma_round_trip(sigma_rel):
    assert gamma_to_sigma_rel(sigma_rel_to_gamma(sigma_rel)) == pytest.approx(sigma_rel, rel=1e-12)


def test_edm2_default_exponents():
    # EDM2 (Sec. 3) quotes gamma = 16.97 for sigma_rel = 0.05 and 6.94 for 0.10
    assert sigma_rel_to_gamma(0.05) == pytest.approx(16.97, abs=0.005)
    assert sigma_rel_to_gamma(0.10) == pytest.approx(6.94, abs=0.005)


def test_update_rule_unrolls_to_the_discrete_profile():
    """(E4): running the lerp updates over one-hot iterates gives w_t(i), which sums to 1."""
    gamma, t = sigma_rel_to_gamma(0.07), 60
    ema = torch.zeros(t, dtype=torch.float64)
    for step in range(1, t + 1):
        theta = torch.nn.functional.one_hot(torch.tensor(step - 1), t).double()
        ema.lerp_(theta, 1 - power_beta(gamma, step))
    w = discrete_profile(gamma, t)
    torch.testing.assert_close(ema, w, rtol=1e-12, atol=1e-15)
    assert float(w.sum()) == pytest.approx(1.0, abs=1e-12)
    assert power_beta(gamma, 1) == 0.0  # the first update copies the weights


def test_discrete_profile_width_tends_to_sigma_rel():
    t = 20_000
    w = discrete_profile(sigma_rel_to_gamma(0.05), t)
    tau = torch.arange(1, t + 1, dtype=torch.float64) - 0.5  # the centre of each step's interval
    mean = (w * tau).sum()
    std = ((w * tau**2).sum() - mean**2).sqrt() / t
    assert float(std) == pytest.approx(0.05, rel=1e-3)


def test_exact_gram_is_the_dot_product_of_discrete_profiles_and_tends_to_e5():
    a, b, c = Profile(30, 0.05), Profile(45, 0.10), Profile(45, 0.07)
    G = gram([a, b, c], [a, b, c], exact=True)
    w = [torch.nn.functional.pad(discrete_profile(p.gamma, p.step), (0, 45 - p.step)) for p in (a, b, c)]
    torch.testing.assert_close(G, torch.stack(w) @ torch.stack(w).T, rtol=1e-10, atol=0)
    big = [Profile(200_000, 0.05), Profile(120_000, 0.10)]
    torch.testing.assert_close(gram(big, big, exact=True), gram(big, big, exact=False), rtol=1e-4, atol=0)
    assert continuous_overlap(big[0], big[1]) == continuous_overlap(big[1], big[0])


@pytest.mark.parametrize("exact", [True, False])
def test_solve_recovers_a_snapshot_exactly_and_weights_sum_to_one(exact):
    snaps = [Profile(s, r) for s in (100, 200, 300, 400) for r in (0.05, 0.10)]
    x = solve_weights(snaps, [Profile(300, 0.10), Profile(400, 0.08)], exact)
    torch.testing.assert_close(x.sum(0), torch.ones(2, dtype=torch.float64))
    one_hot = torch.zeros(len(snaps), dtype=torch.float64)
    one_hot[5] = 1
    torch.testing.assert_close(x[:, 0], one_hot, atol=1e-6, rtol=0)
    assert profile_residual(snaps, x[:, 0], Profile(300, 0.10)) < 1e-6
    assert profile_residual(snaps, x[:, 1], Profile(400, 0.08)) < 0.05  # between the tracked widths: 3 % measured


def test_a_target_outside_the_tracked_range_fits_worse_and_dense_snapshots_help():
    target = Profile(400, 0.07)
    sparse = [Profile(s, r) for s in (200, 400) for r in (0.05, 0.10)]
    dense = [Profile(s, r) for s in range(20, 401, 20) for r in (0.05, 0.10)]
    fit = lambda snaps: profile_residual(snaps, solve_weights(snaps, [target])[:, 0], target)  # noqa: E731
    assert fit(dense) < fit(sparse)
    assert fit(dense) < 0.01


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: sigma_rel_to_gamma(0.3), "sigma_rel=0.3 must be in"),
        (lambda: sigma_rel_to_gamma(0.0), "sigma_rel=0.0 must be in"),
        (lambda: gamma_to_sigma_rel(-1.0), "gamma=-1.0 must be > 0"),
        (lambda: power_beta(7.0, 0), "step=0 must be >= 1"),
        (lambda: Profile(0, 0.05), "step=0 must be >= 1"),
        (lambda: solve_weights([], [Profile(10, 0.05)]), "no snapshots"),
        (lambda: solve_weights([Profile(10, 0.05)], []), "no target"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
