import pytest
import torch

from scale_space_diffusion.diffusion.loss import DiffusionLoss
from scale_space_diffusion.diffusion.schedule import NoiseSchedule
from scale_space_diffusion.models.settings import Optimization, Sampling
from scale_space_diffusion.diffusion.rng import image_noise
from scale_space_diffusion.models.ddpm import DDPM
from scale_space_diffusion.models.ssd import ScaleSpaceDiffusion
from scale_space_diffusion.networks.flexi_unet import FlexiUNet
from scale_space_diffusion.networks.unet import UNet

NET = dict(image_size=16, in_channels=1, model_channels=16, channel_mult=(1, 2, 2), num_res_blocks=1,
           attention_resolutions=(8,), num_heads=2)  # fmt: skip


def perturbed(net, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return net


def test_one_level_ssd_is_ddpm_with_x0_prediction():
    net = perturbed(FlexiUNet(**NET))
    ssd = ScaleSpaceDiffusion(net, num_levels=1, schedule=NoiseSchedule(timesteps=100), optim=Optimization(ema_decay=None)).eval()
    ddpm = DDPM(UNet(**NET), schedule=NoiseSchedule(timesteps=100), loss=DiffusionLoss(prediction="x0", weighting="min_snr"), optim=Optimization(ema_decay=None)).eval()
    ddpm.net.load_state_dict(net.state_dict(), strict=False)
    x0 = torch.rand(4, 1, 16, 16) * 2 - 1
    t, noise = torch.tensor([0, 10, 50, 99]), torch.randn(4, 1, 16, 16)
    with torch.no_grad():
        l_ssd = ssd.loss_fn(ssd.raw_network, ssd.process, x0, t, noise)
        l_ddpm = ddpm.loss_fn(ddpm.raw_network, ddpm.process, x0, t, noise)
    torch.testing.assert_close(l_ssd, l_ddpm, rtol=0, atol=0)
    gens = lambda: image_noise(0, torch.arange(3))  # noqa: E731
    torch.testing.assert_close(ssd.sample(gens(), sampling=Sampling(steps=20)), ddpm.sample(gens(), sampling=Sampling(steps=20)), rtol=0, atol=0)


@pytest.mark.parametrize("unet_mode", ["flexi", "full"])
def test_training_step_at_transitions_and_plain_steps(unet_mode):
    model = ScaleSpaceDiffusion(FlexiUNet(**NET), num_levels=3, unet_mode=unet_mode, schedule=NoiseSchedule(timesteps=50), optim=Optimization(ema_decay=None))
    x0 = torch.rand(3, 1, 16, 16) * 2 - 1
    for t in [*model.process.ladder.transitions, 0, 49]:
        r = model.process.ladder.res(t)
        loss = model.loss_fn(model.raw_network, model.process, x0, torch.full((3,), t), torch.randn(3, 1, r, r))
        assert loss.shape == (3,) and torch.isfinite(loss).all()
        loss.mean().backward()
    images = model.sample(image_noise(0, torch.arange(2)), sampling=Sampling(steps=8))
    assert images.shape == (2, 1, 16, 16)


def test_ladder_strip_trajectory_visits_every_level():
    model = ScaleSpaceDiffusion(FlexiUNet(**NET), num_levels=3, schedule=NoiseSchedule(timesteps=50), optim=Optimization(ema_decay=None))
    sizes = []
    model.sample(image_noise(0, torch.arange(1)), sampling=Sampling(steps=10), callback=lambda d: sizes.append(d["x"].shape[-1]))
    assert set(sizes) == {4, 8, 16} and sizes == sorted(sizes)  # 16px with 3 levels: 4 -> 8 -> 16, never back


def test_nan_loss_names_step_and_t():
    model = DDPM(UNet(**NET), optim=Optimization(ema_decay=None))
    with torch.no_grad():
        next(model.net.parameters()).fill_(float("nan"))
    batch = (torch.zeros(2, 1, 16, 16), torch.zeros(2, dtype=torch.long))
    model.training_step(batch, 0)  # the guard records on the device; nothing is read on the host per step
    with pytest.raises(FloatingPointError, match=r"non-finite train loss nan at global step 0 with t in \[\d+, \d+\]"):
        model.nonfinite.check("train")
