"""The DDIM kernels (D1)-(D6) as dense linear maps, checked against facts derived independently of the code."""

import pytest
import torch

from scale_space_diffusion.diffusion.ddim import check_eta, ddim_operators, ddim_step
from scale_space_diffusion.diffusion.degradation import Resize, axis_matrix
from scale_space_diffusion.diffusion.ladder import ResolutionLadder
from scale_space_diffusion.diffusion.process import ScaleSpaceProcess
from scale_space_diffusion.diffusion.schedule import NoiseSchedule

F64 = dict(dtype=torch.float64)


def tiny_process(kind="bilinear"):
    """8 -> 4 -> 2 px, equal ladder, T = 100: transitions at t = 33 (4 -> 8) and 66 (2 -> 4)."""
    proc = ScaleSpaceProcess(NoiseSchedule.make("linear", 100), ResolutionLadder(8, 3, 100, "equal"), Resize(kind))
    assert proc.ladder.transitions == [33, 66]
    return proc


# plain step, plain respaced jump, each transition, respaced jumps starting at a transition, a jump over two levels
JUMPS = [(70, 69), (60, 40), (33, 32), (66, 65), (33, 20), (66, 50), (90, 10)]


def sigmas(proc, t, s):
    a_t, sig_t = (float(v) for v in proc.schedule.a_sigma(t))
    a_s, sig_s = (float(v) for v in proc.schedule.a_sigma(s))
    return a_t / a_s, sig_s**2 / sig_t**2, sig_t, sig_s


def dense_D(proc, t, s):
    """D = R_{r(s) -> r(t)} (n_t^2, n_s^2) on row-major pixels, built from the 1-D matrices alone."""
    M = axis_matrix(proc.resize.kind, proc.ladder.res(s), proc.ladder.res(t))
    return torch.kron(M, M)


@pytest.mark.parametrize("kind", ["bilinear", "box"])
@pytest.mark.parametrize("t, s", JUMPS)
@pytest.mark.parametrize("eta", [0.0, 0.3, 1.0])
def test_every_kernel_keeps_the_forward_marginal(kind, t, s, eta):
    """(D2): sigma_t^2 A A^T + Sigma = sigma_s^2 I, so x_t ~ q(x_t | x_0) gives x_s ~ q(x_s | x_0) exactly."""
    proc = tiny_process(kind)
    A, B = ddim_operators(proc, t, s, eta)
    _, _, sig_t, sig_s = sigmas(proc, t, s)
    cov = sig_t**2 * A @ A.T + B @ B.T
    torch.testing.assert_close(cov, sig_s**2 * torch.eye(len(cov), **F64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["bilinear", "box"])
@pytest.mark.parametrize("t, s", JUMPS)
def test_eta_one_is_the_exact_posterior(kind, t, s):
    """eta = 1: A = rho c D^T (P2) and Sigma = (P3); with the same z the step equals posterior_mean + posterior_noise."""
    proc = tiny_process(kind)
    c, rho, _, _ = sigmas(proc, t, s)
    A, B = ddim_operators(proc, t, s, 1.0)
    torch.testing.assert_close(A, rho * c * dense_D(proc, t, s).T, rtol=0, atol=1e-13)
    torch.testing.assert_close(B @ B.T, proc.posterior_cov(t, s), rtol=0, atol=1e-13)
    g = torch.Generator().manual_seed(t)
    n_s, n_t = proc.ladder.res(s), proc.ladder.res(t)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        x_t, x0, z = (torch.randn(4, 2, n, n, generator=g).to(dtype) for n in (n_t, n_s, n_s))
        ancestral = proc.posterior_mean(x_t, x0, t, s) + proc.posterior_noise(z, t, s)
        torch.testing.assert_close(ddim_step(proc, x_t, x0, t, s, 1.0, z), ancestral, rtol=0, atol=tol)


@pytest.mark.parametrize("t, s", [(70, 69), (60, 40), (20, 3), (0, -1)])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_plain_step_is_ddim_eq_12_with_eq_16(t, s, eta):
    """(D5): x_s = sqrt(abar_s) x0 + sqrt(1 - abar_s - sigma^2) (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t) + sigma z,
    sigma^2 = eta^2 (1 - abar_s) / (1 - abar_t) (1 - abar_t / abar_s), written from abar alone (Song et al. 2021)."""
    proc = tiny_process()
    abar_t = float(proc.schedule.abar[t])
    abar_s = float(proc.schedule.abar[s]) if s >= 0 else 1.0
    var = eta**2 * (1 - abar_s) / (1 - abar_t) * (1 - abar_t / abar_s)
    n = proc.ladder.res(t)
    x_t, x0, z = torch.randn(3, 5, 1, n, n, generator=torch.Generator().manual_seed(1), **F64)
    eps_hat = (x_t - abar_t**0.5 * x0) / (1 - abar_t) ** 0.5
    expected = abar_s**0.5 * x0 + max(1 - abar_s - var, 0) ** 0.5 * eps_hat + var**0.5 * z
    torch.testing.assert_close(ddim_step(proc, x_t, x0, t, s, eta, z), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["bilinear", "box"])
@pytest.mark.parametrize("t, s", [(33, 32), (66, 65), (33, 20), (90, 10)])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_null_space_of_a_transition_gets_fresh_noise_for_every_eta(kind, t, s, eta):
    """On the null space of D (3/4 of the pixels per doubling) x_t is ignored and the noise is N(0, sigma_s^2)."""
    proc = tiny_process(kind)
    D = dense_D(proc, t, s)
    P = D.T @ torch.linalg.solve(D @ D.T, D)  # projector on the range of D^T
    N = torch.eye(len(P), **F64) - P
    A, B = ddim_operators(proc, t, s, eta)
    _, _, _, sig_s = sigmas(proc, t, s)
    assert round(float(N.trace())) == D.shape[1] - D.shape[0]
    torch.testing.assert_close(N @ A, torch.zeros_like(A), rtol=0, atol=1e-12)
    torch.testing.assert_close(N @ B @ B.T @ N, sig_s**2 * N, rtol=0, atol=1e-12)
    torch.testing.assert_close(P @ B @ B.T @ N, torch.zeros_like(N), rtol=0, atol=1e-12)  # independent of the range part


@pytest.mark.parametrize("kind", ["bilinear", "box"])
@pytest.mark.parametrize("t, s", [(33, 32), (66, 50), (90, 10)])
def test_eta_zero_transition_carries_eps_isometrically(kind, t, s):
    """eta = 0: the range part of x_s is deterministic and D eps_s = (D D^T)^{1/2} eps_t, eps = (x - mu) / sigma."""
    proc = tiny_process(kind)
    D = dense_D(proc, t, s)
    A, B = ddim_operators(proc, t, s, 0.0)
    _, _, sig_t, sig_s = sigmas(proc, t, s)
    lam, V = torch.linalg.eigh(D @ D.T)
    sqrt_DDt = V @ lam.sqrt().diag() @ V.T
    torch.testing.assert_close(D @ A * sig_t / sig_s, sqrt_DDt, rtol=0, atol=1e-12)
    torch.testing.assert_close(D @ B, torch.zeros_like(D @ B), rtol=0, atol=1e-12)


def test_last_step_returns_x0_hat_and_eta_is_checked():
    proc = tiny_process()
    x_t, x0 = torch.randn(2, 2, 1, 8, 8, **F64)
    assert torch.equal(ddim_step(proc, x_t, x0, 0, -1, 0.3, None), x0)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"eta=.* must be in \[0, 1\]"):
            check_eta(bad)
