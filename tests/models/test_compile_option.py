"""The ``torch_compile`` option: one static-shape graph per network path (CUDA graphs with "reduce-overhead"), the
EMA copy compiled too, and each path's first-step time printed once."""

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from scale_space_diffusion.diffusion.schedule import NoiseSchedule
from scale_space_diffusion.models.settings import Optimization, Sampling
from scale_space_diffusion.models.ssd import ScaleSpaceDiffusion
from scale_space_diffusion.networks.flexi_unet import FlexiUNet

NET = dict(image_size=16, in_channels=1, model_channels=8, channel_mult=(1, 2), num_res_blocks=1,
           attention_resolutions=(), num_heads=2)  # fmt: skip


def ssd(torch_compile):
    torch.manual_seed(0)
    return ScaleSpaceDiffusion(FlexiUNet(**NET), num_levels=2, schedule=NoiseSchedule(timesteps=50),
                               optim=Optimization(ema_decay=0.9), sampling=Sampling(steps=4, grid_size=0),
                               torch_compile=torch_compile)  # fmt: skip


def fit(model, steps: int):
    data = TensorDataset(torch.rand(16, 1, 16, 16) * 2 - 1, torch.zeros(16, dtype=torch.long))
    trainer = L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, accelerator="cpu")  # fmt: skip
    trainer.fit(model, DataLoader(data, batch_size=4))
    return trainer


def test_setup_compiles_net_and_ema_with_the_mode_and_static_shapes(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(nn.Module, "compile", lambda self, **kw: calls.append((self, kw)))
    model = ssd("reduce-overhead")
    fit(model, 6)
    assert [(m, kw) for m, kw in calls] == [(model.net, {"mode": "reduce-overhead", "dynamic": False}),
                                            (model.net_ema.module, {"mode": "reduce-overhead", "dynamic": False})]
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("torch.compile:")]
    paths = {line.split("path ")[1].split("px")[0] for line in lines}
    assert len(lines) == len(paths) >= 2 and paths <= {"16->16", "8->8", "8->16"}  # once per path seen


def test_no_compile_no_message(capsys):
    fit(ssd(False), 2)
    assert "torch.compile" not in capsys.readouterr().out


@pytest.mark.slow
def test_reduce_overhead_trains_and_samples_as_eager_does():
    """The real compile (inductor on CPU; CUDA graphs need a GPU): same losses and samples as eager, to float
    tolerance, after the first step of each path."""
    eager, compiled = ssd(False), ssd("reduce-overhead")
    fit(eager, 4), fit(compiled, 4)
    for a, b in zip(eager.net.parameters(), compiled.net.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    from scale_space_diffusion.diffusion.rng import image_noise

    torch.testing.assert_close(compiled.sample(image_noise(0, range(2))), eager.sample(image_noise(0, range(2))),
                               rtol=1e-3, atol=1e-4)  # fmt: skip
