import pytest
import torch

from scale_space_diffusion.diffusion.degradation import Resize
from scale_space_diffusion.diffusion.ladder import ResolutionLadder
from scale_space_diffusion.diffusion.process import ScaleSpaceProcess
from scale_space_diffusion.diffusion.sampler import prior, respaced_steps, sample_ancestral, sample_respaced
from scale_space_diffusion.diffusion.schedule import NoiseSchedule


def toy_model(x, t, out_res, labels):
    """A deterministic stand-in denoiser: a smooth function of x_t at the output resolution."""
    x = torch.nn.functional.interpolate(x, size=(out_res, out_res), mode="nearest")
    return torch.tanh(x * (1 + t.view(-1, 1, 1, 1) / 1000))


@pytest.fixture(params=[1, 3], ids=["ddpm", "ssd3"])
def process(request):
    T = 60
    return ScaleSpaceProcess(NoiseSchedule.make("cosine", T), ResolutionLadder(16, request.param, T), Resize())


def draw(process, batch=3, seed=0, **kw):
    g = torch.Generator().manual_seed(seed)
    return sample_ancestral(toy_model, process, prior(process, batch, 2, g), generator=g, disable=True, **kw)


def test_seeded_sampling_is_deterministic(process):
    a, b, c = draw(process), draw(process), draw(process, seed=1)
    assert a.shape == (3, 2, 16, 16)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_respaced_with_all_steps_equals_full(process):
    g = torch.Generator().manual_seed(0)
    x = sample_respaced(toy_model, process, prior(process, 3, 2, g), steps=process.T, generator=g, disable=True)
    assert torch.equal(x, draw(process))


def test_respacing_keeps_every_transition(process):
    steps = respaced_steps(process, 5)
    assert set(process.ladder.transitions) <= set(steps) and steps[0] == process.T - 1 and steps[-1] == 0
    assert {t - 1 for t in process.ladder.transitions} <= set(steps)  # the new resolution refines at once
    g = torch.Generator().manual_seed(0)
    x = sample_respaced(toy_model, process, prior(process, 2, 2, g), steps=5, generator=g, disable=True)
    assert x.shape == (2, 2, 16, 16) and torch.isfinite(x).all()


def test_per_sample_generators_make_images_independent_of_batching(process):
    gens = lambda seeds: [torch.Generator().manual_seed(s) for s in seeds]  # noqa: E731
    def run(seeds):
        g = gens(seeds)
        return sample_respaced(toy_model, process, prior(process, len(seeds), 2, g), steps=10, generator=g, disable=True)
    whole = run([7, 8, 9, 10])
    torch.testing.assert_close(torch.cat([run([7, 8]), run([9, 10])]), whole, rtol=0, atol=0)


def test_callback_sees_every_resolution(process):
    seen = []
    draw(process, callback=lambda d: seen.append(d["x"].shape[-1]))
    assert sorted(set(seen)) == sorted(set(process.ladder.resolutions))


def test_prior_resolution_is_checked(process):
    with pytest.raises(ValueError, match="lives at"):
        sample_ancestral(toy_model, process, torch.randn(1, 2, 32, 32), disable=True)
