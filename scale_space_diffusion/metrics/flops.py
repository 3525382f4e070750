"""FLOPs and parameter counts by tracing the real network (as edm2's ``count_flops.py``).

Convention: FLOPs = 2 x multiply-accumulates, as ``torch.utils.flop_counter.FlopCounterMode``
reports them. Only matmuls, convolutions and attention are counted; norms, activations,
resampling and other elementwise ops are not (they are memory-bound and small).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_flops", "count_params", "count_train_flops", "register_cpu_attention_flops"]


def _sdpa_cpu_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    # 2 bmms, QK^T and PV: 4 B h L_q L_k d (torch's own sdpa formula)
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


def _sdpa_cpu_backward_flop(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    # 5 bmms: recompute QK^T, dP, dV, dQ, dK -> 10 B h L_q L_k d
    return flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def register_cpu_attention_flops() -> None:
    """Give the CPU flash-attention kernels (forward and backward) torch's sdpa FLOP formulas.

    On CPU, ``F.scaled_dot_product_attention`` dispatches to
    ``aten::_scaled_dot_product_flash_attention_for_cpu``, which FlopCounterMode (torch <= 2.14)
    has no formula for and counts as 0. Idempotent; a no-op where torch already registers one.
    FlopCounterMode copies the registry when constructed, so call this before creating one.
    """
    aten = torch.ops.aten
    pairs = [
        ("_scaled_dot_product_flash_attention_for_cpu", _sdpa_cpu_flop),
        ("_scaled_dot_product_flash_attention_for_cpu_backward", _sdpa_cpu_backward_flop),
    ]
    for op_name, formula in pairs:
        if not hasattr(aten, op_name):
            continue
        op = getattr(aten, op_name)
        if op not in flop_counter.flop_registry:
            flop_counter.register_flop_formula(op)(formula)


register_cpu_attention_flops()


def count_flops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """Forward FLOPs of one call ``fn(*args, **kwargs)``, run under ``torch.no_grad()``.

    ``fn`` may be a module or any function (e.g. a whole sampler trajectory); every counted
    op it runs is summed. Example: ``count_flops(net, x, sigma)`` with x of shape (N, C, H, W)
    gives the FLOPs for the batch; divide by N for per-image numbers.
    """
    register_cpu_attention_flops()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        fn(*args, **kwargs)
    return int(counter.get_total_flops())


def count_train_flops(module: nn.Module, loss_fn: Callable[[], Tensor]) -> int:
    """Forward + backward FLOPs of one training step: ``loss_fn().backward()``.

    ``loss_fn`` runs the forward pass of ``module`` (and anything else the loss needs) and
    returns a scalar loss. The optimizer update is elementwise and not counted. Gradients of
    ``module`` are set to None before and after, so call it outside a training loop.
    Backward costs about 2x forward (grad w.r.t. inputs and weights); the first layer skips
    the grad w.r.t. its input when the data does not require grad.
    """
    register_cpu_attention_flops()
    module.zero_grad(set_to_none=True)
    counter = FlopCounterMode(display=False)
    with counter:
        loss = loss_fn()
        loss.backward()
    module.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def count_params(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (shared parameters counted once)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
