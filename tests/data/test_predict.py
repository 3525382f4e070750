"""Sampling needs no data: ``predict`` never loads the source, so it works where the source cannot be loaded."""
from pathlib import Path

import datasets
import lightning as L
import pytest
import torch
from huggingface_hub import constants

from scale_space_diffusion.data import ImageDataModule
from scale_space_diffusion.diffusion.schedule import NoiseSchedule
from scale_space_diffusion.models.ddpm import DDPM
from scale_space_diffusion.models.settings import Optimization, Sampling
from scale_space_diffusion.networks.unet import UNet


def tiny_ddpm() -> DDPM:
    """16px, 1 channel, T=100, 2 sampler steps: the shape of tests/conftest.py's tiny_teacher."""
    return DDPM(UNet(16, 1, None, 8, (1, 2), 1, (), 4), NoiseSchedule(timesteps=100),
                optim=Optimization(ema_decay=None), sampling=Sampling(steps=2, grid_size=0))


def trainer(tmp_path: Path) -> L.Trainer:
    return L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, max_steps=1, default_root_dir=tmp_path)


UNLOADABLE = [("no-such-user/no-such-dataset", "give an image folder, dataset=fashion_mnist, or a hub name"),
              ("/no/such/folder", "dataset folder /no/such/folder not found")]


@pytest.mark.parametrize("dataset, error", UNLOADABLE, ids=["hub-name-offline", "missing-folder"])
def test_predict_never_loads_the_source(tmp_path, monkeypatch, dataset, error):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    dm = ImageDataModule(dataset=dataset, image_size=16, num_samples=5, batch_size=2, cache_dir=str(tmp_path / "c"))
    out = trainer(tmp_path).predict(tiny_ddpm(), datamodule=dm)
    assert torch.cat([b["index"] for b in out]).tolist() == [0, 1, 2, 3, 4]
    images = torch.cat([b["images"] for b in out])
    assert images.shape == (5, 1, 16, 16) and images.dtype == torch.uint8
    assert dm.splits == {} and dm.location is None  # nothing was loaded or cached
    with pytest.raises(FileNotFoundError, match=error):  # training does need the data, and says why it is missing
        trainer(tmp_path).fit(tiny_ddpm(), datamodule=dm)


def test_prepare_data_outside_a_trainer_still_loads(tmp_path):
    dm = ImageDataModule(dataset=str(tmp_path / "missing"), cache_dir=str(tmp_path / "c"))
    dm.setup("predict")  # nothing to set up for predict
    with pytest.raises(FileNotFoundError, match="missing not found"):
        dm.prepare_data()  # no trainer attached: not predicting, so it loads
