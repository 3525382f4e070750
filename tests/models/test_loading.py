"""Checkpoints written before the layout move (main at c666f5b, flat settings) load and sample the same images."""

import pytest
import torch

from conftest import ROOT

from scale_space_diffusion.diffusion.rng import seeded_generator
from scale_space_diffusion.diffusion.sampler import prior, sample
from scale_space_diffusion.io.legacy import upgrade_hparams
from scale_space_diffusion.io.loading import load_model
from scale_space_diffusion.models.settings import Optimization, Sampling

LEGACY = ROOT / "tests/fixtures/legacy_c666f5b"


@pytest.mark.parametrize("name", ["ddpm", "ssd", "spectral"])
def test_a_checkpoint_from_c666f5b_samples_the_images_it_sampled_then(name):
    """The student's teacher file is gone (it was in /tmp when the fixture was made): sampling needs none.
    Equal to float tolerance: the faster attention kernel since then sums in another order (max ~1e-6 per call)."""
    model = load_model(str(LEGACY / f"{name}.ckpt"))
    process, labels = model.process, model.sample_labels(torch.arange(4))
    generators = [seeded_generator(0, i) for i in range(4)]  # c666f5b's per-image CPU generators, still accepted
    T, kept = process.T, set(process.ladder.transitions)  # c666f5b's respacing of 4 steps: no t - 1 after transitions
    steps = sorted(set(torch.linspace(0, T - 1, 4).round().long().tolist()) | kept | {0, T - 1}, reverse=True)
    x = prior(process, 4, model.channels, generators)
    images = sample(model.denoiser(Sampling()), process, x, steps=steps, labels=labels, generator=generators, disable=True)
    torch.testing.assert_close(images, torch.load(LEGACY / "samples.pt")[name], rtol=0, atol=1e-4)


def test_flat_settings_move_into_their_groups():
    old = {"_class_path": "scale_space_diffusion.ScaleSpaceDiffusion", "lr": 1e-3, "ema_decay": 0.9, "sample_steps": 4,
           "timesteps": 100, "weighting": "min_snr", "loss_buckets": 4, "num_levels": 2}  # fmt: skip
    new = upgrade_hparams(old)
    assert new["optim"] == {"lr": 1e-3, "ema_decay": 0.9} and new["sampling"] == {"steps": 4}
    assert new["schedule"] == {"timesteps": 100} and new["loss"] == {"weighting": "min_snr", "prediction": "x0"}
    assert new["num_levels"] == 2 and "loss_buckets" not in new
    Optimization(**new["optim"]), Sampling(**new["sampling"])  # valid groups
