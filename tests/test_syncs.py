"""The hot path reads no device value on the host: a training step (forward, loss, backward, optimizer, EMA) and a
sampling run of DDPM, SSD and Spectral Diffusion, with the model on the ``meta`` device as a stand-in for a GPU.

A tensor on ``meta`` has no data, so every read of one on the host shows up as an op: ``item()``/``int()``/``if t``
(``_local_scalar_dense``), ``nonzero``/``unique``/``masked_select`` (data-dependent shapes) and copies to the CPU.
Copies onto the device must be non-blocking (from pinned memory on CUDA). Tensors on the CPU (the host's own
numbers, such as the timesteps it drew) may be read freely. Caches of device copies (schedule tables, resize and
posterior matrices) fill on a first, unwatched pass; the watched pass repeats it exactly.
On a GPU the same steps run under ``torch.cuda.set_sync_debug_mode("error")`` (benchmarks/speed/gpu.py).
"""

from __future__ import annotations

import traceback

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from conftest import train_and_save
from scale_space_diffusion.diffusion.rng import image_noise
from scale_space_diffusion.diffusion.schedule import NoiseSchedule
from scale_space_diffusion.models.ddpm import DDPM
from scale_space_diffusion.models.settings import Optimization, Sampling
from scale_space_diffusion.models.spectral import SpectralDiffusion
from scale_space_diffusion.models.ssd import ScaleSpaceDiffusion
from scale_space_diffusion.networks.flexi_unet import FlexiUNet
from scale_space_diffusion.networks.spectral_unet import SpectralUNet
from scale_space_diffusion.networks.unet import UNet

aten = torch.ops.aten
READS = {aten._local_scalar_dense, aten.nonzero, aten.unique_dim, aten._unique2, aten._unique, aten.unique_consecutive,
         aten.masked_select, aten.is_nonzero, aten.equal}  # fmt: skip
DEVICE = torch.device("meta")
NET = dict(image_size=16, in_channels=1, model_channels=8, channel_mult=(1, 2, 2), num_res_blocks=1,
           attention_resolutions=(8,), num_heads=2)  # fmt: skip


class SyncWatch(TorchDispatchMode):
    """Records every op that would make the host wait for the device: a read of a device tensor, a copy from the
    device to the host, or a blocking copy onto the device; each with the line of our package that caused it."""

    def __init__(self):
        super().__init__()
        self.syncs: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        on_device = [a for a in args if isinstance(a, torch.Tensor) and a.device == DEVICE]
        packet = func._overloadpacket
        if packet in READS and on_device:  # a meta tensor has no value to give: stop here, naming the line
            raise AssertionError(self._record(f"{packet.__name__} of a device tensor"))
        elif packet is aten._to_copy and isinstance(args[0], torch.Tensor):
            src, dst = args[0].device, kwargs.get("device", args[0].device)
            if src == DEVICE and torch.device(dst) != DEVICE:
                raise AssertionError(self._record("copy from the device to the host"))
            elif src != DEVICE and torch.device(dst) == DEVICE and not kwargs.get("non_blocking", False):
                self._record("blocking copy onto the device")
        elif packet is aten.copy_ and args[0].device != args[1].device:
            if args[1].device == DEVICE or not kwargs.get("non_blocking", False):
                self._record(f"copy_ {args[1].device} -> {args[0].device}")
        return func(*args, **kwargs)

    def _record(self, what: str) -> str:
        ours = [f for f in traceback.extract_stack() if "scale_space_diffusion" in f.filename]
        where = f"{ours[-1].filename.split('scale_space_diffusion/')[-1]}:{ours[-1].lineno} {ours[-1].line}" if ours else "?"
        self.syncs.append(f"{what} at {where}")
        return self.syncs[-1]


def ddpm():
    return DDPM(UNet(**NET), NoiseSchedule(timesteps=100), optim=Optimization(ema_decay=0.99), sampling=Sampling(steps=6))


def cond_ddpm():
    net = UNet(**NET, num_classes=3, null_class=True)
    return DDPM(net, NoiseSchedule(timesteps=100), optim=Optimization(ema_decay=0.99, cond_drop_prob=0.5),
                sampling=Sampling(steps=6, guidance_scale=2.0))  # fmt: skip


def ssd():
    return ScaleSpaceDiffusion(FlexiUNet(**NET), num_levels=3, schedule=NoiseSchedule(timesteps=100),
                               optim=Optimization(ema_decay=0.99), sampling=Sampling(steps=8))  # fmt: skip


def ssd_ddim():
    model = ssd()
    return ScaleSpaceDiffusion(model.net, num_levels=3, schedule=NoiseSchedule(timesteps=100),
                               optim=Optimization(ema_decay=0.99), sampling=Sampling(steps=8, sampler="ddim"))  # fmt: skip


def spectral(teacher: str):
    net = SpectralUNet(16, 1, None, 8, (1, 2), 1, (), 4)
    return SpectralDiffusion(net, teacher, schedule=NoiseSchedule(timesteps=100), optim=Optimization(ema_decay=0.99),
                             sampling=Sampling(steps=6))  # fmt: skip


def train_step(model, step: int) -> None:
    """What Lightning's automatic optimisation runs for one batch: forward and loss, backward, optimizer, EMA."""
    images = torch.rand(4, 1, 16, 16, device=DEVICE) * 2 - 1
    labels = torch.arange(4, device=DEVICE) % 3
    loss = model.training_step((images, labels), step)
    loss.backward()
    model.optimizer.step()
    model.optimizer.zero_grad()
    model.net_ema.update(model.net)
    model.validation_step((images, labels), step)


def sample_run(model) -> None:
    model.sample(image_noise(0, range(3)), model.sample_labels(torch.arange(3)))


@pytest.fixture(params=["ddpm", "cond_ddpm", "ssd", "ssd_ddim", "spectral"])
def model(request, tiny_teacher):
    torch.manual_seed(0)
    m = spectral(tiny_teacher) if request.param == "spectral" else globals()[request.param]()
    if request.param == "spectral":
        m.prepare_fit()
        m.teacher.to(DEVICE)
    m = m.to(DEVICE)
    m.optimizer = torch.optim.AdamW(m.parameters(), lr=1e-4)
    return m


def test_a_training_step_and_a_sampling_run_read_nothing_on_the_host(model):
    for step in range(3):  # fills the device caches of every path these steps take
        train_step(model, step)
    sample_run(model)
    with SyncWatch() as watch:
        for step in range(3):
            train_step(model, step)
        sample_run(model)
    assert watch.syncs == [], "\n".join(watch.syncs)


def test_the_watch_sees_each_kind_of_host_read():
    """Power: each of the sync sites this test was written against is caught."""
    x = torch.zeros(4, device=DEVICE, dtype=torch.long)
    table = torch.arange(10.0)
    cases = {
        "int() of a device tensor": lambda: int(x[0]),
        "unique of a device tensor": lambda: x.unique(),
        "indexing a CPU table with t.cpu()": lambda: table[x.cpu()],
        "a blocking copy of noise onto the device": lambda: torch.randn(4).to(DEVICE),
        "if on a device bool": lambda: bool(torch.isfinite(x.float()).all()),
    }
    for name, fn in cases.items():
        with SyncWatch() as watch:
            try:
                fn()
            except AssertionError:  # the watch stops at a read it cannot answer
                pass
        assert watch.syncs, f"{name} was not caught"
