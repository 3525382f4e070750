"""Wavelet gating (WG-Down / WG-Up) of Spectral Diffusion (Yang et al., CVPR 2023, arXiv 2211.17106).

Drop-in replacements for an ADM UNet's ``Downsample`` / ``Upsample``: ``forward(x) -> y``.
The paper leaves several details open; the choices made here:

- Gate: g = sigmoid(MLP(GAP(.))), MLP = Linear(C_in -> max(C // reduction, 4)) -> SiLU ->
  Linear(-> 4C); one gate per channel per sub-band, shape (B, 4, C, 1, 1).
- Gate input: WG-Down pools the block input X (the tensor being decomposed); WG-Up pools the
  4C_out conv output (the sub-band tensor being gated).
- Init: the last gate Linear is zero-initialised, so every gate starts at exactly 0.5. Then
  WG-Down("sum") starts as 0.5 * (ll + lh + hl + hh) = x[..., ::2, ::2] (strided subsampling).
- WG-Down("sum") with out_channels != channels appends a 1x1 conv after the sum; "concat" always
  maps the 4C gated sub-bands to out_channels with a 1x1 conv.
- WG-Up: 3x3 conv (padding 1) C -> 4*C_out, chunks read as (ll, lh, hl, hh) in that order.
- To fix the gates (tests, ablations) reach them through ``module.gate``, e.g. zero
  ``gate.mlp[-1].weight`` and fill its bias with a large value for g = 1.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from .wavelets import dwt2_stacked, idwt2_stacked


class WaveletGate(nn.Module):
    """g = sigmoid(MLP(GAP(X))): (B, C_in, H, W) -> gates (B, bands, C, 1, 1) in (0, 1)."""

    def __init__(
        self,
        channels: int,  # C: channels of each gated sub-band
        bands: int = 4,  # sub-bands gated (ll, lh, hl, hh)
        reduction: int = 4,  # hidden width = max(C // reduction, 4)
        in_channels: int | None = None,  # channels of the pooled tensor; default C
    ):
        super().__init__()
        self.channels, self.bands = channels, bands
        hidden = max(channels // reduction, 4)
        self.mlp = nn.Sequential(
            nn.Linear(in_channels or channels, hidden),
            nn.SiLU(),
            nn.Linear(hidden, bands * channels),
        )
        nn.init.zeros_(self.mlp[-1].weight)  # g = sigmoid(0) = 0.5 at init
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, x: Tensor) -> Tensor:
        g = self.mlp(x.mean(dim=(-2, -1)))  # GAP -> MLP: (B, bands * C)
        return torch.sigmoid(g).view(-1, self.bands, self.channels, 1, 1)


class WGDown(nn.Module):
    """WG-Down: Haar DWT, then gate the sub-bands X_i (i in LL, LH, HL, HH) and merge them.

    "sum":    y = sum_i g_i * X_i             (then a 1x1 conv if out_channels != channels)
    "concat": y = Conv1x1(cat_i(g_i * X_i))   (4C -> out_channels)
    x: (B, C, H, W) -> y: (B, C_out, H/2, W/2).
    """

    def __init__(
        self,
        channels: int,  # C in
        out_channels: int | None = None,  # C_out; default C
        reduction: int = 4,  # gate MLP reduction
        mode: Literal["sum", "concat"] = "sum",  # how gated sub-bands are merged
    ):
        super().__init__()
        if mode not in ("sum", "concat"):
            raise ValueError(f"unknown WGDown mode {mode!r}; use 'sum' or 'concat'")
        self.channels, self.out_channels, self.mode = channels, out_channels or channels, mode
        self.gate = WaveletGate(channels, 4, reduction)  # pools the input X
        if mode == "concat":
            self.proj = nn.Conv2d(4 * channels, self.out_channels, 1)
        elif self.out_channels != channels:
            self.proj = nn.Conv2d(channels, self.out_channels, 1)
        else:
            self.proj = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        bands = dwt2_stacked(x) * self.gate(x)  # g_i * X_i: (B, 4, C, H/2, W/2)
        if self.mode == "sum":
            return self.proj(bands.sum(dim=1))
        return self.proj(bands.flatten(1, 2))  # (B, 4C, H/2, W/2), band-major


class WGUp(nn.Module):
    """WG-Up: conv to 4 sub-bands, gate each, inverse Haar DWT.

    y = IDWT(g_i * X_i), (X_LL, X_LH, X_HL, X_HH) = chunk_4(Conv3x3(x)).
    x: (B, C, H, W) -> y: (B, C_out, 2H, 2W).
    """

    def __init__(
        self,
        channels: int,  # C in
        out_channels: int | None = None,  # C_out; default C
        reduction: int = 4,  # gate MLP reduction
    ):
        super().__init__()
        self.channels, self.out_channels = channels, out_channels or channels
        self.conv = nn.Conv2d(channels, 4 * self.out_channels, 3, padding=1)
        self.gate = WaveletGate(self.out_channels, 4, reduction, in_channels=4 * self.out_channels)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv(x)  # (B, 4 C_out, H, W)
        bands = h.unflatten(1, (4, self.out_channels))  # chunks ll, lh, hl, hh: (B, 4, C_out, H, W)
        return idwt2_stacked(bands * self.gate(h))
