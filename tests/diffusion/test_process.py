"""The scale-space posterior against brute-force Gaussian conditioning, and its exact noise."""

import pytest
import torch

from scale_space_diffusion.diffusion.degradation import Resize, axis_matrix
from scale_space_diffusion.diffusion.ladder import ResolutionLadder
from scale_space_diffusion.diffusion.process import ScaleSpaceProcess
from scale_space_diffusion.diffusion.schedule import NoiseSchedule


def tiny_process(kind="bilinear", R=8, L=2, T=100):
    return ScaleSpaceProcess(NoiseSchedule.make("linear", T), ResolutionLadder(R, L, T, "equal"), Resize(kind))


def brute_force_posterior(proc, t, s, x0, x_t):
    """Condition the joint Gaussian of (x_s, x_t | x_0) built from the Markov step
    x_t = c R x_s + n, n ~ N(0, sigma_t^2 I - c^2 sigma_s^2 R R^T), by dense linear algebra."""
    a_t, sig_t = (float(v) for v in proc.schedule.a_sigma(t))
    a_s, sig_s = (float(v) for v in proc.schedule.a_sigma(s))
    c = a_t / a_s
    n_s, n_t = proc.ladder.res(s), proc.ladder.res(t)
    M = axis_matrix(proc.resize.kind, n_s, n_t)
    R = torch.kron(M, M)
    M0 = axis_matrix(proc.resize.kind, proc.ladder.image_size, n_s)
    mean_s = a_s * torch.kron(M0, M0) @ x0.flatten()
    cov_ss = sig_s**2 * torch.eye(n_s**2, dtype=torch.float64)
    cov_n = sig_t**2 * torch.eye(n_t**2, dtype=torch.float64) - c**2 * sig_s**2 * R @ R.T
    assert torch.linalg.eigvalsh(cov_n).min() > 0  # the forward kernel is a valid Gaussian
    cov_ts = c * R @ cov_ss
    cov_tt = c * R @ cov_ss @ (c * R).T + cov_n
    torch.testing.assert_close(cov_tt, sig_t**2 * torch.eye(n_t**2, dtype=torch.float64))  # marginal matches q(x_t|x_0)
    gain = torch.linalg.solve(cov_tt, cov_ts).T
    mean = mean_s + gain @ (x_t.flatten() - c * R @ mean_s)
    cov = cov_ss - gain @ cov_ts
    return mean.reshape(n_s, n_s), cov


@pytest.mark.parametrize("kind", ["bilinear", "box"])
@pytest.mark.parametrize("t", [50, 51, 70, 0])  # 50 is the 8->4 transition of the equal 2-level ladder
def test_posterior_matches_brute_force_conditioning(kind, t):
    proc = tiny_process(kind)
    s = t - 1
    if s < 0:
        pytest.skip("t = 0 posterior is the point mass at x0")
    g = torch.Generator().manual_seed(t)
    x0 = torch.randn(8, 8, generator=g, dtype=torch.float64)
    n_t = proc.ladder.res(t)
    x_t = torch.randn(n_t, n_t, generator=g, dtype=torch.float64)
    mean_bf, cov_bf = brute_force_posterior(proc, t, s, x0, x_t)
    x0_rs = proc.degrade(x0[None, None], proc.ladder.res(s))
    mean = proc.posterior_mean(x_t[None, None], x0_rs, t)[0, 0]
    torch.testing.assert_close(mean, mean_bf, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(proc.posterior_cov(t), cov_bf, rtol=1e-9, atol=1e-12)


def noise_operator(proc, t):
    """The dense matrix of z -> posterior_noise(z) on one channel."""
    n = proc.ladder.res(t - 1)
    basis = torch.eye(n * n, dtype=torch.float64).reshape(n * n, 1, n, n)
    return proc.posterior_noise(basis, t).reshape(n * n, n * n).T


@pytest.mark.parametrize("kind", ["bilinear", "box"])
def test_exact_transition_noise_is_the_covariance_square_root(kind):
    proc = tiny_process(kind)
    t = proc.ladder.transitions[0]
    S = noise_operator(proc, t)
    torch.testing.assert_close(S @ S.T, proc.posterior_cov(t), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(S, S.T)  # the symmetric square root


def test_empirical_covariance_of_50k_transition_draws():
    """8x8 -> 4x4 transition: sample covariance of 50k draws vs sigma_s^2 (I - rho c^2 R^T R)."""
    proc = tiny_process("bilinear")
    t = proc.ladder.transitions[0]
    z = torch.randn(50_000, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    draws = proc.posterior_noise(z, t).reshape(50_000, 64)
    emp = draws.T @ draws / 50_000
    cov = proc.posterior_cov(t)
    # Standard error of a covariance entry is sqrt((C_ii C_jj + C_ij^2) / n); allow 5 sigma.
    se = ((cov.diag()[:, None] * cov.diag()[None] + cov**2) / 50_000).sqrt()
    assert ((emp - cov).abs() <= 5 * se).all()
    assert not torch.allclose(cov, cov.diag().diag())  # genuinely anisotropic


def test_non_transition_steps_are_the_ddpm_posterior():
    proc = tiny_process()
    sch = proc.schedule
    t = 70
    beta, abar_t, abar_s = sch.betas[t], sch.abar[t], sch.abar[t - 1]
    coef_x0 = beta * abar_s.sqrt() / (1 - abar_t)  # Ho et al. Eq. 7
    coef_xt = (1 - abar_s) * (1 - beta).sqrt() / (1 - abar_t)
    var = beta * (1 - abar_s) / (1 - abar_t)
    x0, x_t = torch.randn(2, 1, 1, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(proc.posterior_mean(x_t, x0, t), coef_x0 * x0 + coef_xt * x_t)
    z = torch.randn(1, 1, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(proc.posterior_noise(z, t), var.sqrt() * z)


def test_q_sample_degrades_then_noises():
    proc = tiny_process()
    x0 = torch.randn(3, 2, 8, 8)
    t = torch.tensor([60, 61, 99])
    noise = torch.randn(3, 2, 4, 4)
    a, sigma = (v.float().view(-1, 1, 1, 1) for v in proc.schedule.a_sigma(t))
    torch.testing.assert_close(proc.q_sample(x0, t, noise), a * Resize().down(x0, 4) + sigma * noise)
