"""No hidden state between calls: how a model samples is an argument (nothing assigns ``.sampling`` outside a
constructor), and the math and models read no environment variable (seeds come from arguments or the config)."""

import ast

import pytest
import torch

from conftest import ROOT
from scale_space_diffusion.diffusion.rng import image_noise
from scale_space_diffusion.diffusion.schedule import NoiseSchedule
from scale_space_diffusion.models.ddpm import DDPM
from scale_space_diffusion.models.settings import Optimization, Sampling
from scale_space_diffusion.networks.unet import UNet

PACKAGE = ROOT / "scale_space_diffusion"


def sources(*folders):
    return [p for f in folders for p in sorted(f.rglob("*.py"))]


def sampling_assignments(tree: ast.AST) -> list[int]:
    """Lines that assign an attribute named ``sampling`` outside an ``__init__``."""
    bad = []
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and fn.name != "__init__":
            for node in ast.walk(fn):
                targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
                for t in targets:
                    for leaf in ast.walk(t) if t is not None else ():
                        if isinstance(leaf, ast.Attribute) and leaf.attr == "sampling" and isinstance(leaf.ctx, ast.Store):
                            bad.append(node.lineno)
    return bad


def test_nothing_assigns_sampling_outside_a_constructor():
    found = {str(p.relative_to(ROOT)): lines for p in sources(PACKAGE, ROOT / "benchmarks", ROOT / "tests")
             if (lines := sampling_assignments(ast.parse(p.read_text())))}  # fmt: skip
    assert found == {}


def test_the_check_finds_an_assignment():
    assert sampling_assignments(ast.parse("def f(model):\n    model.sampling = 1\n")) == [2]
    assert sampling_assignments(ast.parse("class A:\n    def __init__(self):\n        self.sampling = 1\n")) == []


@pytest.mark.parametrize("room", ["models", "diffusion"])
def test_no_environment_reads_in_the_math_and_models(room):
    readers = [str(p.relative_to(ROOT)) for p in sources(PACKAGE / room) if "environ" in p.read_text() or "getenv" in p.read_text()]
    assert readers == []


def test_generate_passes_its_options_down_and_leaves_the_model_as_it_was():
    model = DDPM(UNet(16, 1, None, 8, (1, 2), 1, (), 4), NoiseSchedule(timesteps=50), optim=Optimization(ema_decay=None),
                 sampling=Sampling(steps=5, sampler="ancestral"))  # fmt: skip
    before = model.sampling
    a = model.generate(2, steps=3, sampler="ddim", eta=0.0, output_type="tensor", progress=False)
    assert model.sampling is before
    b = model.sample(image_noise(0, range(2)), sampling=Sampling(steps=3, sampler="ddim", eta=0.0))
    torch.testing.assert_close(a, b.clamp(-1, 1))
