"""Flexi-UNet (Scale Space Diffusion, arXiv 2603.08709): runs only the blocks a step's resolution needs.

There is no resolution embedding: the input size picks the path.
- An r x r input goes through the shared stem conv, a 1x1 adapter to the width entering level r,
  the encoder from level r down (every higher-resolution block is skipped), and the middle block.
- Resolution-preserving (out_res = r): the decoder stops at level r, before its upsample.
- Resolution-increasing (out_res = 2r): the decoder continues through the upsample into level 2r;
  skips with no encoder counterpart are zeros.
- A 1x1 adapter maps the decoder width back to the top level's, then the shared head.

``layout="official"`` reproduces the authors' released network exactly: the decoder stops one
block early at its output level (so ``<top>_block<N>`` never runs and the stem's skip is never
consumed), and on an increasing path the last block at level r takes a zero skip. Adapters are
shared between levels of equal width, as in their code. ``layout="full"`` (default) runs every
decoder block, so at the top level it *is* the plain UNet.
"""

from __future__ import annotations

from typing import Literal, Sequence

from torch import Tensor, nn

from .contract import records_config
from .unet import UNet

Layout = Literal["full", "official"]


class FlexiUNet(UNet):
    """forward(x (B,C,r,r), t (B,), labels, out_res in {r, 2r}) -> (B,C_out,out_res,out_res).

    The arguments not listed here are UNet's.

    Args:
        image_size: R, the top resolution; divisible by 2^(len(channel_mult)-1).
        layout: "full" (every level's blocks on each path) or "official" (the authors' decoder; module docstring).
    """

    @records_config
    def __init__(
        self,
        image_size: int = 32,
        in_channels: int = 1,
        out_channels: int | None = None,
        model_channels: int = 64,
        channel_mult: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 2,
        attention_resolutions: Sequence[int] = (16,),
        num_heads: int = 4,
        dropout: float = 0.0,
        num_classes: int | None = None,
        null_class: bool = False,
        layout: Layout = "full",
    ):
        super().__init__(
            image_size=image_size, in_channels=in_channels, out_channels=out_channels, model_channels=model_channels,
            channel_mult=channel_mult, num_res_blocks=num_res_blocks, attention_resolutions=attention_resolutions,
            num_heads=num_heads, dropout=dropout, num_classes=num_classes, null_class=null_class,
        )  # fmt: skip
        if layout not in ("full", "official"):
            raise ValueError(f"unknown layout {layout!r}; use 'full' or 'official'")
        self.layout = layout
        top = model_channels * channel_mult[0]
        self.adapters_in, self.adapters_out = nn.ModuleDict(), nn.ModuleDict()
        shared_in: dict[int, nn.Module] = {}
        shared_out: dict[int, nn.Module] = {}
        for res, mult in zip(self.levels[1:], channel_mult[1:]):
            c_in, c_out = self.level_in_channels[res], model_channels * mult
            if c_in != top:
                self.adapters_in[str(res)] = shared_in.setdefault(c_in, nn.Conv2d(top, c_in, 1))
            if c_out != top:
                self.adapters_out[str(res)] = shared_out.setdefault(c_out, nn.Conv2d(c_out, top, 1))

    def plan(self, in_res: int, out_res: int) -> list[tuple[str, bool]]:
        n = self.num_res_blocks
        official = self.layout == "official"
        steps = []
        for res in reversed(self.levels):
            if res > out_res:
                break
            if res != self.levels[-1]:
                steps.append((f"{res}x{res}_up", False))
            for i in range(n + 1):
                if official and res == out_res and i == n:
                    break  # the authors' decoder stops one block early
                real = res <= in_res and not (official and out_res > in_res and res == in_res and i == n)
                steps.append((f"{res}x{res}_block{i}", real))
        return steps

    def check_path(self, in_res: int, out_res: int) -> None:
        if in_res not in self.levels:
            raise ValueError(f"input resolution {in_res} is not a UNet level {self.levels}")
        if out_res not in (in_res, 2 * in_res) or out_res > self.image_size:
            raise ValueError(f"cannot go from {in_res}px to {out_res}px: out_res must be in_res or 2*in_res <= R")

    def forward(self, x: Tensor, t: Tensor, labels: Tensor | None = None, out_res: int | None = None) -> Tensor:
        in_res = x.shape[-1]
        out_res = in_res if out_res is None else int(out_res)
        self.check_path(in_res, out_res)
        emb = self.embed(t, labels)
        h = self.enc[f"{self.image_size}x{self.image_size}_conv"](x)  # shared stem at any resolution
        if str(in_res) in self.adapters_in:
            h = self.adapters_in[str(in_res)](h)
        h, skips = self.encode(h, emb, start=in_res)
        h = self.decode(h, emb, skips, self.plan(in_res, out_res))
        if str(out_res) in self.adapters_out:
            h = self.adapters_out[str(out_res)](h)
        return self.head(h)

    def active_params(self, in_res: int, out_res: int | None = None) -> int:
        """Parameters touched by the path in_res -> out_res (shared modules counted once)."""
        out_res = in_res if out_res is None else out_res
        mods = [self.time_embed, self.enc[f"{self.image_size}x{self.image_size}_conv"], self.mid, self.out_norm, self.out_conv]
        mods += [m for k, m in self.enc.items() if "_block" in k and int(k.split("x")[0]) <= in_res]
        mods += [m for k, m in self.enc.items() if k.endswith("_down") and int(k.split("x")[0]) < in_res]
        mods += [self.dec[k] for k, _ in self.plan(in_res, out_res)]
        mods += [self.adapters_in[str(in_res)]] if str(in_res) in self.adapters_in else []
        mods += [self.adapters_out[str(out_res)]] if str(out_res) in self.adapters_out else []
        if self.label_emb is not None:
            mods.append(self.label_emb)
        params = {id(p): p for m in mods for p in m.parameters()}
        if self.null_emb is not None:
            params[id(self.null_emb)] = self.null_emb
        return sum(p.numel() for p in params.values())
