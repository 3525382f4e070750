"""One call from a trained model to images, as diffusers' pipelines give them: ``model.generate(...)``."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

from ..diffusion.rng import image_noise
from ..images import to_uint8

if TYPE_CHECKING:
    from .base import DiffusionModule

OutputType = Literal["pil", "tensor", "uint8"]


class GenerateMixin:
    """``generate`` for :class:`~.base.DiffusionModule`."""

    def generate(
        self: DiffusionModule,
        num_images: int = 16,
        steps: int | None = None,
        seed: int = 0,
        sampler: Literal["ancestral", "ddim"] | None = None,
        eta: float | None = None,
        guidance_scale: float | None = None,
        labels: Tensor | Sequence[int] | int | None = None,
        output_type: OutputType = "pil",
        batch_size: int = 64,
        progress: bool = True,
    ) -> list | Tensor:
        """Sample ``num_images`` images: image i is drawn from a generator seeded by (seed, i), so it is the same
        whatever ``batch_size``. Runs in eval mode without gradients (the model's mode is restored afterwards). The
        options of this call are passed down as a :class:`Sampling`; the model's own ``sampling`` is not changed.

        Args:
            num_images: how many images.
            steps: sampler steps; None uses ``sampling.steps`` (or all T).
            seed: the seed of image i's generator (seed, i).
            sampler: "ancestral" or "ddim" for this call; None keeps ``sampling.sampler``.
            eta: the DDIM noise level in [0, 1] for this call (needs the "ddim" sampler); None keeps ``sampling.eta``.
            guidance_scale: classifier-free guidance w for this call; None keeps ``sampling.guidance_scale``.
            labels: class-conditional models: one class for all images, or one per image; None gives image i class
                i % num_classes.
            output_type: "pil" (a list of PIL images, mode "L" or "RGB"), "tensor" (floats in [-1, 1], (N,C,H,W),
                on the CPU) or "uint8" ((N,C,H,W) in [0, 255]).
            batch_size: images sampled at once.
            progress: show a progress bar over the batches.
        """
        from tqdm import tqdm

        if num_images < 1 or batch_size < 1:
            raise ValueError(f"num_images={num_images} and batch_size={batch_size} must be >= 1")
        if output_type not in ("pil", "tensor", "uint8"):
            raise ValueError(f"output_type={output_type!r} must be 'pil', 'tensor' or 'uint8'")
        if steps is not None and not 1 <= steps <= self.process.T:
            raise ValueError(f"steps={steps} must be in 1..{self.process.T} (timesteps) or None")
        changes = {k: v for k, v in dict(sampler=sampler, eta=eta, guidance_scale=guidance_scale).items() if v is not None}
        sampling = dataclasses.replace(self.sampling, **changes)  # validated like the model's own settings
        if eta is not None and sampling.sampler != "ddim":
            raise ValueError(f"eta={eta} only acts with the DDIM sampler, and this call samples ancestrally; "
                             "pass sampler='ddim'")  # fmt: skip
        indices = torch.arange(num_images)
        labels = self._generate_labels(labels, indices)
        if steps is not None:
            sampling = dataclasses.replace(sampling, steps=steps)
        was_training = self.training
        chunks = []
        try:
            self.eval()
            with torch.no_grad():
                starts = range(0, num_images, batch_size)
                for start in tqdm(starts, disable=not progress, desc="generating", unit="batch"):
                    noise = image_noise(seed, indices[start : start + batch_size], self.device)
                    batch_labels = None if labels is None else labels[start : start + batch_size]
                    chunks.append(self.sample(noise, batch_labels, sampling=sampling).cpu())
        finally:
            self.train(was_training)
        images = torch.cat(chunks).float().clamp(-1, 1)
        if output_type == "tensor":
            return images
        images = to_uint8(images)
        return images if output_type == "uint8" else to_pil(images)

    def _generate_labels(self: DiffusionModule, labels, indices: Tensor) -> Tensor | None:
        """``generate``'s labels as a (N,) tensor on the model's device (None for an unconditional model)."""
        if labels is None:
            return self.sample_labels(indices)
        if not self.conditional:
            raise ValueError("labels were given but this model is unconditional (its net has no num_classes)")
        labels = torch.as_tensor(labels, dtype=torch.long)
        labels = labels.expand(len(indices)) if labels.ndim == 0 else labels.flatten()
        if len(labels) != len(indices):
            raise ValueError(f"got {len(labels)} labels for num_images={len(indices)}; pass one, or one per image")
        bad = labels[(labels < -1) | (labels >= self.net.num_classes)]
        if len(bad):
            raise ValueError(f"label {int(bad[0])} is not a class of this model (0..{self.net.num_classes - 1})")
        return labels.to(self.device)


def to_pil(images: Tensor) -> list:
    """uint8 (N,C,H,W) images as PIL images: mode "L" for 1 channel, "RGB" for 3, "RGBA" for 4.

    Args:
        images: the images.
    """
    from PIL import Image

    if images.shape[1] not in (1, 3, 4):
        raise ValueError(f"{images.shape[1]}-channel images have no PIL mode; use output_type='uint8' or 'tensor'")
    arrays = images.permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in arrays]
