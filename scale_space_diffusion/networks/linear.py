"""``x @ W^T + b`` for token-major activations, through oneDNN on an AVX-512 CPU.

On CPU, ``F.linear`` in float32 calls the BLAS (MKL in the PyTorch wheels). MKL's sgemm takes a slower code path
on AMD processors: on an AVX-512 AMD EPYC it ran the attention projections at ~190 GFLOP/s, while oneDNN, which
PyTorch already uses for every convolution, runs the same product at ~460 (a 2048^2 product: ~210 vs ~440;
``python -m benchmarks profile`` measures both among its ceilings). A linear map over the last dimension *is* a 1x1 convolution
over a channels-last view, with no copy: rows (M, K) are M pixels of K channels. So in float32 on an AVX-512 CPU
the product is computed by ``F.conv2d``; gradients flow through oneDNN's convolution backward the same way. On an
AVX2-only EPYC MKL is the faster of the two (154 vs 124 GFLOP/s at 2048^2, 131 vs 103 for the attention's qkv
product), so there, as everywhere else (CUDA, bf16 under autocast, which already goes to oneDNN's matmul, and
inside ``torch.compile``), it is ``F.linear``.
Results agree with ``F.linear`` to float32 rounding (``tests/networks/test_linear.py``).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["linear", "onednn_is_faster"]


@functools.cache
def onednn_is_faster() -> bool:
    """Whether float32 CPU products go through oneDNN: where PyTorch's kernels run AVX-512 (see the module doc)."""
    return torch.backends.cpu.get_cpu_capability() == "AVX512"


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """(..., K) x (N, K) [+ (N,)] -> (..., N), as ``F.linear``."""
    fast = x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32 and x.dim() >= 2 and x.numel() > 0
    fast = fast and weight.dim() == 2 and weight.shape[1] == x.shape[-1]  # else F.linear, and its own error message
    if not fast or torch.is_autocast_enabled("cpu") or torch.compiler.is_compiling() or not onednn_is_faster():
        return F.linear(x, weight, bias)
    *lead, k = x.shape
    rows = x.reshape(-1, k).contiguous()  # (M, K); a view when x is contiguous
    m, n = rows.shape[0], weight.shape[0]
    pixels = rows.view(1, m, 1, k).permute(0, 3, 1, 2)  # (1, K, M, 1) with channels-last strides: the same memory
    out = F.conv2d(pixels, weight.reshape(n, k, 1, 1), bias)  # (1, N, M, 1), channels-last: (M, N) row-major
    return out.permute(0, 2, 3, 1).reshape(*lead, n)
