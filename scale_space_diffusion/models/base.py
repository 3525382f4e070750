"""The shared LightningModule: composes a network, a ScaleSpaceProcess, a loss and a sampler.

Subclasses only say how the network is called (:meth:`network`) and which process they use.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from ..images import save_grid, to_uint8
from ..diffusion.loss import DiffusionLoss
from ..diffusion.process import ScaleSpaceProcess
from ..diffusion.sampler import prior, randn, sample_respaced


def seeded_generator(*key: int | str) -> torch.Generator:
    """A CPU generator seeded by a hash of ``key``: distinct keys give independent streams."""
    digest = hashlib.sha256(":".join(map(str, key)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def sample_generators(seed: int, indices: Tensor) -> list[torch.Generator]:
    """One generator per sample, seeded from (seed, sample index): independent of batching and devices."""
    return [seeded_generator(seed, i) for i in indices.tolist()]


class DiffusionModule(L.LightningModule):
    """Training, validation, test and sampling shared by every model in this package."""

    process: ScaleSpaceProcess
    loss_fn: DiffusionLoss

    def __init__(
        self,
        net: nn.Module,
        lr: float = 2e-4,  # AdamW learning rate
        weight_decay: float = 0.0,
        ema_decay: float | None = 0.9999,  # None disables EMA; sampling and checkpoints use EMA weights
        ema_start_step: int = 0,  # EMA starts as a copy of the weights at this step
        sample_steps: int | None = 100,  # respaced sampler steps for grids and predict; None = all T
        sample_seed: int = 0,  # image i is drawn from a generator seeded by (sample_seed, i)
        grid_every_n_epochs: int = 1,  # validation epochs between sample grids; 0 disables
        grid_size: int = 16,  # images per grid
        loss_buckets: int = 4,  # the loss is also logged per timestep quantile
        torch_compile: bool = False,  # torch.compile the network (inductor; on CPU it needs a C++ compiler)
    ):
        super().__init__()
        self.net = net
        self.lr, self.weight_decay = lr, weight_decay
        self.ema_decay, self.ema_start_step = ema_decay, ema_start_step
        self.sample_steps, self.sample_seed = sample_steps, sample_seed
        self.grid_every_n_epochs, self.grid_size, self.loss_buckets = grid_every_n_epochs, grid_size, loss_buckets
        self.torch_compile = torch_compile
        self._train_seed: int | None = None
        if ema_decay is not None and not 0 < ema_decay < 1:
            raise ValueError(f"ema_decay must be in (0, 1) or None, got {ema_decay}")

    # -- the network contract --------------------------------------------------------------
    def network(self, x_t: Tensor, t: Tensor, out_res: int, labels: Tensor | None) -> Tensor:
        """Raw network output for x_t (B,C,r,r) at out_res: eps or x0 per ``loss_fn.prediction``."""
        return self.net(x_t, t, labels)

    def net_path(self, in_res: int, out_res: int) -> tuple[int, int]:
        """The (input, output) resolutions the network itself runs for a denoiser call in_res -> out_res."""
        return (in_res, out_res)

    def denoise(self, x_t: Tensor, t: Tensor, out_res: int, labels: Tensor | None = None) -> Tensor:
        """x0_hat (B,C,out_res,out_res), the sampler's model contract."""
        out = self.network(x_t, t, out_res, labels)
        if self.loss_fn.prediction == "x0":
            return out
        s = self.process.schedule
        return (x_t - s.at(s.sigma, t, x_t) * out) / s.at(s.a, t, x_t)  # x0 = (x_t - sigma eps) / a

    @property
    def channels(self) -> int:
        return self.net.in_channels

    @property
    def image_size(self) -> int:
        return self.process.ladder.image_size

    # -- one step for train / val / test ---------------------------------------------------
    def _shared_step(self, batch, batch_idx: int, stage: str) -> Tensor:
        images, labels = batch
        if images.shape[1] != self.channels or images.shape[-1] != self.image_size:
            raise ValueError(
                f"data is {tuple(images.shape[1:])} but the model expects ({self.channels}, {self.image_size}, "
                f"{self.image_size}); set data.channels / data.image_size to match the model"
            )
        labels = labels if getattr(self.net, "num_classes", None) else None
        # Randomness is a function of (seed, stage, step, batch): resumed runs repeat it exactly. Every rank
        # draws the batch's resolution alike (one network path per step); t and noise are the rank's own.
        key = (self.train_seed, stage, self.global_step, batch_idx)
        local = seeded_generator(*key, "rank", self.global_rank)
        t = self.process.ladder.sample_t(len(images), generator=local, shared=seeded_generator(*key)).to(self.device)
        r = self.process.ladder.res(int(t[0]))
        noise = torch.randn(len(images), images.shape[1], r, r, generator=local).to(self.device, images.dtype)
        per_sample = self.loss_fn(self.network, self.process, images, t, noise, labels)
        denoise = per_sample.mean()
        loss = denoise + self.auxiliary_loss(images, stage)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite {stage} loss {loss.item()} at global step {self.global_step} with t in "
                f"[{int(t.min())}, {int(t.max())}]; lower the learning rate or check the data. "
                "Checkpoints already written are kept."
            )
        self.log(f"{stage}/loss", loss, prog_bar=stage == "train", sync_dist=stage != "train", batch_size=len(images))
        self.log(f"{stage}/denoise", denoise, sync_dist=stage != "train", batch_size=len(images))  # without extra terms
        if stage != "train":
            bucket = (t * self.loss_buckets // self.process.T).cpu()
            for b in bucket.unique().tolist():
                self.log(f"{stage}/loss_t{b}", per_sample[bucket == b].mean(), sync_dist=True, batch_size=len(images))
        return loss

    def training_step(self, batch, batch_idx):
        return self._shared_step(batch, batch_idx, "train")

    def validation_step(self, batch, batch_idx):
        return self._shared_step(batch, batch_idx, "val")

    def test_step(self, batch, batch_idx):
        return self._shared_step(batch, batch_idx, "test")

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)

    def setup(self, stage: str) -> None:
        T = self.process.T
        if self.sample_steps is not None and not 1 <= self.sample_steps <= T:
            raise ValueError(f"sample_steps={self.sample_steps} must be in 1..{T} (timesteps) or None (all steps)")
        net_classes = getattr(self.net, "num_classes", None)
        data = self._trainer.datamodule if self._trainer is not None and stage != "predict" else None
        data_classes = getattr(data, "num_classes", None) if net_classes else None
        if data_classes and data_classes > net_classes:
            raise ValueError(
                f"the data has {data_classes} classes but the net has num_classes={net_classes}; set "
                f"--model.init_args.net.init_args.num_classes={data_classes}"
            )
        # After callbacks' setup, so EMA copies the plain network. In place: parameter names are unchanged.
        if self.torch_compile and self.net._compiled_call_impl is None:
            self.net.compile()

    def configure_callbacks(self):
        if self.ema_decay is None:
            return []
        from lightning.pytorch.strategies import FSDPStrategy

        if isinstance(self.trainer.strategy, FSDPStrategy):
            raise ValueError(
                f"ema_decay={self.ema_decay} keeps a full, unsharded copy of the model, which FSDP's sharded "
                "parameters cannot update; set --model.init_args.ema_decay=null with strategy=fsdp, or use ddp"
            )
        return [EMAWeightAveraging(decay=self.ema_decay, update_starting_at_step=self.ema_start_step)]

    # -- sampling ------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        generator: torch.Generator | list[torch.Generator],
        labels: Tensor | None = None,
        steps: int | None = None,
        callback=None,
        progress: bool = False,
    ) -> Tensor:
        """Images (B,C,R,R) in [-1, 1]; B = len(generator) for per-sample generators."""
        batch = len(generator) if isinstance(generator, list) else len(labels)
        x = prior(self.process, batch, self.channels, generator, like=torch.empty(0, device=self.device))
        num_steps = steps or self.sample_steps or self.process.T
        return sample_respaced(self.denoise, self.process, x, num_steps=num_steps, labels=labels,
                               generator=generator, callback=callback, disable=not progress)  # fmt: skip

    def sample_labels(self, indices: Tensor) -> Tensor | None:
        """Class-conditional nets sample class ``index % num_classes`` (balanced classes)."""
        n = getattr(self.net, "num_classes", None)
        return (indices % n).to(self.device) if n else None

    def predict_step(self, batch: Tensor, batch_idx: int) -> dict:
        indices = batch.cpu()
        images = self.sample(sample_generators(self.sample_seed, indices), self.sample_labels(indices))
        return {"index": indices, "images": to_uint8(images).cpu()}

    def save_sample_grid(self, name: str) -> Path | None:
        """Sample ``grid_size`` images with fixed seeds and save a PNG grid under the log dir."""
        if self.trainer is None or self.grid_size <= 0:
            return None
        log_dir = self.trainer.log_dir  # a collective call: every rank must make it
        if not self.trainer.is_global_zero:
            return None
        indices = torch.arange(self.grid_size)
        images = self.sample(sample_generators(self.sample_seed, indices), self.sample_labels(indices))
        path = Path(log_dir or self.trainer.default_root_dir) / "samples" / f"{name}.png"
        save_grid(images, path, upscale=max(1, 128 // self.image_size))
        experiment = getattr(self.logger, "experiment", None)
        if hasattr(experiment, "add_image"):  # TensorBoard
            experiment.add_image(f"samples/{name}", to_uint8(images[:1])[0], self.global_step)
        return path

    def on_validation_epoch_end(self):
        every = self.grid_every_n_epochs
        if every and not self.trainer.sanity_checking and (self.current_epoch + 1) % every == 0:
            self.save_sample_grid(f"epoch{self.current_epoch:03d}_step{self.global_step:06d}")

    def on_train_end(self):
        path = self.save_sample_grid(f"final_step{self.global_step:06d}")  # EMA weights are in place by now
        if path is not None:
            rank_zero_info(f"Sample grid ({'EMA' if self.ema_decay else 'raw'} weights): {path}")

    # -- checkpoints -------------------------------------------------------------------------
    def auxiliary_loss(self, images: Tensor, stage: str) -> Tensor | float:
        """Extra loss terms after the denoising loss (distillation in Spectral Diffusion)."""
        return 0.0

    @property
    def train_seed(self) -> int:
        """Seeds the training draws of t and noise: ``seed_everything``'s seed, or the one the checkpoint used."""
        if self._train_seed is None:
            self._train_seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        return self._train_seed

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["train_seed"] = self.train_seed
        checkpoint["rng_states"] = {"torch": torch.get_rng_state()}  # dropout: ranks share it under seed_everything
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            checkpoint["rng_states"]["cuda"] = torch.cuda.get_rng_state_all()
        checkpoint["model_class"] = type(self).__name__
        checkpoint["model_class_path"] = f"{type(self).__module__}.{type(self).__name__}"
        checkpoint["net_class_path"] = f"{type(self.net).__module__}.{type(self.net).__name__}"
        checkpoint["net_config"] = getattr(self.net, "config", None)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        saved = checkpoint.get("model_class")
        if saved is not None and saved != type(self).__name__:
            raise ValueError(
                f"this checkpoint was saved by {saved}, not {type(self).__name__}; "
                f"pass the matching model (e.g. --model={saved} or the config it was trained with)"
            )
        self._train_seed = checkpoint.get("train_seed", self._train_seed)
        resuming = self._trainer is not None and self._trainer.state.fn == "fit"
        rng = checkpoint.get("rng_states", {}) if resuming else {}  # loading weights leaves the global RNG alone
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(rng["cuda"])
