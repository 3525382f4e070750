"""The shared LightningModule: composes a network, a ScaleSpaceProcess, a loss and a sampler.

Subclasses say how the network is called (:meth:`raw_network`), which process they use, and may add loss
terms (:meth:`loss_terms`); training, validation, test, sampling and checkpoints are shared.

EMA: the module holds ``net_ema``, torch's ``AveragedModel`` of ``net`` with an EMA update after every optimizer
step. Nothing is ever swapped: a checkpoint's ``state_dict`` holds the raw weights (``net.*``, the training state)
and the EMA beside them (``net_ema.module.*``); sampling, grids, validation, test and predict use the EMA.
"""

from __future__ import annotations

from typing import Callable

import lightning as L
import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..diffusion.guidance import check_guidance, drop_labels, guided
from ..diffusion.loss import DiffusionLoss
from ..diffusion.precision import upcast
from ..diffusion.process import ScaleSpaceProcess
from ..diffusion.rng import Generator, sample_generators, seeded_generator
from ..diffusion.sampler import prior, sample
from ..images import to_uint8
from ..lightning_internals import attached_trainer, is_compiled, summary_depth
from .checkpoint_io import use_atomic_checkpoint_io
from .checkpoint_state import CheckpointStateMixin
from .generate import GenerateMixin
from .pretrained import PretrainedMixin
from .settings import Optimization, Sampling

LOSS_BUCKETS = 4  # validation and test losses are also logged per timestep quarter


class DiffusionModule(CheckpointStateMixin, GenerateMixin, PretrainedMixin, L.LightningModule):
    """Training, validation, test and sampling shared by every model in this package."""

    def __init__(
        self,
        net: nn.Module,
        process: ScaleSpaceProcess,
        loss: DiffusionLoss,
        *,
        optim: Optimization = Optimization(),
        sampling: Sampling = Sampling(),
        torch_compile: bool = False,
    ):
        super().__init__()
        self.net, self.process, self.loss_fn = net, process, loss
        self.optim, self.sampling = optim, sampling
        self.torch_compile = torch_compile
        self._train_seed: int | None = None
        self.net_ema: AveragedModel | None = None
        if optim.ema_decay is not None:
            self.net_ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(optim.ema_decay), use_buffers=True)
            self.net_ema.requires_grad_(False)

    # -- the network contract --------------------------------------------------------------
    def raw_network(self, x_t: Tensor, t: Tensor, out_res: int, labels: Tensor | None, net: nn.Module | None = None) -> Tensor:
        """The raw output of ``net`` (default: the trained ``self.net``) for x_t (B,C,r,r) at out_res: eps or x0."""
        return (self.net if net is None else net)(x_t, t, labels)

    def denoise(self, x_t: Tensor, t: Tensor, out_res: int, labels: Tensor | None = None) -> Tensor:
        """x0_hat (B,C,out_res,out_res) of the sampling network, with classifier-free guidance (G1) if asked for:
        the sampler's denoiser."""
        net = self.sampling_net
        raw_fp32 = lambda *a: upcast(self.raw_network(*a, net))  # noqa: E731  (fp32 sampler state under autocast)
        raw = guided(raw_fp32, self.sampling.guidance_scale)(x_t, t, out_res, labels)
        return self.loss_fn.parameterization.x0(raw, x_t, t, self.process.schedule)

    @property
    def sampling_net(self) -> nn.Module:
        """The EMA of the weights once it has started, else the raw network."""
        ema = self.net_ema
        return ema.module if ema is not None and int(ema.n_averaged) > 0 else self.net

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
    def loss_terms(self, x0: Tensor, t: Tensor, noise: Tensor, labels: Tensor | None,
                   net: nn.Module | None = None) -> tuple[Tensor, dict[str, Tensor]]:  # fmt: skip
        """(per-sample denoising loss (B,) of ``net``, extra weighted terms {name: scalar}); the loss is their sum."""
        raw = lambda x_t, t, out_res, labels: self.raw_network(x_t, t, out_res, labels, net)  # noqa: E731
        return self.loss_fn(raw, self.process, x0, t, noise, labels), {}

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
        trainer = attached_trainer(self)
        accumulate = trainer.accumulate_grad_batches if trainer is not None else 1
        micro = batch_idx % accumulate if stage == "train" else batch_idx
        key = (self.train_seed, stage, self.global_step, micro)
        local = seeded_generator(*key, "rank", self.global_rank)
        if stage == "train" and labels is not None:  # classifier-free guidance: train the unconditional model too
            labels = drop_labels(labels, self.optim.cond_drop_prob, seeded_generator(*key, "rank", self.global_rank, "cfg"))
        t = self.process.ladder.sample_t(len(images), generator=local, shared=seeded_generator(*key))
        r = self.process.ladder.res(int(t[0]))  # read on the host, before t moves: no device sync
        t = t.to(self.device)
        noise = torch.randn(len(images), images.shape[1], r, r, generator=local).to(self.device, images.dtype)
        per_sample, extra = self.loss_terms(images, t, noise, labels, self.net if stage == "train" else self.sampling_net)
        denoise = per_sample.mean()
        loss = denoise + sum(extra.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite {stage} loss {loss.item()} at global step {self.global_step} with t in "
                f"[{int(t.min())}, {int(t.max())}]; resume from the last checkpoint with a lower "
                "--model.init_args.optim.lr, or check the data. Checkpoints already written are kept."
            )
        sync, n = stage != "train", len(images)
        self.log(f"{stage}/loss", loss, prog_bar=stage == "train", sync_dist=sync, batch_size=n)
        self.log(f"{stage}/denoise", denoise, sync_dist=sync, batch_size=n)  # without extra terms
        self.log_dict({f"{stage}/{k}": v for k, v in extra.items()}, sync_dist=sync, batch_size=n)
        if stage != "train":
            bucket = (t * LOSS_BUCKETS // self.process.T).cpu()
            for b in bucket.unique().tolist():
                self.log(f"{stage}/loss_t{b}", per_sample[bucket == b].mean(), sync_dist=True, batch_size=n)
        return loss

    def training_step(self, batch, batch_idx):
        return self._shared_step(batch, batch_idx, "train")

    def validation_step(self, batch, batch_idx):
        return self._shared_step(batch, batch_idx, "val")

    def test_step(self, batch, batch_idx):
        return self._shared_step(batch, batch_idx, "test")

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.optim.lr, weight_decay=self.optim.weight_decay)

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
            use_atomic_checkpoint_io(trainer.strategy)
        # In place, so parameter names are unchanged; the EMA copy is compiled too, as it samples.
        for net in (self.net, self.net_ema.module if self.net_ema is not None else None):
            if self.torch_compile and net is not None and not is_compiled(net):
                net.compile()

    def optimizer_step(self, *args, **kwargs) -> None:
        """Lightning's step, then the EMA update (so every checkpoint of step k holds the EMA of step k).

        The EMA is updated from ``ema_start_step`` on; its first update copies the weights.
        """
        super().optimizer_step(*args, **kwargs)
        if self.net_ema is not None and self.global_step - 1 >= self.optim.ema_start_step:
            self.net_ema.update_parameters(self.net)

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
        steps: int | None = None,
        callback=None,
        progress: bool = False,
        num_images: int | None = None,
    ) -> Tensor:
        """Images (B,C,R,R) in [-1, 1] from ``sampling``'s sampler.

        ``generator``: one per image (B = len), or one for the batch of ``num_images`` (default len(labels), or 1).
        """
        check_guidance(self.net, self.sampling.guidance_scale, self.optim.cond_drop_prob)
        per_image = isinstance(generator, (list, tuple))
        batch = len(generator) if per_image else num_images or (len(labels) if labels is not None else 1)
        x = prior(self.process, batch, self.channels, generator, like=torch.empty(0, device=self.device))
        steps = steps or self.sampling.steps or self.process.T
        return sample(self.denoise, self.process, x, steps=steps, eta=self.sampling.effective_eta, labels=labels,
                      generator=generator, callback=callback, disable=not progress)  # fmt: skip

    def sample_labels(self, indices: Tensor) -> Tensor | None:
        """Class-conditional nets sample class ``index % num_classes`` (balanced classes)."""
        return (indices % self.net.num_classes).to(self.device) if self.conditional else None

    def predict_trace(self, batch_idx: int) -> tuple[Callable[[dict], None] | None, Callable[[], dict]]:
        """(sampler callback, finisher -> extra outputs) for a predict batch; SSD draws its ladder strip this way."""
        return None, dict

    def predict_step(self, batch: Tensor, batch_idx: int) -> dict:
        """Samples for indices (B,): ``{"index", "images" uint8 (B,C,R,R)}`` plus any :meth:`predict_trace` extras."""
        indices = batch.cpu()
        callback, finish = self.predict_trace(batch_idx)
        bar = attached_trainer(self) is not None and self.trainer.progress_bar_callback is not None
        images = self.sample(sample_generators(self.sampling.seed, indices), self.sample_labels(indices),
                             callback=callback, progress=bar)  # fmt: skip  (a bar over the sampler's steps)
        return {"index": indices, "images": to_uint8(images).cpu(), **finish()}
