"""What a CPU run needs from the machine and the process: bf16 instructions, and an allocator that keeps memory.

**bf16.** :func:`usable_precision` runs a bf16-mixed config in fp32 on a CPU that would only emulate bf16.

**Freed memory.** glibc's malloc serves a block above ``M_MMAP_THRESHOLD`` (adaptive, at most 32 MiB by
default) with a fresh ``mmap`` and unmaps it on free, and trims the heap's free top back to the kernel. A training
step at batch 32 and 32 px allocates and frees activations of 4-25 MiB every step, so without help each of them is
faulted in again, page by page, every step: 10-30 thousand page faults per step on the 2-core test VM, where a
fault costs ~5 us. :func:`retain_freed_memory` raises the threshold and turns trimming off, so freed blocks are
reused from the heap, as CUDA's caching allocator does on a GPU. At the authors' configuration DDPM's training
step ran 1.16x faster and SSD's 1.02x (``benchmarks/speed/results/malloc_vs_default_authors.md``). The price is that the process keeps its peak heap
until it exits. ``ssd`` calls it at start; a Lightning project of your own can call it before training.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform

import torch

__all__ = ["native_cpu_bf16", "retain_freed_memory", "usable_precision"]

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc <malloc.h>
MMAP_THRESHOLDS = (1 << 30, 32 << 20)  # tried in turn: 1 GiB, then glibc's documented maximum (32 MiB on 64 bit)
INT_MAX = 2**31 - 1


@functools.cache
def retain_freed_memory() -> bool:
    """Have glibc's malloc keep freed blocks below 1 GiB for reuse instead of returning them to the kernel.

    Returns whether the settings were applied: False off Linux or on a C library without ``mallopt`` (musl).
    Idempotent, and safe to call at any time (it only changes how later allocations are served).
    """
    if platform.system() != "Linux":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    mmap_set = any(mallopt(M_MMAP_THRESHOLD, size) == 1 for size in MMAP_THRESHOLDS)
    return mmap_set and mallopt(M_TRIM_THRESHOLD, INT_MAX) == 1


def native_cpu_bf16() -> bool:
    """Whether this CPU has bf16 instructions (x86: AVX512-BF16 or AMX-BF16); True where torch cannot tell."""
    if platform.machine().lower() not in ("x86_64", "amd64") or not hasattr(torch.cpu, "get_capabilities"):
        return True
    caps = torch.cpu.get_capabilities()
    return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))


def runs_on_cpu(accelerator) -> bool:
    """Whether a Trainer given ``accelerator`` (a name or an Accelerator) trains on the CPU."""
    from lightning.pytorch.accelerators import CPUAccelerator, CUDAAccelerator, MPSAccelerator

    if not isinstance(accelerator, str):
        return isinstance(accelerator, CPUAccelerator)
    if accelerator == "auto":
        return not (CUDAAccelerator.is_available() or MPSAccelerator.is_available())
    return accelerator == "cpu"


def usable_precision(precision, accelerator):
    """``precision``, or ``"32-true"`` in place of ``"bf16-mixed"`` on a CPU without bf16 instructions, with a warning.

    The fmnist configs train in bf16-mixed, 1.5x faster than fp32 on an AVX512-BF16 CPU. Without those instructions
    oneDNN emulates bf16: on an AVX2-only AMD EPYC a matmul or 3x3 convolution ran at ~1.3 GFLOP/s in bf16 against
    40-80 in fp32, and the demo DDPM's training step took 9.5 s instead of 0.62 s. Lightning swaps precisions the
    same way where one cannot run on the device (16-mixed becomes bf16-mixed on CPU).
    """
    if str(precision) not in ("bf16-mixed", "bf16") or not runs_on_cpu(accelerator) or native_cpu_bf16():  # "bf16": its alias
        return precision
    from lightning.pytorch.utilities import rank_zero_warn

    rank_zero_warn("precision=bf16-mixed on a CPU without bf16 instructions (AVX512-BF16 or AMX), where oneDNN emulates "
                   "bf16 (some 15x slower than fp32): running in precision=32-true instead")  # fmt: skip
    return "32-true"
