"""Diffusion math in full precision, whatever autocast the step runs under.

Lightning's ``precision="bf16-mixed"`` (and ``"16-mixed"``) wraps the whole training and predict step in
``torch.autocast``, which runs every matmul in 16 bits, not only the network's. The resize R x R^T of (P1) and
(P2), the posterior's U (.) U^T of (P4) and DDIM's range projection are matmuls too: in bf16 (8-bit mantissa)
they would round x_t, the target and the sampler state, and hand bf16 tensors to ops with no bf16 kernel (the
antialiased bilinear upsample of an SSD transition). Only the network is meant to run in low precision; EDM casts
its output to float32 the same way (``EDMPrecond``: ``F_x.to(torch.float32)``).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import Tensor

__all__ = ["full_precision", "no_autocast", "upcast"]

Fn = TypeVar("Fn", bound=Callable)
LOW = (torch.float16, torch.bfloat16)


def no_autocast() -> contextlib.ExitStack:
    """A context with autocast off on every device type where it is on now (a no-op where it is off)."""
    stack = contextlib.ExitStack()
    for device_type in ("cpu", "cuda", "xpu", "mps"):
        try:
            enabled = torch.is_autocast_enabled(device_type)
        except RuntimeError:  # a device type this build does not know
            continue
        if enabled:
            stack.enter_context(torch.autocast(device_type, enabled=False))
    return stack


def upcast(x):
    """x as float32 if it is a float16 / bfloat16 tensor, else x unchanged."""
    return x.float() if isinstance(x, Tensor) and x.dtype in LOW else x


def full_precision(fn: Fn) -> Fn:
    """``fn`` with autocast off and its float16 / bfloat16 tensor arguments upcast to float32."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with no_autocast():
            return fn(*map(upcast, args), **{k: upcast(v) for k, v in kwargs.items()})

    return wrapper
