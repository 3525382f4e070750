"""Spectral Diffusion (Yang et al., "Diffusion Probabilistic Model Made Slim", CVPR 2023, arXiv 2211.17106).

A slim wavelet-gated UNet trained with L = L_denoise + lambda_s L_spatial + lambda_f L_freq, distilled from a
frozen DDPM teacher. The teacher is read only when ``fit`` starts: a trained student's checkpoint is self-contained
(its feature adapters are rebuilt from the checkpoint's shapes) and samples after the teacher file is gone. Features are matched at the end of every decoder level and at the output; student
features are mapped to the teacher's width by learned 1x1 convs. No official code exists: our choices are
listed in the README's "Spectral Diffusion" section.
Deviation: pixel space, not latent (no pretrained autoencoder offline); the teacher is our DDPM.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..diffusion.loss import DiffusionLoss
from ..diffusion.schedule import NoiseSchedule
from ..diffusion.spectral_loss import SpectralDistillationLoss
from .base import CompileMode
from .ddpm import DDPM
from .settings import Optimization, Sampling


class _Frozen:
    """Holds the teacher outside the module tree: not trained, not saved, not copied by EMA."""

    def __init__(self, module: nn.Module):
        self.module = module

    def __deepcopy__(self, memo):
        return self


class SpectralDiffusion(DDPM):
    """A slim student trained with the spectrum-aware distillation loss from a DDPM teacher.

    Args:
        net: usually a SpectralUNet.
        teacher: checkpoint of a trained DDPM, read when fit starts; None trains the slim net plainly. Sampling,
            test and predict never read it.
        spatial_weight: lambda_s, the weight of the feature MSE.
        spectral_weight: lambda_f, the weight of the frequency-weighted feature loss.
        alpha: exponent of omega = |FFT2(x_0)|^alpha.
        match_features: match the last decoder block at every shared resolution as well as the network output;
            False matches the output alone (the teacher's prediction as a second regression target).
        schedule: the noise schedule; must equal the teacher's.
        loss: what the network predicts and the per-timestep weighting; a teacher of the other parameterisation (e.g.
            a DDPM-x0 teacher for an eps student) has its output converted through x0_hat before it is matched.
        optim: AdamW and EMA settings of the student (its feature adapters included).
        sampling: how the student samples: steps, seeds and sample grids.
        torch_compile: torch.compile the network and its EMA, one static-shape graph per network path: true (mode
            "default") or a mode; "reduce-overhead" runs each path as a CUDA graph (the GPU's fast path). Off on
            CPU unless measured faster there; the first step of each path prints its compile time.
    """

    run_settings = DDPM.run_settings + ("teacher", "spatial_weight", "spectral_weight", "alpha", "match_features")
    training_files = ("teacher",)

    def __init__(
        self,
        net: nn.Module,
        teacher: str | None = None,
        spatial_weight: float = 0.1,
        spectral_weight: float = 0.1,
        alpha: float = -1.0,
        match_features: bool = True,
        schedule: NoiseSchedule = NoiseSchedule(),
        loss: DiffusionLoss = DiffusionLoss("eps", "constant"),
        optim: Optimization = Optimization(),
        sampling: Sampling = Sampling(),
        torch_compile: bool | CompileMode = False,
    ):
        super().__init__(net, schedule, loss, optim, sampling, torch_compile)
        self.save_hyperparameters(ignore=["net"])
        self.distill = SpectralDistillationLoss(spatial_weight, spectral_weight, alpha)
        self.match_features = match_features
        self.teacher_path = None if teacher is None else str(teacher)  # a Path would not load weights_only
        self._teacher: _Frozen | None = None
        self.align = nn.ModuleDict()  # student -> teacher width, per matched resolution

    def prepare_fit(self) -> None:
        """Read the teacher checkpoint (if one is named and none is attached yet)."""
        if self.teacher_path is not None and self._teacher is None:
            from ..io.loading import load_model  # io imports models: an entry point imports it in its body

            self.attach_teacher(load_model(self.teacher_path, expected=DDPM, what="teacher"), self.teacher_path)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        for key, weight in checkpoint["state_dict"].items():  # adapters of a distilled student, teacher or not
            res = key.split(".")[1] if key.startswith("align.") and key.endswith(".weight") else None
            if res is not None and res not in self.align:
                self.align[res] = nn.Conv2d(weight.shape[1], weight.shape[0], 1)

    def attach_teacher(self, teacher: DDPM, source: str = "the teacher") -> None:
        """Check ``teacher`` against the student, freeze it, and add the 1x1 feature adapters it needs."""
        if type(teacher) is not DDPM:
            raise TypeError(
                f"{source} holds a {type(teacher).__name__}, but the teacher must be a plain DDPM; "
                "pass the .ckpt of a DDPM (e.g. trained with configs/ddpm_*.yaml)"
            )
        if teacher.process.schedule != self.process.schedule:
            raise ValueError(
                f"{source} has schedule {teacher.process.schedule} but the student {self.process.schedule}; set the "
                "student's schedule to the teacher's, they must share the noise process"
            )
        t_net, s_net = teacher.net, self.net
        if (t_net.image_size, t_net.in_channels) != (s_net.image_size, s_net.in_channels):
            raise ValueError(
                f"teacher images are {t_net.in_channels}x{t_net.image_size}px but the student's are "
                f"{s_net.in_channels}x{s_net.image_size}px; set the student net's in_channels={t_net.in_channels} "
                f"and image_size={t_net.image_size} (and the data's) to match"
            )
        teacher.requires_grad_(False).eval()
        self._teacher = _Frozen(teacher.sampling_net)  # the weights it samples with: its EMA once that has started
        self.teacher_parameterization = teacher.loss_fn.parameterization  # its output is converted to the student's
        self.matched = sorted(set(t_net.levels) & set(s_net.levels)) if self.match_features else []
        for res in self.matched:
            if str(res) not in self.align:
                self.align[str(res)] = nn.Conv2d(s_net.level_channels[res], t_net.level_channels[res], 1)

    @property
    def teacher(self) -> nn.Module | None:
        return None if self._teacher is None else self._teacher.module

    def loss_terms(self, x0: Tensor, t: Tensor, noise: Tensor, labels: Tensor | None, out_res: int,
                   net: nn.Module | None = None) -> tuple[Tensor, dict[str, Tensor]]:  # fmt: skip
        """The denoising loss, plus lambda_s L_spatial and lambda_f L_freq against the teacher on the same x_t."""
        if self.teacher is None:
            return super().loss_terms(x0, t, noise, labels, out_res, net)
        net = self.net if net is None else net
        seen: dict = {"features": {}}

        def student(x_t: Tensor, t: Tensor, out_res: int, labels: Tensor | None) -> Tensor:
            seen["x_t"], seen["out"] = x_t, net(x_t, t, labels, features=seen["features"])
            return seen["out"]

        per_sample = self.loss_fn(student, self.process, x0, t, noise, labels, out_res)
        self.teacher.to(x0.device)  # the teacher moves with the student
        teacher_features: dict[int, Tensor] = {}
        with torch.no_grad():
            teacher_out = self.teacher(seen["x_t"], t, labels, features=teacher_features)
            teacher_out = self.teacher_parameterization.convert(teacher_out.float(), seen["x_t"], t, self.process.schedule,
                                                                self.loss_fn.parameterization)  # fmt: skip
        s_feats = [self.align[str(r)](seen["features"][r]) for r in self.matched] + [seen["out"]]
        t_feats = [teacher_features[r] for r in self.matched] + [teacher_out]
        terms = self.distill(s_feats, t_feats, x0)
        return per_sample, {"spatial": self.distill.spatial_weight * terms["spatial"],
                            "freq": self.distill.freq_weight * terms["freq"]}  # fmt: skip
