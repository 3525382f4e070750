"""The GPU benchmark's CPU dry run: the same code path as on a GPU (configs' networks shrunk, one step of each kind),
in a process where the packages the GPU image lacks cannot be imported."""

import json
import subprocess
import sys
from pathlib import Path

from test_light_import import SCRIPT

ROOT = Path(__file__).resolve().parents[1]
HIDE = SCRIPT[: SCRIPT.index("import torch\n")]  # torch-fidelity & co. hidden from import and package metadata
RUN = HIDE + "from benchmarks.__main__ import main\nmain(sys.argv[1:])\nprint('loaded:', sorted(m for m in ABSENT if m in sys.modules))\n"


def test_dry_run_measures_every_row_without_the_packages_the_gpu_image_lacks(tmp_path):
    cmd = [sys.executable, "-c", RUN, "gpu", "--dry-run", "--out", str(tmp_path)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "loaded: []" in done.stdout, done.stderr[-3000:]
    res = json.loads((tmp_path / "gpu.json").read_text())
    rows = {(r["model"], r["precision"], r["batch"]) for r in res["train"] if not r["torch_compile"]}
    models = ("DDPM", "SSD-4L", "SSD-2L")
    assert rows == {(m, p, b) for m in models for p in ("bf16-mixed", "32-true") for b in (2, 4)}
    assert all(r["img_per_s"] > 0 and r["train_gflops_per_image"] > 0 for r in res["train"])
    ssd4, ddpm = (next(r["train_gflops_per_image"] for r in res["train"] if r["model"] == m) for m in ("SSD-4L", "DDPM"))
    assert ssd4 < ddpm  # the ladder's saving, by our FLOPs count
    assert {(r["model"], r["bf16_autocast"]) for r in res["sample"]} == {(m, a) for m in models for a in (False, True)}
    assert all(r["steps"] >= 2 and r["ms_per_step"] > 0 for r in res["sample"])
    assert res["bf16_peak_tflops"] > 0 and not res["skipped"]
    md = (tmp_path / "gpu.md").read_text()
    assert "share of bf16 peak" in md and "| SSD-2L | 32-true | 4 |" in md and "(dry run)" in md


def test_without_a_gpu_the_full_run_is_refused_with_the_fix(tmp_path):
    import pytest
    import torch

    from benchmarks.__main__ import main

    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    with pytest.raises(SystemExit, match="no CUDA device.*--dry-run"):
        main(["gpu", "--out", str(tmp_path)])
