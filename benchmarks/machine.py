"""What every result records about the machine it ran on: processor, ISA, GPU, versions, load average."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def load() -> float:
    """The 1-minute load average (a busy machine makes timings upper bounds)."""
    return round(os.getloadavg()[0], 2)


def cpu_model() -> tuple[str, list[str]]:
    """(model name, the vector ISA flags that decide CPU speed: avx2, avx512f, avx512_bf16, amx_bf16)."""
    try:
        info = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine(), []
    name = next((ln.split(":", 1)[1].strip() for ln in info if ln.startswith("model name")), platform.machine())
    flags = next((ln for ln in info if ln.startswith("flags")), "")
    return name, [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in flags]


def hardware() -> dict:
    import torch

    name, isa = cpu_model()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu_model": name, "isa": isa, "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "gpu": gpu, "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform()}
