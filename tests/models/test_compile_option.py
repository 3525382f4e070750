"""The ``torch_compile`` option: one static-shape graph per network path (CUDA graphs with "reduce-overhead"), the
EMA copy compiled too, and each path's first-step time printed once."""

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from scale_space_diffusion.diffusion.schedule import NoiseSchedule
from scale_space_diffusion.models.settings import Optimization, Sampling
from scale_space_diffusion.models.ssd import ScaleSpaceDiffusion
from scale_space_diffusion.networks.flexi_unet import FlexiUNet
from scale_space_diffusion.networks.unet import UNet

NET = dict(image_size=16, in_channels=1, model_channels=8, channel_mult=(1, 2), num_res_blocks=1,
           attention_resolutions=(), num_heads=2)  # fmt: skip


def ssd(torch_compile):
    torch.manual_seed(0)
    return ScaleSpaceDiffusion(FlexiUNet(**NET), num_levels=2, schedule=NoiseSchedule(timesteps=50),
                               optim=Optimization(ema_decay=0.9), sampling=Sampling(steps=4, grid_size=0),
                               torch_compile=torch_compile)  # fmt: skip


def fit(model, steps: int):
    data = TensorDataset(torch.rand(16, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1,
                         torch.zeros(16, dtype=torch.long))
    trainer = L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, accelerator="cpu")  # fmt: skip
    trainer.fit(model, DataLoader(data, batch_size=4))
    return trainer


def test_setup_compiles_net_and_ema_with_the_mode_and_static_shapes(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(UNet, "compile", lambda self, **kw: calls.append((self, kw)))  # records, compiles nothing
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
def test_reduce_overhead_computes_what_eager_computes():
    """The real compile (inductor on CPU; CUDA graphs need a GPU), one network path: the first training loss and
    the samples of the same weights equal eager's to float tolerance. Minutes on 2 CPU cores: the compile."""
    from scale_space_diffusion.diffusion.rng import image_noise

    def one_level(torch_compile):
        torch.manual_seed(0)
        return ScaleSpaceDiffusion(FlexiUNet(**NET), num_levels=1, schedule=NoiseSchedule(timesteps=50),
                                   optim=Optimization(ema_decay=None), sampling=Sampling(steps=3, grid_size=0),
                                   torch_compile=torch_compile)  # fmt: skip

    eager, compiled = one_level(False), one_level("reduce-overhead")
    losses = [float(fit(m, 1).callback_metrics["train/loss"]) for m in (eager, compiled)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    eager.load_state_dict(compiled.state_dict())
    torch.testing.assert_close(compiled.sample(image_noise(0, range(2))), eager.sample(image_noise(0, range(2))),
                               rtol=1e-4, atol=1e-5)  # fmt: skip
