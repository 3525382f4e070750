import platform
import subprocess
import sys

import pytest

from scale_space_diffusion import cpu

# A training step's allocation pattern in small: activations of 4-64 MiB allocated, then all freed, repeatedly.
PATTERN = """
import resource, sys, torch
if sys.argv[1] == "retain":
    from scale_space_diffusion.cpu import retain_freed_memory
    assert retain_freed_memory()
def step():
    kept = [torch.ones(mib << 18) for mib in (4, 8, 16, 24, 16, 8, 64)]
for _ in range(5):  # warm-up: the heap grows to the pattern's peak
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
"""


def _faults_per_step(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", PATTERN, mode], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_retain_freed_memory_stops_refaulting_freed_activations():
    pages = sum((4, 8, 16, 24, 16, 8, 64)) * 256  # 4 KiB pages a step writes
    default, retained = _faults_per_step("default"), _faults_per_step("retain")
    assert default > 64 * 256 / 2  # glibc maps at least the 64 MiB block afresh each step (above its 32 MiB cap)
    assert retained < pages / 30  # every block reused from the heap


def test_retain_freed_memory_says_whether_it_applied():
    glibc_linux = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert cpu.retain_freed_memory() is glibc_linux and cpu.retain_freed_memory() is glibc_linux  # idempotent


def test_the_ssd_command_retains_freed_memory_before_it_runs(monkeypatch):
    from scale_space_diffusion import cli

    calls = []
    monkeypatch.setattr(cpu, "retain_freed_memory", lambda: calls.append("malloc"))
    monkeypatch.setattr(cli, "run", lambda: calls.append("run"))
    monkeypatch.setattr(sys, "argv", ["ssd", "fit"])
    cli.main()
    assert calls == ["malloc", "run"]


@pytest.mark.parametrize("native", [True, False])
def test_usable_precision_swaps_only_emulated_cpu_bf16(native, monkeypatch):
    import warnings

    monkeypatch.setattr(cpu, "native_cpu_bf16", lambda: native)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for bf16 in ("bf16-mixed", "bf16"):  # and Lightning's alias
            assert cpu.usable_precision(bf16, "cpu") == (bf16 if native else "32-true")
        for precision, accelerator in (("32-true", "cpu"), ("16-mixed", "cpu"), ("bf16-mixed", "cuda"), ("bf16-mixed", "gpu")):
            assert cpu.usable_precision(precision, accelerator) == precision  # not ours to change
    assert len([w for w in seen if "32-true instead" in str(w.message)]) == (0 if native else 2)


def test_runs_on_cpu_reads_names_and_accelerators(monkeypatch):
    from lightning.pytorch.accelerators import CPUAccelerator, CUDAAccelerator, MPSAccelerator

    assert cpu.runs_on_cpu("cpu") and cpu.runs_on_cpu(CPUAccelerator()) and not cpu.runs_on_cpu("cuda")
    assert not cpu.runs_on_cpu(CUDAAccelerator())
    monkeypatch.setattr(MPSAccelerator, "is_available", staticmethod(lambda: False))
    for cuda in (True, False):  # "auto" is the CPU exactly when no accelerator is there
        monkeypatch.setattr(CUDAAccelerator, "is_available", staticmethod(lambda: cuda))
        assert cpu.runs_on_cpu("auto") != cuda
