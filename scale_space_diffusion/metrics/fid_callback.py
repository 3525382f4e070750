"""FID during ``test``: a torchmetrics FID with the feature network the benchmarks use.

Opt in by adding the callback to the Trainer (or ``--trainer.callbacks+=FIDCallback`` on the command line)::

    trainer = L.Trainer(callbacks=[FIDCallback("benchmarks/cache/classifier-fmnist-1x32-e3.pt", num_samples=1000)])
    trainer.test(model, datamodule)  # logs test/fid next to test/loss

Real statistics come from the test batches the model is tested on; generated statistics from
``num_samples`` images drawn by ``pl_module.sample`` with per-sample generators seeded by
(``pl_module.sampling.seed``, index), exactly as ``predict`` and the benchmarks draw them. Through
:func:`~.metrics.fid.build_feature_module` the extractor is the same network torch-fidelity uses in
:func:`~.metrics.fid.compute_fid_kid`, so the two agree on the same images.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import lightning as L
import torch
from tqdm.auto import tqdm

from ..images import to_uint8
from ..diffusion.rng import image_noise

__all__ = ["FIDCallback"]


class FIDCallback(L.Callback):
    """Logs ``test/fid`` at the end of ``test``. Label the number with ``metrics.feature_label(extractor)``."""

    def __init__(
        self,
        classifier: str | None,  # classifier file (from load_or_train_classifier); None with extractor="inception"
        num_samples: int = 1000,  # generated images; use >= the feature dimension (128) for a stable FID
        extractor: str = "classifier",  # "classifier" (offline) or "inception" (needs the weights file)
        inception_weights: str | None = None,  # local weights-inception-2015-12-05-6726825d.pth
        batch_size: int = 64,  # images per sampling batch
        steps: int | None = None,  # sampler steps; None = the model's sampling.steps
        progress: bool = True,
    ):
        super().__init__()
        if num_samples < 2:
            raise ValueError(f"num_samples must be >= 2 for a covariance, got {num_samples}")
        if extractor == "classifier" and (classifier is None or not Path(classifier).is_file()):
            raise FileNotFoundError(f"FIDCallback needs an existing classifier file, got {classifier!r}")
        self.classifier, self.num_samples, self.extractor = classifier, num_samples, extractor
        self.inception_weights, self.batch_size, self.steps, self.progress = inception_weights, batch_size, steps, progress
        self.metric = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "test" or self.metric is not None:
            return
        from .fid import build_feature_module, make_torchmetrics_fid  # torch-fidelity only when used

        feature = build_feature_module(self.extractor, self.classifier, self.inception_weights)
        self.metric = make_torchmetrics_fid(feature)

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.metric.to(pl_module.device).reset()

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        images = batch[0]
        self.metric.update(to_uint8(images), real=True)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Each process draws its share of the indices; torchmetrics gathers the statistics.
        indices = torch.arange(self.num_samples)[trainer.global_rank :: trainer.world_size]
        chunks = indices.split(self.batch_size)
        show = self.progress and trainer.is_global_zero
        for chunk in tqdm(chunks, desc="FID samples", disable=not show, leave=False):
            gens = image_noise(pl_module.sampling.seed, chunk)
            sampling = dataclasses.replace(pl_module.sampling, steps=self.steps or pl_module.sampling.steps)
            images = pl_module.sample(gens, pl_module.sample_labels(chunk), sampling=sampling)
            self.metric.update(to_uint8(images), real=False)
        pl_module.log("test/fid", self.metric.compute().float(), sync_dist=False)
        self.metric.reset()
