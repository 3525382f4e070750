"""The models' sampling options: the DDIM sampler, classifier-free guidance and label dropout, wired end to end."""

import pytest
import torch

from scale_space_diffusion.diffusion.rng import image_noise
from scale_space_diffusion.diffusion.schedule import NoiseSchedule
from scale_space_diffusion.models.ddpm import DDPM
from scale_space_diffusion.models.settings import Optimization, Sampling
from scale_space_diffusion.models.ssd import ScaleSpaceDiffusion
from scale_space_diffusion.networks.flexi_unet import FlexiUNet
from scale_space_diffusion.networks.unet import UNet

NET = dict(image_size=16, in_channels=1, model_channels=8, channel_mult=(1, 2), num_res_blocks=1,
           attention_resolutions=(), num_heads=2)  # fmt: skip
T50 = NoiseSchedule(timesteps=50)


def ssd(**sampling) -> ScaleSpaceDiffusion:
    torch.manual_seed(0)
    net = FlexiUNet(**NET)
    for p in net.parameters():  # an untrained net outputs ~0; random weights make the samplers' differences visible
        torch.nn.init.normal_(p, std=0.1)
    return ScaleSpaceDiffusion(net, num_levels=2, schedule=T50, optim=Optimization(ema_decay=None),
                               sampling=Sampling(steps=6, **sampling)).eval()  # fmt: skip


def test_ddim_eta_0_is_deterministic_where_ancestral_is_not_and_both_keep_the_seed_contract():
    ddim, ancestral = ssd(sampler="ddim", eta=0.0), ssd(sampler="ancestral")
    x = ddim.sample(image_noise(0, range(3)))
    assert torch.equal(x, ddim.sample(image_noise(0, range(3))))
    assert torch.equal(x[1:], ddim.sample(image_noise(0, [1, 2])))  # independent of the batch
    assert not torch.allclose(x, ancestral.sample(image_noise(0, range(3))))
    assert ssd(sampler="ddim", eta=1.0).sample(image_noise(0, range(3))).allclose(
        ancestral.sample(image_noise(0, range(3))), atol=1e-5)  # eta = 1 is ancestral sampling


def test_one_generator_and_num_images_sample_a_batch():
    model = ssd()
    assert model.sample(torch.Generator().manual_seed(0), num_images=5).shape == (5, 1, 16, 16)
    assert model.sample(torch.Generator().manual_seed(0)).shape == (1, 1, 16, 16)


def cond_ddpm(w: float, p: float = 0.1, null_class: bool = True) -> DDPM:
    torch.manual_seed(0)
    net = UNet(**NET, num_classes=3, null_class=null_class)
    for q in net.parameters():
        torch.nn.init.normal_(q, std=0.1)
    return DDPM(net, T50, optim=Optimization(ema_decay=None, cond_drop_prob=p),
                sampling=Sampling(steps=4, guidance_scale=w)).eval()  # fmt: skip


def test_guidance_scale_1_is_the_conditional_and_0_the_unconditional_prediction():
    x, t, labels = torch.randn(4, 1, 16, 16), torch.full((4,), 30), torch.tensor([0, 1, 2, 1])
    cond = cond_ddpm(1.0).denoiser()(x, t, 16, labels)
    uncond = cond_ddpm(1.0).denoiser()(x, t, 16, torch.full((4,), -1))
    assert torch.equal(cond_ddpm(0.0).denoiser()(x, t, 16, labels), uncond)
    torch.testing.assert_close(cond_ddpm(3.0).denoiser()(x, t, 16, labels), uncond + 3 * (cond - uncond))


@pytest.mark.parametrize("p, null_class, match", [
    (0.0, True, r"trained with optim\.cond_drop_prob=0.* train with --model\.init_args\.optim\.cond_drop_prob=0\.1"),
    (0.1, False, r"null-label embedding; build the net with num_classes and null_class=true"),
])  # fmt: skip
def test_guidance_without_a_trained_unconditional_model_is_refused(p, null_class, match):
    with pytest.raises(ValueError, match=match):
        cond_ddpm(2.0, p, null_class).sample(image_noise(0, range(2)), torch.tensor([0, 1]))


def test_label_dropout_replaces_labels_by_minus_one_reproducibly_in_training_only():
    model = cond_ddpm(1.0, p=0.5).train()
    seen = []
    model.net.register_forward_pre_hook(lambda m, args: seen.append(args[2].clone()))
    batch = (torch.rand(16, 1, 16, 16) * 2 - 1, torch.arange(16) % 3)
    model.training_step(batch, 0)
    model.training_step(batch, 0)
    assert torch.equal(seen[0], seen[1]) and 0 < (seen[0] == -1).sum() < 16
    assert torch.equal(seen[0][seen[0] >= 0], batch[1][seen[0] >= 0])  # the rest keep their labels
    model.eval().validation_step(batch, 0)
    assert (seen[2] >= 0).all()  # validation sees every label
