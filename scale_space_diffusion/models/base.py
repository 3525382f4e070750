"""The shared LightningModule: composes a network, a ScaleSpaceProcess, a loss and a sampler.

Subclasses say how the network is called (:meth:`raw_network`), which process they use, and may add loss
terms (:meth:`loss_terms`); training, validation, test, sampling and checkpoints are shared.

EMA: the module holds ``net_ema`` (:class:`~.ema.EMA`), updated after every optimizer step. Nothing is ever swapped:
a checkpoint's ``state_dict`` holds the raw weights (``net.*``, the training state) and the EMA beside them
(``net_ema.module.*``); sampling, grids, validation, test and predict use the EMA once it has started.

The hot path reads no device value on the host: the host draws the batch's timesteps, decides the resolution and
the network path from them, and sends t and the noise from pinned memory; schedule tables live on the device; the
NaN guard (:class:`~.nonfinite.NonFiniteGuard`) is read only where the run synchronises anyway.
"""

from __future__ import annotations

from functools import partial
from typing import Literal

import lightning as L
import torch
from torch import Tensor, nn

from ..diffusion.denoiser import Denoiser
from ..diffusion.guidance import check_guidance, drop_labels
from ..diffusion.loss import DiffusionLoss
from ..diffusion.process import ScaleSpaceProcess
from ..diffusion.rng import Generator, ImageNoise, seeded_generator, to_device
from ..diffusion.sampler import prior, sample
from ..images import to_uint8
from ..lightning_internals import attached_trainer, summary_depth
from .checkpoint_state import CheckpointStateMixin
from .compiled import PathCompileLog, compile_in_place
from .ema import EMA
from .generate import GenerateMixin
from .nonfinite import NonFiniteGuard
from .settings import Optimization, Sampling

CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
LOSS_BUCKETS = 4  # validation and test losses are also logged per timestep quarter


class DiffusionModule(CheckpointStateMixin, GenerateMixin, L.LightningModule):
    """Training, validation, test and sampling shared by every model in this package."""

    def __init__(
        self,
        net: nn.Module,
        process: ScaleSpaceProcess,
        loss: DiffusionLoss,
        *,
        optim: Optimization = Optimization(),
        sampling: Sampling = Sampling(),
        torch_compile: bool | CompileMode = False,
    ):
        super().__init__()
        self.net, self.process, self.loss_fn = net, process, loss
        self.optim, self.sampling = optim, sampling
        self.torch_compile = torch_compile
        self._train_seed: int | None = None
        self.net_ema = EMA(net, optim.ema_decay, optim.ema_warmup) if optim.ema_decay is not None else None
        self.nonfinite = NonFiniteGuard()
        self.compile_log = PathCompileLog()  # with torch_compile: each training path's first step printed once

    # -- the network contract --------------------------------------------------------------
    def raw_network(self, x_t: Tensor, t: Tensor, out_res: int, labels: Tensor | None, net: nn.Module | None = None) -> Tensor:
        """The raw output of ``net`` (default: the trained ``self.net``) for x_t (B,C,r,r) at out_res: eps or x0."""
        return (self.net if net is None else net)(x_t, t, labels)

    def denoiser(self, sampling: Sampling | None = None) -> Denoiser:
        """The sampler's :class:`~scale_space_diffusion.diffusion.denoiser.Denoiser`: the sampling network (EMA once
        started), this model's parameterisation and schedule, and ``sampling``'s guidance scale (default: the model's)."""
        sampling = self.sampling if sampling is None else sampling
        raw = partial(self.raw_network, net=self.sampling_net)
        return Denoiser(raw, self.loss_fn.parameterization, self.process.schedule, sampling.guidance_scale)

    @property
    def sampling_net(self) -> nn.Module:
        """The EMA of the weights once it has started (a host-side count), else the raw network."""
        ema = self.net_ema
        return ema.module if ema is not None and ema.updates > 0 else self.net

    @property
    def weights_used(self) -> str:
        """"EMA" or "raw": what sampling, grids, validation and test use now (for log lines)."""
        return "raw" if self.sampling_net is self.net else "EMA"

    def net_path(self, in_res: int, out_res: int) -> tuple[int, int]:
        """The (input, output) resolutions the network itself runs for a denoiser call in_res -> out_res."""
        return (in_res, out_res)

    @property
    def channels(self) -> int:
        return self.net.in_channels

    @property
    def image_size(self) -> int:
        return self.process.ladder.image_size

    @property
    def conditional(self) -> bool:
        return bool(self.net.num_classes)

    # -- one step for train / val / test ---------------------------------------------------
    def loss_terms(self, x0: Tensor, t: Tensor, noise: Tensor, labels: Tensor | None, out_res: int,
                   net: nn.Module | None = None) -> tuple[Tensor, dict[str, Tensor]]:  # fmt: skip
        """(per-sample denoising loss (B,) of ``net``, extra weighted terms {name: scalar}); the loss is their sum.
        t (B,) is on the device; out_res = r(t-1) was read from the host's copy of t."""
        raw = partial(self.raw_network, net=net)
        return self.loss_fn(raw, self.process, x0, t, noise, labels, out_res), {}

    def _shared_step(self, batch, batch_idx: int, stage: str) -> Tensor:
        images, labels = batch
        if images.shape[1] != self.channels or images.shape[-1] != self.image_size:
            raise ValueError(
                f"data is {tuple(images.shape[1:])} but the model expects ({self.channels}, {self.image_size}, "
                f"{self.image_size}); set data.channels / data.image_size to match the model"
            )
        labels = labels if self.conditional else None
        # Randomness is a function of (seed, stage, step, batch): resumed runs repeat it exactly (training keys on
        # the optimizer step, not on Lightning's batch_idx, which restarts when a resumed run starts a new epoch).
        # Every rank draws the batch's resolution alike (one network path per step); t and noise are its own.
        # All of it is drawn on the host, where the resolution is decided, and sent from pinned memory.
        trainer = attached_trainer(self)
        accumulate = trainer.accumulate_grad_batches if trainer is not None else 1
        micro = batch_idx % accumulate if stage == "train" else batch_idx
        key = (self.train_seed, stage, self.global_step, micro)
        local = seeded_generator(*key, "rank", self.global_rank)
        if stage == "train" and labels is not None:  # classifier-free guidance: train the unconditional model too
            labels = drop_labels(labels, self.optim.cond_drop_prob, seeded_generator(*key, "rank", self.global_rank, "cfg"))
        t_host = self.process.ladder.sample_t(len(images), generator=local, shared=seeded_generator(*key))
        r, r_out = self.process.batch_res(t_host), self.process.batch_res(t_host - 1)
        noise = torch.randn(len(images), images.shape[1], r, r, generator=local)
        t, noise = to_device(t_host, self.device), to_device(noise, self.device).to(images.dtype)
        if stage == "train" and self.torch_compile:
            self.compile_log.start(self.net_path(r, r_out))
        net = self.net if stage == "train" else self.sampling_net
        per_sample, extra = self.loss_terms(images, t, noise, labels, r_out, net)
        denoise = per_sample.mean()
        loss = denoise + sum(extra.values())
        self.nonfinite.observe(stage, loss.detach(), self.global_step, t_host)
        sync, n = stage != "train", len(images)
        self.log(f"{stage}/loss", loss, prog_bar=stage == "train", sync_dist=sync, batch_size=n)
        self.log(f"{stage}/denoise", denoise, sync_dist=sync, batch_size=n)  # without extra terms
        self.log_dict({f"{stage}/{k}": v for k, v in extra.items()}, sync_dist=sync, batch_size=n)
        if stage != "train":  # per timestep quarter: sums on the device, counts and bucket names from the host
            bucket = t_host * LOSS_BUCKETS // self.process.T
            sums = torch.zeros(LOSS_BUCKETS, device=per_sample.device).index_add_(0, t * LOSS_BUCKETS // self.process.T,
                                                                                 per_sample.detach().float())  # fmt: skip
            for b, count in enumerate(torch.bincount(bucket, minlength=LOSS_BUCKETS).tolist()):
                if count:
                    self.log(f"{stage}/loss_t{b}", sums[b] / count, sync_dist=True, batch_size=count)
        return loss

    def training_step(self, batch, batch_idx):
        return self._shared_step(batch, batch_idx, "train")

    def validation_step(self, batch, batch_idx):
        return self._shared_step(batch, batch_idx, "val")

    def test_step(self, batch, batch_idx):
        return self._shared_step(batch, batch_idx, "test")

    # -- the NaN guard, read where the run synchronises anyway -------------------------------
    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self.compile_log.finish()
        trainer = attached_trainer(self)
        if trainer is not None and self.global_step % max(1, trainer.log_every_n_steps) == 0:
            self.nonfinite.check("train")

    def on_train_epoch_end(self) -> None:
        self.nonfinite.check("train")

    def on_validation_epoch_end(self) -> None:
        self.nonfinite.check("val")

    def on_test_epoch_end(self) -> None:
        self.nonfinite.check("test")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        self.nonfinite.check("train")  # never write non-finite weights over a good checkpoint
        super().on_save_checkpoint(checkpoint)

    def configure_optimizers(self):
        """AdamW; fused (one kernel for every parameter) when all parameters live on a GPU, as Lightning has moved
        them by now: the step is host-bound at small batches otherwise."""
        params = [p for p in self.parameters() if p.requires_grad]
        fused = bool(params) and all(p.device.type == "cuda" for p in params) or None
        return torch.optim.AdamW(params, lr=self.optim.lr, weight_decay=self.optim.weight_decay, fused=fused)

    def prepare_fit(self) -> None:
        """Load what training needs beyond the model's own weights (Spectral Diffusion: its teacher)."""

    @property
    def teacher(self) -> nn.Module | None:
        """A frozen network the loss distils from (Spectral Diffusion), else None."""
        return None

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.prepare_fit()
        T, steps = self.process.T, self.sampling.steps
        if steps is not None and not 1 <= steps <= T:
            raise ValueError(f"sampling.steps={steps} must be in 1..{T} (timesteps) or null (all steps)")
        trainer = attached_trainer(self)
        data = trainer.datamodule if trainer is not None and stage != "predict" else None
        data_classes = getattr(data, "num_classes", None) if self.conditional else None
        if data_classes and data_classes > self.net.num_classes:
            raise ValueError(
                f"the data has {data_classes} classes but the net has num_classes={self.net.num_classes}; set "
                f"--model.init_args.net.init_args.num_classes={data_classes}"
            )
        check_guidance(self.net, self.sampling.guidance_scale, self.optim.cond_drop_prob)
        if trainer is not None and stage == "fit":
            from lightning.pytorch.strategies import FSDPStrategy

            if self.net_ema is not None and isinstance(trainer.strategy, FSDPStrategy):
                raise ValueError(
                    f"ema_decay={self.optim.ema_decay} keeps an unsharded EMA copy of the network, which FSDP's "
                    "sharded parameters cannot update; set --model.init_args.optim.ema_decay=null with strategy=fsdp, "
                    "or use ddp"
                )
        self.compile_networks()

    def compile_networks(self) -> None:
        """torch.compile ``net`` and its EMA copy in place, once (:mod:`.compiled`)."""
        if self.torch_compile:
            mode = "default" if self.torch_compile is True else self.torch_compile
            compile_in_place((self.net, self.net_ema.module if self.net_ema is not None else None), mode)

    def optimizer_step(self, *args, **kwargs) -> None:
        """Lightning's step, then the EMA update (so every checkpoint of step k holds the EMA of step k).

        The EMA is updated from ``ema_start_step`` on; its first update copies the weights.
        """
        super().optimizer_step(*args, **kwargs)
        if self.net_ema is not None and self.global_step - 1 >= self.optim.ema_start_step:
            self.net_ema.update(self.net)

    def configure_callbacks(self):
        """The run lifecycle (end of fit saved, Ctrl-C and SIGTERM checkpointed) and the sample grids, unless the
        Trainer has them, and a model summary without Lightning's "Total Flops 0" in place of the default one."""
        from lightning.pytorch.callbacks import ModelSummary

        from ..callbacks import QuietModelSummary, RunLifecycle, SampleGrids

        callbacks = self.trainer.callbacks
        extra = [] if any(isinstance(cb, RunLifecycle) for cb in callbacks) else [RunLifecycle()]
        if self.sampling.grid_size and not any(isinstance(cb, SampleGrids) for cb in callbacks):
            extra.append(SampleGrids())
        summaries = [cb for cb in callbacks if type(cb) is ModelSummary]  # Lightning's default (or a user's plain one)
        return extra + [QuietModelSummary(max_depth=summary_depth(cb)) for cb in summaries[:1]]

    # -- sampling ------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        generator: Generator = None,
        labels: Tensor | None = None,
        *,
        sampling: Sampling | None = None,
        callback=None,
        progress: bool = False,
        num_images: int | None = None,
    ) -> Tensor:
        """Images (B,C,R,R) in [-1, 1], drawn as ``sampling`` says (default: the model's ``sampling``).

        ``generator``: an :class:`~scale_space_diffusion.diffusion.rng.ImageNoise` (per-image streams, drawn on this
        model's device: ``image_noise(seed, indices)``), a torch.Generator for the batch of ``num_images`` (default
        len(labels), or 1), or one CPU generator per image.
        """
        sampling = self.sampling if sampling is None else sampling
        check_guidance(self.net, sampling.guidance_scale, self.optim.cond_drop_prob)
        if isinstance(generator, ImageNoise):
            generator = generator.to(self.device)  # the indices move once; every step draws on the device
        per_image = isinstance(generator, (ImageNoise, list, tuple))
        batch = len(generator) if per_image else num_images or (len(labels) if labels is not None else 1)
        x = prior(self.process, batch, self.channels, generator, like=torch.empty(0, device=self.device))
        steps = sampling.steps or self.process.T
        return sample(self.denoiser(sampling), self.process, x, steps=steps, eta=sampling.effective_eta,
                      labels=labels, generator=generator, callback=callback, disable=not progress)  # fmt: skip

    def sample_labels(self, indices: Tensor) -> Tensor | None:
        """Class-conditional nets sample class ``index % num_classes`` (balanced classes)."""
        return to_device(indices % self.net.num_classes, self.device) if self.conditional else None

    def predict_trace(self, batch_idx: int):
        """(sampler callback, finisher -> extra outputs) for a predict batch; SSD draws its ladder strip this way."""
        return None, dict

    def predict_step(self, batch: Tensor, batch_idx: int) -> dict:
        """Samples for indices (B,) with the model's ``sampling`` (the CLI's settings):
        ``{"index", "images" uint8 (B,C,R,R)}`` plus any :meth:`predict_trace` extras."""
        callback, finish = self.predict_trace(batch_idx)
        bar = attached_trainer(self) is not None and self.trainer.progress_bar_callback is not None
        noise = ImageNoise(self.sampling.seed, batch)  # the indices are already on the device
        images = self.sample(noise, self.sample_labels(batch), callback=callback, progress=bar)
        return {"index": batch.cpu(), "images": to_uint8(images).cpu(), **finish()}
