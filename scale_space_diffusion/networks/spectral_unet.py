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
    """The slim student: a UNet whose down/up sampling is wavelet-gated (WG-Down / WG-Up).

    forward(x (B,C,R,R), t (B,), labels (B,) | None) -> (B,C_out,R,R).

    The arguments not listed here are UNet's.

    Args:
        model_channels: base width (slim: about 1/3-1/4 of the teacher's, 8-18x fewer MACs).
        gating: wavelet-gated resampling; False: the UNet's conv resampling (the ablation).
        gate_reduction: the gate MLP's hidden width is C / gate_reduction.
        down_mode: WG-Down as the sum of the gated sub-bands ("sum") or their concatenation and a 1x1 conv ("concat").
    """

    @records_config
    def __init__(
        self,
        image_size: int = 32,
        in_channels: int = 1,
        out_channels: int | None = None,
        model_channels: int = 16,
        channel_mult: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 2,
        attention_resolutions: Sequence[int] = (16,),
        num_heads: int = 4,
        dropout: float = 0.0,
        num_classes: int | None = None,
        null_class: bool = False,
        gating: bool = True,
        gate_reduction: int = 4,
        down_mode: Literal["sum", "concat"] = "sum",
    ):
        self.gating, self.gate_reduction, self.down_mode = gating, gate_reduction, down_mode  # read by make_down/up
        super().__init__(
            image_size=image_size, in_channels=in_channels, out_channels=out_channels, model_channels=model_channels,
            channel_mult=channel_mult, num_res_blocks=num_res_blocks, attention_resolutions=attention_resolutions,
            num_heads=num_heads, dropout=dropout, num_classes=num_classes, null_class=null_class,
        )  # fmt: skip

    def make_down(self, channels: int) -> nn.Module:
        if not self.gating:
            return super().make_down(channels)
        return WGDown(channels, reduction=self.gate_reduction, mode=self.down_mode)

    def make_up(self, channels: int) -> nn.Module:
        return WGUp(channels, reduction=self.gate_reduction) if self.gating else super().make_up(channels)
