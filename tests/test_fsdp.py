"""FSDP: where it cannot run, it fails at once with a message that says why and what to do instead.

torch's FSDP needs a CUDA device ("FSDP needs a non-CPU accelerator device"), and Lightning refuses the
``fsdp`` strategies on CPU when the Trainer is built, before any data is read or step is taken.
"""

import sys
import types

import pytest
from lightning.pytorch.strategies import FSDPStrategy

from conftest import ROOT

from scale_space_diffusion.diffusion.schedule import NoiseSchedule
from scale_space_diffusion.models.settings import Optimization
from scale_space_diffusion.cli import run
from scale_space_diffusion.models.ddpm import DDPM
from scale_space_diffusion.networks.unet import UNet


@pytest.mark.parametrize("strategy", ["fsdp", "fsdp_cpu_offload"])
def test_fsdp_on_cpu_is_refused_before_any_work(strategy, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["ssd"])
    args = ["fit", f"--config={ROOT / 'configs/ssd_celeba64.yaml'}", f"--trainer.strategy={strategy}",
            "--trainer.accelerator=cpu", f"--trainer.default_root_dir={tmp_path}", "--data.dataset=/nonexistent"]  # fmt: skip
    with pytest.raises(ValueError, match=r"strategy `fsdp` requires a GPU accelerator, but received `accelerator='cpu'`"):
        run(args)
    assert list(tmp_path.iterdir()) == []  # nothing written; the missing dataset was never even looked at


def test_ema_under_fsdp_is_refused_with_the_fix():
    net = lambda: UNet(16, 1, None, 8, (1, 2), 1, (), 4)  # noqa: E731
    fsdp = types.SimpleNamespace(strategy=FSDPStrategy(), datamodule=None)
    model = DDPM(net(), schedule=NoiseSchedule(timesteps=100), optim=Optimization(ema_decay=0.999))
    model._trainer = fsdp
    with pytest.raises(ValueError, match=r"ema_decay=0.999 .* set --model.init_args.optim.ema_decay=null"):
        model.setup("fit")
    model = DDPM(net(), schedule=NoiseSchedule(timesteps=100), optim=Optimization(ema_decay=None))
    model._trainer = fsdp
    model.setup("fit")  # no EMA: FSDP is fine
