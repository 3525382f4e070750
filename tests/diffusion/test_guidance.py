"""Classifier-free guidance (G1) and label dropping: exact at w = 0 and 1, linear between, one batched call."""

import pytest
import torch

from scale_space_diffusion.diffusion.guidance import drop_labels, guided
from scale_space_diffusion.diffusion.parameterization import Parameterization
from scale_space_diffusion.diffusion.schedule import NoiseSchedule
from scale_space_diffusion.networks.unet import UNet


class Recorder:
    """A RawNetwork that logs the batch size of each call: a label-dependent function of x_t and t."""

    def __init__(self):
        torch.manual_seed(0)
        self.net = UNet(image_size=8, in_channels=2, model_channels=8, channel_mult=(1, 2), num_res_blocks=1,
                        attention_resolutions=(), num_heads=1, num_classes=3, null_class=True).eval()  # fmt: skip
        with torch.no_grad():
            for p in self.net.parameters():
                p.add_(0.1 * torch.randn_like(p))
        self.calls = []

    def __call__(self, x_t, t, out_res, labels):
        self.calls.append(len(x_t))
        return self.net(x_t, t, labels)


@pytest.fixture
def case():
    g = torch.Generator().manual_seed(0)
    return Recorder(), torch.randn(4, 2, 8, 8, generator=g), torch.tensor([5, 90, 400, 999]), torch.tensor([0, 2, 1, 2])


@torch.no_grad()
def test_w_one_is_the_conditional_call_and_w_zero_the_unconditional_one(case):
    raw, x, t, labels = case
    cond, uncond = raw(x, t, 8, labels), raw(x, t, 8, torch.full_like(labels, -1))
    assert not torch.allclose(cond, uncond)  # the labels matter
    raw.calls.clear()
    assert torch.equal(guided(raw, 1.0)(x, t, 8, labels), cond) and raw.calls == [4]  # no unconditional half
    assert torch.equal(guided(raw, 0.0)(x, t, 8, labels), uncond) and raw.calls == [4, 4]


@pytest.mark.parametrize("w", [0.5, 3.0, -1.0])
@torch.no_grad()
def test_w_between_is_the_linear_combination_from_one_batched_call(case, w):
    raw, x, t, labels = case
    cond, uncond = raw(x, t, 8, labels), raw(x, t, 8, torch.full_like(labels, -1))  # two separate calls
    raw.calls.clear()
    out = guided(raw, w)(x, t, 8, labels)
    assert raw.calls == [8]  # one call on the doubled batch
    torch.testing.assert_close(out, (1 - w) * uncond + w * cond, rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_guiding_the_raw_output_guides_x0_hat_and_eps(case):
    """x0_hat = (x_t - sigma_t eps) / a_t is affine in eps for fixed x_t, t: mixing commutes with it."""
    raw, x, t, labels = case
    sched, param, w = NoiseSchedule.make("linear", 1000), Parameterization("eps"), 2.5
    x0 = lambda eps: param.x0(eps, x, t, sched)  # noqa: E731
    cond, uncond = raw(x, t, 8, labels), raw(x, t, 8, torch.full_like(labels, -1))
    mixed = x0(guided(raw, w)(x, t, 8, labels))
    torch.testing.assert_close(mixed, x0(uncond) + w * (x0(cond) - x0(uncond)), rtol=1e-4, atol=1e-4)


def test_guidance_needs_labels(case):
    raw, x, t, _ = case
    with pytest.raises(ValueError, match="needs labels"):
        guided(raw, 2.0)(x, t, 8, None)


def test_drop_labels_follows_its_generator():
    labels = torch.arange(20_000) % 7
    a = drop_labels(labels, 0.1, torch.Generator().manual_seed(3))
    assert torch.equal(a, drop_labels(labels, 0.1, torch.Generator().manual_seed(3)))  # resume-exact
    assert not torch.equal(a, drop_labels(labels, 0.1, torch.Generator().manual_seed(4)))
    dropped = a == -1
    assert torch.equal(a[~dropped], labels[~dropped])
    # Binomial(20000, 0.1): standard deviation sqrt(n p (1 - p)) ~ 42; allow 5 of them
    assert abs(int(dropped.sum()) - 2000) < 5 * (20_000 * 0.1 * 0.9) ** 0.5
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    assert drop_labels(labels, 0.0, g) is labels and torch.equal(g.get_state(), state)  # p = 0 draws nothing
    assert (drop_labels(labels, 1.0, g) == -1).all()
    with pytest.raises(ValueError, match="cond_drop_prob"):
        drop_labels(labels, 1.5, g)
