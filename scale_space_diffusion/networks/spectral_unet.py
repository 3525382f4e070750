"""The slim UNet of Spectral Diffusion (Yang et al., CVPR 2023, arXiv 2211.17106).

The ADM UNet with its down- and upsampling replaced by wavelet-gated ones (WG-Down, WG-Up);
every other block is the UNet's own. ``gating=False`` keeps ordinary conv resampling, for ablations.
"""

from __future__ import annotations

from typing import Literal, Sequence

from torch import nn

from .contract import records_config
from .unet import UNet
from .wavelet_gate import WGDown, WGUp


class SpectralUNet(UNet):
    @records_config
    def __init__(
        self,
        image_size: int = 32,
        in_channels: int = 1,
        out_channels: int | None = None,
        model_channels: int = 16,  # slim: about 1/4 of the teacher's width, ~1/16 of its FLOPs
        channel_mult: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 2,
        attention_resolutions: Sequence[int] = (16,),
        num_heads: int = 4,
        dropout: float = 0.0,
        num_classes: int | None = None,
        null_class: bool = False,  # a learned "no label" embedding (label -1), for classifier-free guidance
        gating: bool = True,  # wavelet-gated resampling; False: the UNet's conv resampling
        gate_reduction: int = 4,  # gate MLP hidden width C / gate_reduction
        down_mode: Literal["sum", "concat"] = "sum",  # WG-Down: sum of gated sub-bands, or concat + 1x1 conv
    ):
        self.gating, self.gate_reduction, self.down_mode = gating, gate_reduction, down_mode  # read by make_down/up
        super().__init__(
            image_size, in_channels, out_channels, model_channels, channel_mult,
            num_res_blocks, attention_resolutions, num_heads, dropout, num_classes, null_class,
        )  # fmt: skip

    def make_down(self, channels: int) -> nn.Module:
        if not self.gating:
            return super().make_down(channels)
        return WGDown(channels, reduction=self.gate_reduction, mode=self.down_mode)

    def make_up(self, channels: int) -> nn.Module:
        return WGUp(channels, reduction=self.gate_reduction) if self.gating else super().make_up(channels)
