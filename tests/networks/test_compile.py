"""torch.compile friendliness of the networks, checked with dynamo alone (backend "eager": no C++ compiler, seconds).

Every resolution path is one graph without breaks, and ``net.compile()`` keeps one static graph per path and grad
mode: no automatic dynamic shapes, no recompiles beyond the paths, outputs equal to eager.
"""

import pytest
import torch
from torch._dynamo.utils import counters

from scale_space_diffusion.networks.flexi_unet import FlexiUNet
from scale_space_diffusion.networks.spectral_unet import SpectralUNet
from scale_space_diffusion.networks.unet import UNet

TINY = dict(image_size=16, in_channels=1, model_channels=8, channel_mult=(1, 2), num_res_blocks=1,
            attention_resolutions=(8,), num_heads=2)  # fmt: skip
FLEXI_PATHS = [(16, 16), (8, 8), (8, 16)]


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize(
    "make, paths",
    [
        (lambda: FlexiUNet(**TINY), FLEXI_PATHS),
        (lambda: FlexiUNet(**TINY, layout="official"), FLEXI_PATHS),
        (lambda: UNet(**TINY), [(16, 16)]),
        (lambda: SpectralUNet(**TINY), [(16, 16)]),  # the wavelet gates' Haar filters used to break the graph 16 times
    ],
    ids=["flexi", "flexi-official", "unet", "spectral"],
)
def test_every_path_is_one_graph(make, paths):
    net = make()
    for r, out in paths:
        x, t = torch.randn(2, 1, r, r), torch.tensor([3, 7])
        args = (x, t, None, out) if isinstance(net, FlexiUNet) else (x, t)
        explained = torch._dynamo.explain(net)(*args)
        assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons


def test_compile_keeps_one_static_graph_per_path_and_grad_mode():
    torch.manual_seed(0)
    net, ref = FlexiUNet(**TINY), FlexiUNet(**TINY)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.2)  # zero-initialised output convs would make every output 0
    ref.load_state_dict(net.state_dict())
    net.compile(backend="eager")
    for _ in range(2):  # the second round must hit the cache
        for r, out in FLEXI_PATHS:
            x, t = torch.randn(2, 1, r, r), torch.tensor([3, 7])
            y = net(x, t, None, out_res=out)
            y.sum().backward()
            torch.testing.assert_close(y, ref(x, t, None, out_res=out), rtol=0, atol=1e-5)
            with torch.no_grad():
                net(x, t, None, out_res=out)
    assert counters["stats"]["unique_graphs"] == 2 * len(FLEXI_PATHS)


def test_the_recompile_limit_is_raised_inside_the_networks_calls_only():
    """Each ladder path is its own graph: dynamo compiles them under the network's limit (64), and the process's
    setting is the same before and after (issue 26: no global torch settings)."""
    default, seen = torch._dynamo.config.recompile_limit, []

    def backend(gm, example_inputs):  # dynamo's eager backend, recording the limit in force while it compiles
        seen.append(torch._dynamo.config.recompile_limit)
        return gm.forward

    net = FlexiUNet(**TINY)
    net.compile(backend=backend)
    assert torch._dynamo.config.recompile_limit == default
    for r, out in FLEXI_PATHS:
        net(torch.randn(2, 1, r, r), torch.tensor([3, 7]), None, out_res=out)
        assert torch._dynamo.config.recompile_limit == default
    assert seen == [max(default, 64)] * len(FLEXI_PATHS)
