import pytest
import torch

from conftest import train_and_save

from scale_space_diffusion.diffusion.schedule import NoiseSchedule
from scale_space_diffusion.models.settings import Optimization, Sampling
from scale_space_diffusion.models.ddpm import DDPM
from scale_space_diffusion.io.loading import load_model
from scale_space_diffusion.models.spectral import SpectralDiffusion
from scale_space_diffusion.networks.spectral_unet import SpectralUNet
from scale_space_diffusion.networks.unet import UNet

NET = dict(image_size=16, in_channels=1, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(8,), num_heads=2)


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory):
    teacher = DDPM(UNet(**NET, model_channels=32), schedule=NoiseSchedule(timesteps=100), optim=Optimization(ema_decay=None), sampling=Sampling(grid_size=0))
    return train_and_save(teacher, tmp_path_factory.mktemp("t") / "teacher.ckpt")


def student(teacher, **kw):
    model = SpectralDiffusion(SpectralUNet(**NET, model_channels=8), teacher=teacher, **kw,
                              schedule=NoiseSchedule(timesteps=100), optim=Optimization(ema_decay=None))
    model.prepare_fit()  # what setup("fit") does: read the teacher
    return model


def test_teacher_is_frozen_unsaved_and_gets_no_gradient(teacher_ckpt):
    model = student(teacher_ckpt)
    batch = (torch.rand(4, 1, 16, 16) * 2 - 1, torch.zeros(4, dtype=torch.long))
    loss = model.training_step(batch, 0)
    loss.backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    assert all(not p.requires_grad for p in model.teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.net.parameters())
    assert all(p.grad is not None for p in model.align.parameters())
    assert not any(k.startswith(("teacher", "_teacher")) for k in model.state_dict())
    assert model.matched == [8, 16]


def test_distillation_adds_to_the_denoising_loss(teacher_ckpt):
    torch.manual_seed(0)
    plain = student(None, spatial_weight=0.1, spectral_weight=0.1)
    distilled = student(teacher_ckpt)
    distilled.net.load_state_dict(plain.net.state_dict())
    batch = (torch.rand(4, 1, 16, 16) * 2 - 1, torch.zeros(4, dtype=torch.long))
    torch.manual_seed(1)
    l_plain = plain.training_step(batch, 0)
    torch.manual_seed(1)
    l_distilled = distilled.training_step(batch, 0)
    assert l_distilled > l_plain


def test_load_model_rebuilds_the_teacher(teacher_ckpt):
    model = load_model(teacher_ckpt)
    assert type(model) is DDPM and model.net.config["model_channels"] == 32 and not model.training


def test_gating_off_uses_conv_resampling():
    net = SpectralUNet(**NET, model_channels=8, gating=False)
    assert isinstance(net.enc["8x8_down"], torch.nn.Conv2d)
    assert type(SpectralUNet(**NET, model_channels=8).enc["8x8_down"]).__name__ == "WGDown"


def test_the_teacher_is_read_when_fit_starts_not_when_the_student_is_built(tmp_path):
    missing = str(tmp_path / "gone.ckpt")
    model = SpectralDiffusion(SpectralUNet(**NET, model_channels=8), teacher=missing)  # builds: sampling needs no teacher
    assert model.teacher is None and model.sample([torch.Generator().manual_seed(0)], sampling=Sampling(steps=2)).shape == (1, 1, 16, 16)
    with pytest.raises(FileNotFoundError, match="gone.ckpt"):
        model.prepare_fit()


def test_an_x0_teacher_distils_an_eps_student_through_the_parameterisation(tmp_path):
    """The teacher's output is matched in the student's parameterisation: an x0 teacher's x0_hat becomes eps_hat."""
    from scale_space_diffusion.diffusion.loss import DiffusionLoss

    teacher = DDPM(UNet(**NET, model_channels=32), schedule=NoiseSchedule(timesteps=100), loss=DiffusionLoss("x0"),
                   optim=Optimization(ema_decay=None), sampling=Sampling(grid_size=0))  # fmt: skip
    model = student(train_and_save(teacher, tmp_path / "x0_teacher.ckpt"))
    assert model.teacher_parameterization.prediction == "x0" and model.loss_fn.prediction == "eps"
    seen = {}
    real = model.distill.__class__.__call__
    model.distill.__class__.__call__ = lambda self, s, t, x0: seen.update(out=t[-1]) or real(self, s, t, x0)
    try:
        model.training_step((torch.rand(2, 1, 16, 16) * 2 - 1, torch.zeros(2, dtype=torch.long)), 0)
    finally:
        model.distill.__class__.__call__ = real
    assert torch.isfinite(seen["out"]).all() and seen["out"].std() > 0.1  # eps-scale, not an x0 in [-1, 1] copied


def test_the_teacher_teaches_with_its_ema_weights():
    """A teacher trained with EMA is scored by its EMA samples; the student must match that network, not the raw
    weights of its last optimizer step."""
    teacher = DDPM(UNet(**NET, model_channels=32), schedule=NoiseSchedule(timesteps=100),
                   optim=Optimization(ema_decay=0.5, ema_start_step=0), sampling=Sampling(grid_size=0))  # fmt: skip
    teacher.net_ema.update(teacher.net)
    with torch.no_grad():
        for p in teacher.net.parameters():
            p.add_(1.0)  # the raw weights move on
    model = student(None)
    model.attach_teacher(teacher)
    assert model.teacher is teacher.net_ema.module and model.teacher is not teacher.net
    plain = DDPM(UNet(**NET, model_channels=32), schedule=NoiseSchedule(timesteps=100), optim=Optimization(ema_decay=None))
    model.attach_teacher(plain)  # no EMA (or not started): the raw weights are all there is
    assert model.teacher is plain.net


def test_match_features_false_matches_the_output_alone(teacher_ckpt):
    model = student(teacher_ckpt, match_features=False)
    assert model.matched == [] and len(model.align) == 0
    seen = {}
    real = model.distill.__class__.__call__
    model.distill.__class__.__call__ = lambda self, s, t, x0: seen.update(n=len(s)) or real(self, s, t, x0)
    try:
        model.training_step((torch.rand(2, 1, 16, 16) * 2 - 1, torch.zeros(2, dtype=torch.long)), 0)
    finally:
        model.distill.__class__.__call__ = real
    assert seen["n"] == 1
