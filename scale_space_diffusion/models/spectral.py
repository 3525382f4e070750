"""Spectral Diffusion (Yang et al., "Diffusion Probabilistic Model Made Slim", CVPR 2023).

A slim wavelet-gated UNet trained with L = L_denoise + lambda_s L_spatial + lambda_f L_freq,
distilled from a frozen DDPM teacher. Features are matched at the end of every decoder level and
at the output; student features are mapped to the teacher's width by learned 1x1 convs. No official
code exists: our choices are listed in the README's "Spectral Diffusion" section.
Deviation: pixel space, not latent (no pretrained autoencoder offline); the teacher is our DDPM.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..diffusion.loss import Prediction, Weighting
from ..diffusion.schedule import BetaSchedule
from ..diffusion.spectral_loss import SpectralDistillationLoss
from .ddpm import DDPM
from .loading import load_model


class _Frozen:
    """Holds the teacher outside the module tree: not trained, not saved, not copied by EMA."""

    def __init__(self, module: nn.Module):
        self.module = module

    def __deepcopy__(self, memo):
        return self


def level_outputs(net: nn.Module) -> dict[int, str]:
    """Resolution -> key of the last decoder block at that level (its output is the level's feature)."""
    return {res: f"{res}x{res}_block{net.num_res_blocks}" for res in net.levels}


class SpectralDiffusion(DDPM):
    def __init__(
        self,
        net: nn.Module,  # usually a SpectralUNet
        teacher: str | None = None,  # checkpoint of a trained DDPM; None trains the slim net plainly
        spatial_weight: float = 0.1,  # lambda_s
        spectral_weight: float = 0.1,  # lambda_f
        alpha: float = -1.0,  # omega = |FFT2(x0)|^alpha
        beta_schedule: BetaSchedule = "linear",
        timesteps: int = 1000,
        prediction: Prediction = "eps",
        weighting: Weighting = "constant",
        snr_gamma: float = 5.0,
        lr: float = 2e-4,
        weight_decay: float = 0.0,
        ema_decay: float | None = 0.9999,
        ema_start_step: int = 0,
        sample_steps: int | None = 100,
        sample_seed: int = 0,
        grid_every_n_epochs: int = 1,
        grid_size: int = 16,
        loss_buckets: int = 4,
        torch_compile: bool = False,
    ):
        super().__init__(net, beta_schedule, timesteps, prediction, weighting, snr_gamma, lr, weight_decay,
                         ema_decay, ema_start_step, sample_steps, sample_seed, grid_every_n_epochs, grid_size,
                         loss_buckets, torch_compile)  # fmt: skip
        self.save_hyperparameters(ignore=["net"])
        self.distill = SpectralDistillationLoss(spatial_weight, spectral_weight, alpha)
        self._teacher: _Frozen | None = None
        self.align = nn.ModuleDict()
        if teacher is not None:
            self._attach_teacher(load_model(teacher, expected=DDPM), teacher)

    def _attach_teacher(self, teacher: DDPM, source: str = "the teacher") -> None:
        if type(teacher) is not DDPM:
            raise TypeError(
                f"{source} holds a {type(teacher).__name__}, but the teacher must be a plain DDPM; "
                "pass the .ckpt of a DDPM (e.g. trained with configs/ddpm_*.yaml)"
            )
        setting = lambda m: (m.hparams.get("beta_schedule"), m.process.T, m.loss_fn.prediction)  # noqa: E731
        if not teacher.process.schedule.same_as(self.process.schedule) or teacher.loss_fn.prediction != self.loss_fn.prediction:
            raise ValueError(
                f"{source} has (beta_schedule, timesteps, prediction) = {setting(teacher)} but the student "
                f"{setting(self)}; set the student's to the teacher's, they must share the noise schedule"
            )
        t_net, s_net = teacher.net, self.net
        if (t_net.image_size, t_net.in_channels) != (s_net.image_size, s_net.in_channels):
            raise ValueError(
                f"teacher images are {t_net.in_channels}x{t_net.image_size}px but the student's are "
                f"{s_net.in_channels}x{s_net.image_size}px; set the student net's in_channels={t_net.in_channels} "
                f"and image_size={t_net.image_size} (and the data's) to match"
            )
        teacher.requires_grad_(False).eval()
        self._teacher = _Frozen(teacher.net)
        self._feats: dict[str, dict[int, Tensor]] = {"student": {}, "teacher": {}}
        t_keys, s_keys = level_outputs(t_net), level_outputs(s_net)
        self.matched = sorted(set(t_keys) & set(s_keys))
        for res in self.matched:
            c_s, c_t = s_net.dec[s_keys[res]].res.conv1.out_channels, t_net.dec[t_keys[res]].res.conv1.out_channels
            self.align[str(res)] = nn.Conv2d(c_s, c_t, 1)
            for who, net, key in (("student", s_net, s_keys[res]), ("teacher", t_net, t_keys[res])):
                net.dec[key].register_forward_hook(lambda m, i, o, who=who, res=res: self._feats[who].__setitem__(res, o))

    @property
    def teacher(self) -> nn.Module | None:
        return None if self._teacher is None else self._teacher.module

    def network(self, x_t: Tensor, t: Tensor, out_res: int, labels: Tensor | None) -> Tensor:
        out = self.net(x_t, t, labels)
        self._last = (x_t, t, labels, out)
        return out

    def auxiliary_loss(self, images: Tensor, stage: str) -> Tensor | float:
        if self.teacher is None:
            return 0.0
        x_t, t, labels, out = self._last
        self.teacher.to(x_t.device)  # the teacher moves with the student
        with torch.no_grad():
            teacher_out = self.teacher(x_t, t, labels)
        student = [self.align[str(r)](self._feats["student"][r]) for r in self.matched] + [out]
        teacher = [self._feats["teacher"][r] for r in self.matched] + [teacher_out]
        terms = self.distill(student, teacher, images)
        self.log_dict({f"{stage}/spatial": terms["spatial"], f"{stage}/freq": terms["freq"]}, batch_size=len(images),
                      sync_dist=stage != "train")  # fmt: skip
        return terms["total"]
