"""The shared LightningModule: composes a network, a ScaleSpaceProcess, a loss and a sampler.

Subclasses say how the network is called (:meth:`raw_network`), which process they use, and may add loss
terms (:meth:`loss_terms`); training, validation, test, sampling and checkpoints are shared.
"""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from ..diffusion.loss import DiffusionLoss
from ..diffusion.process import ScaleSpaceProcess
from ..diffusion.rng import Generator, sample_generators, seeded_generator
from ..diffusion.sampler import prior, sample_respaced
from ..images import save_grid, to_uint8
from ..lightning_internals import attached_trainer, is_compiled
from .settings import Optimization, Sampling, plain

LOSS_BUCKETS = 4  # validation and test losses are also logged per timestep quarter


class DiffusionModule(L.LightningModule):
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

    # -- the network contract --------------------------------------------------------------
    def raw_network(self, x_t: Tensor, t: Tensor, out_res: int, labels: Tensor | None) -> Tensor:
        """The network's raw output for x_t (B,C,r,r) at out_res: eps or x0 per ``loss_fn.prediction``."""
        return self.net(x_t, t, labels)

    def denoise(self, x_t: Tensor, t: Tensor, out_res: int, labels: Tensor | None = None) -> Tensor:
        """x0_hat (B,C,out_res,out_res): the sampler's denoiser, through the loss's parameterization."""
        return self.loss_fn.parameterization.x0(self.raw_network(x_t, t, out_res, labels), x_t, t, self.process.schedule)

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
    def loss_terms(self, x0: Tensor, t: Tensor, noise: Tensor, labels: Tensor | None) -> tuple[Tensor, dict[str, Tensor]]:
        """(per-sample denoising loss (B,), extra weighted terms {name: scalar}); the loss is their sum."""
        return self.loss_fn(self.raw_network, self.process, x0, t, noise, labels), {}

    def _shared_step(self, batch, batch_idx: int, stage: str) -> Tensor:
        images, labels = batch
        if images.shape[1] != self.channels or images.shape[-1] != self.image_size:
            raise ValueError(
                f"data is {tuple(images.shape[1:])} but the model expects ({self.channels}, {self.image_size}, "
                f"{self.image_size}); set data.channels / data.image_size to match the model"
            )
        labels = labels if self.conditional else None
        # Randomness is a function of (seed, stage, step, batch): resumed runs repeat it exactly. Every rank
        # draws the batch's resolution alike (one network path per step); t and noise are the rank's own.
        key = (self.train_seed, stage, self.global_step, batch_idx)
        local = seeded_generator(*key, "rank", self.global_rank)
        t = self.process.ladder.sample_t(len(images), generator=local, shared=seeded_generator(*key)).to(self.device)
        r = self.process.ladder.res(int(t[0]))
        noise = torch.randn(len(images), images.shape[1], r, r, generator=local).to(self.device, images.dtype)
        per_sample, extra = self.loss_terms(images, t, noise, labels)
        denoise = per_sample.mean()
        loss = denoise + sum(extra.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite {stage} loss {loss.item()} at global step {self.global_step} with t in "
                f"[{int(t.min())}, {int(t.max())}]; lower the learning rate or check the data. "
                "Checkpoints already written are kept."
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

    def setup(self, stage: str) -> None:
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
        # After callbacks' setup, so EMA copies the plain network. In place: parameter names are unchanged.
        if self.torch_compile and not is_compiled(self.net):
            self.net.compile()

    def configure_callbacks(self):
        decay = self.optim.ema_decay
        if decay is None:
            return []
        from lightning.pytorch.strategies import FSDPStrategy

        if isinstance(self.trainer.strategy, FSDPStrategy):
            raise ValueError(
                f"ema_decay={decay} keeps a full, unsharded copy of the model, which FSDP's sharded parameters "
                "cannot update; set --model.init_args.optim.ema_decay=null with strategy=fsdp, or use ddp"
            )
        return [EMAWeightAveraging(decay=decay, update_starting_at_step=self.optim.ema_start_step)]

    # -- sampling ------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        generator: Generator,
        labels: Tensor | None = None,
        steps: int | None = None,
        callback=None,
        progress: bool = False,
    ) -> Tensor:
        """Images (B,C,R,R) in [-1, 1]; B = len(generator) for per-sample generators."""
        batch = len(generator) if isinstance(generator, list) else len(labels)
        x = prior(self.process, batch, self.channels, generator, like=torch.empty(0, device=self.device))
        num_steps = steps or self.sampling.steps or self.process.T
        return sample_respaced(self.denoise, self.process, x, num_steps=num_steps, labels=labels,
                               generator=generator, callback=callback, disable=not progress)  # fmt: skip

    def sample_labels(self, indices: Tensor) -> Tensor | None:
        """Class-conditional nets sample class ``index % num_classes`` (balanced classes)."""
        return (indices % self.net.num_classes).to(self.device) if self.conditional else None

    def predict_step(self, batch: Tensor, batch_idx: int) -> dict:
        indices = batch.cpu()
        images = self.sample(sample_generators(self.sampling.seed, indices), self.sample_labels(indices))
        return {"index": indices, "images": to_uint8(images).cpu()}

    def save_sample_grid(self, name: str) -> Path | None:
        """Sample ``grid_size`` images with fixed seeds and save a PNG grid under the log dir."""
        if self.trainer is None or self.sampling.grid_size <= 0:
            return None
        log_dir = self.trainer.log_dir  # a collective call: every rank must make it
        if not self.trainer.is_global_zero:
            return None
        indices = torch.arange(self.sampling.grid_size)
        images = self.sample(sample_generators(self.sampling.seed, indices), self.sample_labels(indices))
        path = Path(log_dir or self.trainer.default_root_dir) / "samples" / f"{name}.png"
        save_grid(images, path, upscale=max(1, 128 // self.image_size))
        experiment = getattr(self.logger, "experiment", None)
        if hasattr(experiment, "add_image"):  # TensorBoard
            experiment.add_image(f"samples/{name}", to_uint8(images[:1])[0], self.global_step)
        return path

    def on_validation_epoch_end(self):
        every = self.sampling.grid_every_n_epochs
        if every and not self.trainer.sanity_checking and (self.current_epoch + 1) % every == 0:
            self.save_sample_grid(f"epoch{self.current_epoch:03d}_step{self.global_step:06d}")

    def on_train_end(self):
        path = self.save_sample_grid(f"final_step{self.global_step:06d}")  # EMA weights are in place by now
        if path is not None:
            rank_zero_info(f"Sample grid ({'EMA' if self.optim.ema_decay else 'raw'} weights): {path}")

    # -- checkpoints -------------------------------------------------------------------------
    @property
    def train_seed(self) -> int:
        """Seeds the training draws of t and noise: ``seed_everything``'s seed, or the one the checkpoint used."""
        if self._train_seed is None:
            self._train_seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        return self._train_seed

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["hyper_parameters"] = plain(dict(checkpoint.get("hyper_parameters", {})))  # weights_only-safe
        checkpoint["train_seed"] = self.train_seed
        checkpoint["rng_states"] = {"torch": torch.get_rng_state()}  # dropout: ranks share it under seed_everything
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            checkpoint["rng_states"]["cuda"] = torch.cuda.get_rng_state_all()
        checkpoint["model_class"] = type(self).__name__
        checkpoint["model_class_path"] = f"{type(self).__module__}.{type(self).__name__}"
        checkpoint["net_class_path"] = f"{type(self.net).__module__}.{type(self.net).__name__}"
        checkpoint["net_config"] = self.net.config

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        saved = checkpoint.get("model_class")
        if saved is not None and saved != type(self).__name__:
            raise ValueError(
                f"this checkpoint was saved by {saved}, not {type(self).__name__}; "
                f"pass the matching model (e.g. --model={saved} or the config it was trained with)"
            )
        self._train_seed = checkpoint.get("train_seed", self._train_seed)
        trainer = attached_trainer(self)
        resuming = trainer is not None and trainer.state.fn == "fit"
        rng = checkpoint.get("rng_states", {}) if resuming else {}  # loading weights leaves the global RNG alone
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(rng["cuda"])
