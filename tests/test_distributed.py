"""Lightning's own DDP on CPU (gloo, 2 processes): SSD trains, and predict is identical on 1 or 2 devices."""

import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow
CONFIG = ROOT / "configs/smoke/ssd_tiny.yaml"


def ssd(*args, cwd):
    cmd = [sys.executable, "-m", "scale_space_diffusion", *args, f"--config={CONFIG}", "--trainer.accelerator=cpu"]
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_ddp_fit_then_sharded_predict_is_bit_identical(tmp_path, fmnist_idx, cache_dir):
    data = [f"--data.idx_dir={fmnist_idx}", f"--data.cache_dir={cache_dir}", f"--trainer.default_root_dir={tmp_path}"]
    # Flexi-UNet leaves the blocks of other resolutions unused in a step, so DDP must look for them.
    ssd("fit", "--trainer.strategy=ddp_find_unused_parameters_true", "--trainer.devices=2", "--trainer.max_steps=3",
        *data, cwd=tmp_path)  # fmt: skip
    ckpt = tmp_path / "checkpoints/last.ckpt"
    assert ckpt.exists()
    for devices in (1, 2):
        ssd("predict", "--trainer.strategy=ddp", f"--trainer.devices={devices}", f"--ckpt_path={ckpt}",
            "--data.num_samples=7", "--data.batch_size=2", f"--sample_writer.run_name=dev{devices}", *data, cwd=tmp_path)  # fmt: skip
    one, two = (sorted((tmp_path / f"samples/dev{d}").glob("0*.png")) for d in (1, 2))
    assert [p.name for p in one] == [f"{i:06d}.png" for i in range(7)] == [p.name for p in two]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(one, two))
