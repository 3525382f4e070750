"""The network contract: every network satisfies DenoisingNetwork, and its config rebuilds it."""

import pytest
import torch
from torch import nn

from scale_space_diffusion.models.ddpm import DDPM
from scale_space_diffusion.networks.contract import DenoisingNetwork
from scale_space_diffusion.networks.flexi_unet import FlexiUNet
from scale_space_diffusion.networks.spectral_unet import SpectralUNet
from scale_space_diffusion.networks.unet import UNet

ARGS = dict(image_size=16, in_channels=1, model_channels=8, channel_mult=(1, 2), num_res_blocks=1,
            attention_resolutions=(8,), num_heads=2)  # fmt: skip


@pytest.mark.parametrize("cls, extra", [(UNet, {}), (FlexiUNet, {"layout": "official"}),
                                        (SpectralUNet, {"gating": False, "down_mode": "concat"})])  # fmt: skip
def test_config_is_the_outermost_constructors_bound_arguments_and_rebuilds_the_net(cls, extra):
    torch.manual_seed(0)
    net = cls(**ARGS, **extra)
    assert isinstance(net, DenoisingNetwork)
    assert net.config["channel_mult"] == [1, 2] and all(net.config[k] == v for k, v in extra.items())
    assert set(net.config) == set(cls.__init__.__wrapped__.__code__.co_varnames[1:len(net.config) + 1])
    torch.manual_seed(0)
    twin = cls(**net.config)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), twin.state_dict().values()))


def test_a_module_without_the_contract_is_refused_by_name():
    with pytest.raises(TypeError, match=r"net is a Conv2d, which lacks the DenoisingNetwork attributes \[.image_size.,"):
        DDPM(nn.Conv2d(1, 1, 3))


def test_unet_reports_the_output_of_each_decoder_level():
    net = UNet(**ARGS).eval()
    features: dict = {}
    out = net(torch.randn(2, 1, 16, 16), torch.tensor([3, 7]), features=features)
    assert sorted(features) == [8, 16] and out.shape == (2, 1, 16, 16)
    assert features[16].shape == (2, 8, 16, 16) and features[8].shape == (2, 16, 8, 8)
