"""ADM UNet (openai/guided-diffusion, Dhariwal & Nichol 2021) with blocks keyed by resolution.

Blocks live in dicts keyed edm-style: ``enc["32x32_conv"]`` (stem), ``enc["16x16_down"]``,
``enc["16x16_block0"]``, ``mid``, ``dec["16x16_up"]``, ``dec["16x16_block2"]``. ``forward`` walks
a *plan*: the list of decoder blocks to run and whether each gets an encoder skip. The plain UNet
runs the whole plan; :class:`~.flexi_unet.FlexiUNet` plans shorter paths over the same blocks.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..lightning_internals import wrap_compiled_call
from .attention import Attention
from .contract import records_config
from .layers import group_norm, zero_init

RECOMPILE_LIMIT = 64  # dynamo recompiles per function inside a compiled network's calls: one graph per ladder path


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding (B,) -> (B, dim): [cos(t f_i), sin(t f_i)], f_i = max_period^(-i/half)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with scale-shift (FiLM) timestep conditioning: norm(h)(1 + s) + b."""

    def __init__(self, in_ch: int, out_ch: int, emb_ch: int, dropout: float = 0.0, scale_shift: bool = True):
        super().__init__()
        self.scale_shift = scale_shift
        self.norm0 = group_norm(in_ch)
        self.conv0 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_ch, 2 * out_ch if scale_shift else out_ch)
        self.norm1 = group_norm(out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = zero_init(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip = nn.Identity() if in_ch == out_ch else nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv0(F.silu(self.norm0(x)))
        e = self.emb(F.silu(emb))[:, :, None, None].to(h.dtype)
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.norm1(h) * (1 + scale) + shift
        else:
            h = self.norm1(h + e)
        h = self.conv1(self.dropout(F.silu(h)))
        return self.skip(x) + h


class Block(nn.Module):
    """A ResBlock followed by optional attention: one ADM ``TimestepEmbedSequential``."""

    def __init__(self, in_ch: int, out_ch: int, emb_ch: int, attention: bool, num_heads: int, dropout: float):
        super().__init__()
        self.res = ResBlock(in_ch, out_ch, emb_ch, dropout)
        self.attn = Attention(out_ch, num_heads) if attention else None

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        x = self.res(x, emb)
        return x if self.attn is None else self.attn(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class UNet(nn.Module):
    """ADM UNet. forward(x (B,C,R,R), t (B,), labels (B,) | None) -> (B,C_out,R,R).

    Args:
        image_size: R, the input and output resolution; divisible by 2^(len(channel_mult)-1).
        in_channels: image channels (1 greyscale, 3 RGB).
        out_channels: output channels; None: in_channels.
        model_channels: base width; level i has model_channels * channel_mult[i] channels.
        channel_mult: width multiplier per level; level i runs at R / 2^i.
        num_res_blocks: ResBlocks per encoder level (the decoder has one more).
        attention_resolutions: pixel resolutions with self-attention (the middle block always has it).
        num_heads: attention heads; must divide every attended level's width.
        dropout: dropout inside the ResBlocks.
        num_classes: number of classes for a class-conditional net; None: unconditional.
        null_class: add a learned "no label" embedding for label -1 (classifier-free guidance).
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
    ):
        super().__init__()
        L = len(channel_mult)
        if image_size % 2 ** (L - 1):
            raise ValueError(
                f"image_size {image_size} is not divisible by 2^(len(channel_mult)-1) = {2 ** (L - 1)}; "
                f"use an image_size divisible by {2 ** (L - 1)} or a shorter channel_mult"
            )
        if model_channels % 2:
            raise ValueError(f"model_channels={model_channels} must be even (the timestep embedding is cos and sin halves)")
        self.image_size, self.in_channels = image_size, in_channels
        self.out_channels = out_channels or in_channels
        self.model_channels, self.channel_mult, self.num_res_blocks = model_channels, tuple(channel_mult), num_res_blocks
        self.levels = [image_size >> i for i in range(L)]  # [R, R/2, ...]
        self.num_classes = num_classes
        emb_ch = 4 * model_channels
        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb_ch), nn.SiLU(), nn.Linear(emb_ch, emb_ch))
        self.label_emb = nn.Embedding(num_classes, emb_ch) if num_classes else None
        if null_class and not num_classes:
            raise ValueError("null_class=true needs a class-conditional net: set num_classes too")
        # Zero-initialised (no draw from the global RNG) and registered only if asked: other nets' keys are unchanged.
        self.null_emb = nn.Parameter(torch.zeros(emb_ch)) if null_class else None
        block = lambda i, o, res: Block(i, o, emb_ch, res in attention_resolutions, num_heads, dropout)  # noqa: E731

        self.enc, self.dec = nn.ModuleDict(), nn.ModuleDict()
        ch = model_channels * channel_mult[0]
        self.enc[f"{image_size}x{image_size}_conv"] = nn.Conv2d(in_channels, ch, 3, padding=1)
        skips = [ch]
        self.level_in_channels = {}  # channels entering each level's first encoder block
        self.level_channels = {res: model_channels * mult for res, mult in zip(self.levels, channel_mult)}
        for lvl, (res, mult) in enumerate(zip(self.levels, channel_mult)):
            if lvl > 0:
                self.enc[f"{res}x{res}_down"] = self.make_down(ch)
                skips.append(ch)
            self.level_in_channels[res] = ch
            for i in range(num_res_blocks):
                self.enc[f"{res}x{res}_block{i}"] = block(ch, model_channels * mult, res)
                ch = model_channels * mult
                skips.append(ch)
        self.mid = nn.ModuleDict(
            {"res0": ResBlock(ch, ch, emb_ch, dropout), "attn": Attention(ch, num_heads), "res1": ResBlock(ch, ch, emb_ch, dropout)}
        )
        self.skip_channels = {}  # decoder key -> channels of its skip input
        for lvl in reversed(range(L)):
            res, mult = self.levels[lvl], channel_mult[lvl]
            if lvl < L - 1:
                self.dec[f"{res}x{res}_up"] = self.make_up(ch)
            for i in range(num_res_blocks + 1):
                key = f"{res}x{res}_block{i}"
                self.skip_channels[key] = skips.pop()
                self.dec[key] = block(ch + self.skip_channels[key], model_channels * mult, res)
                ch = model_channels * mult
        self.out_norm = group_norm(ch)
        self.out_conv = zero_init(nn.Conv2d(ch, self.out_channels, 3, padding=1))

    def make_down(self, channels: int) -> nn.Module:
        """The x1/2 resampler; Spectral Diffusion swaps in wavelet-gated ones."""
        return nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def make_up(self, channels: int) -> nn.Module:
        return Upsample(channels)

    def embed(self, t: Tensor, labels: Tensor | None) -> Tensor:
        emb = self.time_embed(timestep_embedding(t, self.model_channels))
        if self.label_emb is not None:
            if labels is None:
                raise ValueError("this UNet is class-conditional: pass labels")
            if self.null_emb is not None:  # label -1: the learned null embedding
                return emb + torch.where((labels < 0)[:, None], self.null_emb, self.label_emb(labels.clamp_min(0)))
            if not torch.compiler.is_compiling() and bool((labels < 0).any()):
                raise ValueError(
                    "label -1 (no label, for classifier-free guidance) needs a null-class embedding: build the net with "
                    "null_class=true and train with cond_drop_prob > 0"
                )
            emb = emb + self.label_emb(labels)
        return emb

    def encode(self, h: Tensor, emb: Tensor, start: int) -> tuple[Tensor, list[Tensor]]:
        """Encoder from level ``start`` (its stem output h) through the middle block; returns (h, skips)."""
        skips = [h]
        for res in self.levels:
            if res > start:
                continue
            if res < start:
                h = self.enc[f"{res}x{res}_down"](h)
                skips.append(h)
            for i in range(self.num_res_blocks):
                h = self.enc[f"{res}x{res}_block{i}"](h, emb)
                skips.append(h)
        h = self.mid["res0"](h, emb)
        h = self.mid["attn"](h)
        return self.mid["res1"](h, emb), skips

    def plan(self, in_res: int, out_res: int) -> list[tuple[str, bool]]:
        """Decoder keys to run, bottom-up, each with whether it takes an encoder skip (else zeros)."""
        return [(key, True) for key in self.dec]

    def decode(self, h: Tensor, emb: Tensor, skips: list[Tensor], plan: list[tuple[str, bool]],
               features: dict[int, Tensor] | None = None) -> Tensor:  # fmt: skip
        """Run ``plan``; ``features``, if given, receives the output of the last block run at each resolution."""
        for key, real_skip in plan:
            if key.endswith("_up"):
                h = self.dec[key](h)
                continue
            if real_skip:
                skip = skips.pop()
            else:  # no encoder counterpart on a resolution-increasing path
                skip = h.new_zeros(h.shape[0], self.skip_channels[key], *h.shape[2:])
            h = self.dec[key](torch.cat([h, skip], dim=1), emb)
            if features is not None:
                features[h.shape[-1]] = h
        return h

    def head(self, h: Tensor) -> Tensor:
        return self.out_conv(F.silu(self.out_norm(h)))

    def compile(self, *args, **kwargs) -> None:
        """``torch.compile`` in place (``nn.Module.compile``), with one static graph per resolution path.

        ``dynamic=False`` unless given: the blocks a Flexi-UNet runs depend on the input size, so dynamo's automatic
        dynamic shapes (after the second size) would still guard on every size, break the graph on ``str(size)``
        and compile slower symbolic-shape kernels. Static graphs compile once per (path, batch size, grad mode) and
        are cached; dynamo's recompile limit (8 per function by default, beyond which calls silently run eagerly)
        is raised to 64 inside this network's calls (a config patch around each, restored after it; the process's
        setting is left alone) so that a whole ladder keeps its graphs. Measured on the busy 2-core CPU (tiny SSD,
        cold inductor cache): its three training paths compiled in 227 s instead of 547 s.
        """
        import torch._dynamo

        kwargs.setdefault("dynamic", False)
        super().compile(*args, **kwargs)
        limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
        wrap_compiled_call(self, lambda call: _with_recompile_limit(call, limit))

    def forward(self, x: Tensor, t: Tensor, labels: Tensor | None = None,
                features: dict[int, Tensor] | None = None) -> Tensor:  # fmt: skip
        """``features``: optional dict filled with each decoder level's output (resolution -> (B,C_l,r,r))."""
        R = self.image_size
        if x.shape[-2:] != (R, R):
            raise ValueError(f"UNet expects {R}x{R} inputs, got {tuple(x.shape[-2:])}; use FlexiUNet for other sizes")
        emb = self.embed(t, labels)
        h, skips = self.encode(self.enc[f"{R}x{R}_conv"](x), emb, start=R)
        return self.head(self.decode(h, emb, skips, self.plan(R, R), features))


def _with_recompile_limit(call, limit: int):
    """``call`` run with dynamo's recompile limit at ``limit``, restored when it returns."""
    import torch._dynamo

    def limited(*args, **kwargs):
        with torch._dynamo.config.patch(recompile_limit=limit):
            return call(*args, **kwargs)

    return limited
