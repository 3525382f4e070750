"""DDIM sampling end to end: with an oracle denoiser every kept step's x_s has the forward marginal (Monte Carlo),
eta = 1 is the ancestral sampler bit for bit, eta = 0 is deterministic up to the transitions' null-space noise."""

import pytest
import torch

from scale_space_diffusion.diffusion import ddim
from scale_space_diffusion.diffusion.degradation import Resize
from scale_space_diffusion.diffusion.ladder import ResolutionLadder
from scale_space_diffusion.diffusion.process import ScaleSpaceProcess
from scale_space_diffusion.diffusion.rng import image_noise
from scale_space_diffusion.diffusion.sampler import (
    jumps, prior, respaced_steps, sample, sample_ancestral, sample_ddim, sample_respaced, timesteps,
)  # fmt: skip
from scale_space_diffusion.diffusion.schedule import NoiseSchedule

T, DRAWS, FAMILY_ALPHA = 50, 10_000, 1e-3


def make_process(levels):
    """8 px, 1 (DDPM) or 3 levels (8, 4, 2 px: two transitions), linear schedule, T = 50."""
    return ScaleSpaceProcess(NoiseSchedule.make("linear", T), ResolutionLadder(8, levels, T, "equal"), Resize())


@pytest.fixture(params=[1, 3], ids=["ddpm", "ssd3"])
def process(request):
    return make_process(request.param)


X0 = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 1.6 - 0.8


def oracle(process):
    """The perfect denoiser of a one-image data set: the true x_0 at the requested resolution."""
    return lambda x, t, out_res, labels: process.degrade(X0, out_res).expand(len(x), -1, -1, -1)


def marginal_draws(process, n, seed):
    """x_{T-1} ~ q(x_{T-1} | x_0) exactly (P1), not the N(0, I) prior, so every later marginal is exact too."""
    r = process.ladder.res(T - 1)
    z = torch.randn(n, 1, r, r, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return process.q_sample(X0.expand(n, -1, -1, -1), torch.full((n,), T - 1), z), z


def z_scores(x, mu, sigma):
    """|z| of the empirical mean and covariance entries of x (N, d) against N(mu, sigma^2 I); Gaussian standard errors
    sigma / sqrt(N) and sigma^2 sqrt((1 + [i = j]) / N)."""
    n, d = x.shape
    mean = x.mean(0)
    cov = (x - mean).T @ (x - mean) / (n - 1)
    z_mean = (mean - mu).abs() / (sigma / n**0.5)
    se = sigma**2 * ((1 + torch.eye(d, dtype=x.dtype)) / n).sqrt()
    z_cov = ((cov - sigma**2 * torch.eye(d, dtype=x.dtype)).abs() / se).triu()
    return torch.cat([z_mean, z_cov.flatten()])


def run_marginal_check(process, steps, eta):
    """Largest |z| over every kept step and the Bonferroni bound for FAMILY_ALPHA over all those comparisons."""
    x, _ = marginal_draws(process, DRAWS, seed=int(eta * 10) + len(steps))
    taken, worst, count = jumps(steps), [], 0

    def check(d):
        nonlocal count
        s = taken[d["i"]][1]
        a_s, sigma_s = (float(v) for v in process.schedule.a_sigma(s))
        n = d["x"].shape[-1]
        if s < 0:  # sigma = 0: the sampler must end at x_0 itself
            torch.testing.assert_close(d["x"], X0.expand_as(d["x"]), rtol=0, atol=1e-12)
            return
        z = z_scores(d["x"].reshape(len(d["x"]), -1), a_s * process.degrade(X0, n).flatten(), sigma_s)
        count += n * n + n * n * (n * n + 1) // 2
        worst.append(float(z.max()))

    sample(oracle(process), process, x, steps=steps, eta=eta, generator=torch.Generator().manual_seed(1),
           clip=False, callback=check, disable=True)  # fmt: skip
    bound = float(torch.special.ndtri(torch.tensor(1 - FAMILY_ALPHA / (2 * count), dtype=torch.float64)))
    return max(worst), bound


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("num_steps", [6, 20, pytest.param(None, marks=pytest.mark.slow)])
def test_every_kept_step_has_the_forward_marginal(process, eta, num_steps):
    """10k draws through the oracle: after each kept step (transitions and respaced jumps that start at one
    included) the empirical mean and covariance match N(a_s R_{1:s} x_0, sigma_s^2 I) within Monte-Carlo error."""
    steps = timesteps(process, num_steps)
    if num_steps == 6 and process.ladder.num_levels > 1:  # explicit steps whose jumps from a transition skip steps
        trans = set(process.ladder.transitions)
        steps = [s for s in steps if s + 1 not in trans or s in trans or s == 0]
        starts = {t for t, s in jumps(steps) if t in process.ladder.transitions}
        assert starts == set(process.ladder.transitions) and any(t - s > 1 for t, s in jumps(steps) if t in starts)
    worst, bound = run_marginal_check(process, steps, eta)
    assert worst < bound, f"max |z| = {worst:.2f} over the trajectory; Bonferroni bound {bound:.2f}"


def test_the_marginal_check_catches_eta_scaled_null_space_noise(monkeypatch):
    """Power: the naive generalisation that scales the null-space noise by eta too (0 at eta = 0) is rejected."""
    real = ddim.ddim_tables

    def naive(process, t, s, eta):
        alpha, std = real(process, t, s, eta)
        return alpha, torch.where(alpha > 0, std, eta * std)

    monkeypatch.setattr(ddim, "ddim_tables", naive)
    ddim._transition_tables.cache_clear()  # the device copies of the tables are cached per transition
    worst, bound = run_marginal_check(make_process(3), timesteps(make_process(3), 6), 0.0)
    ddim._transition_tables.cache_clear()
    assert worst > 10 * bound


def test_eta_zero_oracle_ddpm_keeps_its_noise_and_ends_at_x0():
    """DDPM, eta = 0, oracle: x_s = a_s x_0 + sigma_s eps for the one eps of x_{T-1}, at every step, then x_0."""
    proc = make_process(1)
    x, eps = marginal_draws(proc, 16, seed=3)
    seen = []
    out = sample_ddim(oracle(proc), proc, x, steps=7, generator=torch.Generator().manual_seed(0),
                      callback=lambda d: seen.append(d["x"]), disable=True)  # fmt: skip
    for (t, s), x_s in zip(jumps(respaced_steps(proc, 7)), seen):
        a_s, sigma_s = (float(v) for v in proc.schedule.a_sigma(s))
        torch.testing.assert_close(x_s, a_s * X0 + sigma_s * eps, rtol=0, atol=1e-12)
    torch.testing.assert_close(out, X0.expand_as(out), rtol=0, atol=0)


def toy_denoiser(x, t, out_res, labels):
    x = torch.nn.functional.interpolate(x, size=(out_res, out_res), mode="nearest")
    return torch.tanh(x * (1 + t.view(-1, 1, 1, 1) / 100))


def draw(process, steps, eta, prior_seed=0, step_seeds=None, batch=4):
    g = image_noise(prior_seed, range(batch))
    x = prior(process, batch, 2, g)
    if step_seeds is not None:
        g = [torch.Generator().manual_seed(k) for k in step_seeds]
    return sample_ddim(toy_denoiser, process, x, steps=steps, eta=eta, generator=g, disable=True)


@pytest.mark.parametrize("steps", [None, 8])
def test_eta_one_is_the_ancestral_sampler_bit_for_bit(process, steps):
    g = torch.Generator().manual_seed(0)
    ancestral = sample_ancestral(toy_denoiser, process, prior(process, 3, 2, g), steps=timesteps(process, steps),
                                 generator=g, disable=True)  # fmt: skip
    g = torch.Generator().manual_seed(0)
    assert torch.equal(sample_ddim(toy_denoiser, process, prior(process, 3, 2, g), steps=steps, eta=1.0,
                                   generator=g, disable=True), ancestral)  # fmt: skip
    if steps is not None:
        g = torch.Generator().manual_seed(0)
        x = prior(process, 3, 2, g)
        assert torch.equal(sample_respaced(toy_denoiser, process, x, steps=steps, generator=g, disable=True), ancestral)


@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_per_image_noise_make_ddim_independent_of_batching(process, eta):
    whole = draw(process, 8, eta, batch=6)
    parts = []
    for idx in ([0, 1], [2, 3, 4, 5]):
        g = image_noise(0, idx)
        parts.append(sample_ddim(toy_denoiser, process, prior(process, len(idx), 2, g), steps=8, eta=eta,
                                 generator=g, disable=True))  # fmt: skip
    assert torch.equal(torch.cat(parts), whole)


def test_eta_zero_randomness_is_only_the_prior_and_the_null_space_noise():
    """Same prior, other step noise: DDPM gives the same images, SSD other ones (fresh noise at transitions).
    Another prior seed changes both."""
    ddpm, ssd = make_process(1), make_process(3)
    for proc, same in ((ddpm, True), (ssd, False)):
        a = draw(proc, 8, 0.0)
        assert torch.equal(draw(proc, 8, 0.0), a)
        assert torch.equal(draw(proc, 8, 0.0, step_seeds=[11, 12, 13, 14]), a) is same
        assert not torch.allclose(draw(proc, 8, 0.0, prior_seed=1), a)


def test_sample_validates_eta_and_resolution(process):
    x = prior(process, 1, 2, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        sample_ddim(toy_denoiser, process, x, eta=1.5, disable=True)
    with pytest.raises(ValueError, match="lives at"):
        sample_ddim(toy_denoiser, process, torch.randn(1, 2, 16, 16), disable=True)
