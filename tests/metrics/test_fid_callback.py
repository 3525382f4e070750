import math

import lightning as L
import pytest
import torch

from scale_space_diffusion.diffusion.schedule import NoiseSchedule
from scale_space_diffusion.models.settings import Optimization
from scale_space_diffusion.models.settings import Sampling
from scale_space_diffusion import DDPM, ImageDataModule, UNet
from scale_space_diffusion.metrics.fid_callback import FIDCallback
from scale_space_diffusion.metrics import Classifier, save_classifier


@pytest.fixture(scope="module")
def classifier_file(tmp_path_factory):
    torch.manual_seed(0)
    model = Classifier(in_channels=1, width=4, feature_dim=8, resolution=16).eval()  # random weights suffice
    path = tmp_path_factory.mktemp("clf") / "classifier.pt"
    save_classifier(model, path)
    return path


def test_fid_callback_logs_a_finite_fid(fmnist_idx, cache_dir, classifier_file):
    torch.manual_seed(0)
    net = UNet(image_size=16, in_channels=1, model_channels=8, channel_mult=(1, 2), num_res_blocks=1,
               attention_resolutions=(), num_heads=2)  # fmt: skip
    model = DDPM(net, schedule=NoiseSchedule(timesteps=100), optim=Optimization(ema_decay=None), sampling=Sampling(steps=2))
    data = ImageDataModule(image_size=16, batch_size=16, idx_dir=str(fmnist_idx), cache_dir=str(cache_dir))
    fid = FIDCallback(str(classifier_file), num_samples=24, batch_size=12, progress=False)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[fid])  # fmt: skip
    trainer.test(model, data, verbose=False)
    value = trainer.callback_metrics["test/fid"].item()
    assert math.isfinite(value) and value > 0


def test_fid_callback_needs_a_classifier(tmp_path):
    with pytest.raises(FileNotFoundError, match="classifier file"):
        FIDCallback(str(tmp_path / "missing.pt"))
