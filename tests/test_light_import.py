"""The models run where only torch and Lightning are installed (a GPU image without torch-fidelity, datasets,
jsonargparse, docstring-parser or PyWavelets): in a subprocess where those packages cannot be found, the models
import, train a step and sample."""

import subprocess
import sys
import textwrap

from conftest import ROOT

ABSENT = ("torch_fidelity", "datasets", "jsonargparse", "docstring_parser", "pywt")  # modules
DISTRIBUTIONS = ("torch-fidelity", "torch_fidelity", "datasets", "jsonargparse", "docstring-parser", "docstring_parser",
                 "PyWavelets", "pywavelets")  # fmt: skip

SCRIPT = textwrap.dedent(f"""
    import importlib.abc, importlib.metadata, sys
    ABSENT, DISTRIBUTIONS = {ABSENT!r}, {DISTRIBUTIONS!r}

    def hidden(real):  # package metadata says "not installed" too (torchmetrics checks it before importing)
        def call(name, *args, **kwargs):
            if name in DISTRIBUTIONS:
                raise importlib.metadata.PackageNotFoundError(name)
            return real(name, *args, **kwargs)
        return call

    importlib.metadata.version = hidden(importlib.metadata.version)
    importlib.metadata.distribution = hidden(importlib.metadata.distribution)

    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ABSENT:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    sys.meta_path.insert(0, NotInstalled())
    import torch
    from scale_space_diffusion.models import DDPM, ScaleSpaceDiffusion, SpectralDiffusion
    from scale_space_diffusion.models.settings import Optimization, Sampling
    from scale_space_diffusion.diffusion.schedule import NoiseSchedule
    from scale_space_diffusion.diffusion.rng import image_noise
    from scale_space_diffusion.networks.flexi_unet import FlexiUNet

    net = FlexiUNet(16, 1, None, 8, (1, 2, 2), 1, (), 4)
    model = ScaleSpaceDiffusion(net, num_levels=3, schedule=NoiseSchedule(timesteps=50),
                                optim=Optimization(ema_decay=0.9), sampling=Sampling(steps=4))
    loss = model.training_step((torch.rand(2, 1, 16, 16) * 2 - 1, torch.zeros(2, dtype=torch.long)), 0)
    loss.backward()
    assert model.sample(image_noise(0, range(2))).shape == (2, 1, 16, 16)
    print("loaded:", sorted(m for m in ABSENT if m in sys.modules))
""")


def test_models_import_train_and_sample_without_the_optional_packages():
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "loaded: []" in out.stdout
