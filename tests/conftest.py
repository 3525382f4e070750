"""Shared fixtures: small generated datasets and checkpoints, so tests never need the network."""

from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def fmnist_idx(tmp_path_factory) -> Path:
    """A 96/32-image Fashion-MNIST look-alike in the Debian package's IDX layout."""
    from scale_space_diffusion.data.idx import write_idx

    root = tmp_path_factory.mktemp("fmnist")
    rng = np.random.default_rng(0)
    for split, n in (("train", 96), ("t10k", 32)):
        images = (rng.random((n, 28, 28)) * 255).astype(np.uint8)
        write_idx(root / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", (np.arange(n) % 10).astype(np.uint8))
    return root


@pytest.fixture(scope="session")
def rgb_folder(tmp_path_factory):
    """Factory: a folder of 8 random RGB PNGs in 2 classes at a given size."""
    from PIL import Image

    made = {}

    def make(size: int) -> Path:
        if size not in made:
            root = tmp_path_factory.mktemp(f"rgb{size}")
            rng = np.random.default_rng(size)
            for i in range(8):
                (root / f"class{i % 2}").mkdir(exist_ok=True)
                Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8)).save(root / f"class{i % 2}/{i}.png")
            made[size] = root
        return made[size]

    return make


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def train_and_save(model, path, image_size=16, channels=1):
    """One optimisation step through a Trainer, then a real Lightning checkpoint at ``path``."""
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    data = TensorDataset(torch.rand(8, channels, image_size, image_size) * 2 - 1, torch.zeros(8, dtype=torch.long))
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, accelerator="cpu")  # fmt: skip
    trainer.fit(model, DataLoader(data, batch_size=4))
    trainer.save_checkpoint(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory) -> str:
    """A one-step DDPM checkpoint matching configs/smoke (16px, 1 channel, T=100): Spectral Diffusion's teacher."""
    from scale_space_diffusion.diffusion.schedule import NoiseSchedule
    from scale_space_diffusion.models.ddpm import DDPM
    from scale_space_diffusion.models.settings import Optimization, Sampling
    from scale_space_diffusion.networks.unet import UNet

    model = DDPM(UNet(16, 1, None, 8, (1, 2), 1, (), 4), NoiseSchedule(timesteps=100), optim=Optimization(ema_decay=None),
                 sampling=Sampling(grid_size=0))
    return train_and_save(model, tmp_path_factory.mktemp("teacher") / "ddpm.ckpt")
