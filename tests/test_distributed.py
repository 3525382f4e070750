"""Lightning's own DDP on CPU (gloo, 2 processes): every model trains with gradients and EMA in sync, the EMA is
saved once (raw and EMA side by side), and predict is bit-identical on 1 or 2 devices."""

import hashlib
import os
import subprocess
import sys

import lightning as L
import pytest
import torch

from conftest import ROOT

pytestmark = pytest.mark.slow
STEPS = 3


class RankDump(L.Callback):
    """Each rank saves its raw and EMA weights and the hashes of the batches it saw to ``<root>/rank<r>.pt``."""

    def __init__(self):
        self.batches = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batches.append(hashlib.sha256(batch[0].numpy().tobytes()).hexdigest())

    def on_train_end(self, trainer, pl_module):
        state = {"raw": pl_module.net.state_dict(), "ema": pl_module.net_ema.module.state_dict(), "batches": self.batches}
        torch.save(state, os.path.join(trainer.default_root_dir, f"rank{trainer.global_rank}.pt"))


def ssd_cli(*args, cwd):
    cmd = [sys.executable, "-m", "scale_space_diffusion", *args, "--trainer.accelerator=cpu"]
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.parametrize("name", ["ddpm", "ssd", "spectral"])
def test_ddp_keeps_ranks_in_sync_and_saves_ema_once(name, tmp_path, fmnist_idx, cache_dir, tiny_teacher):
    # Flexi-UNet leaves the blocks of other resolutions unused in a step, so DDP must look for them in SSD.
    strategy = "ddp_find_unused_parameters_true" if name == "ssd" else "ddp"
    args = [f"--config={ROOT / f'configs/smoke/{name}_tiny.yaml'}", f"--trainer.strategy={strategy}",
            "--trainer.devices=2", f"--trainer.max_steps={STEPS}", "--trainer.callbacks+=test_distributed.RankDump",
            f"--data.idx_dir={fmnist_idx}", f"--data.cache_dir={cache_dir}", f"--trainer.default_root_dir={tmp_path}"]  # fmt: skip
    if name == "spectral":
        args.append(f"--model.init_args.teacher={tiny_teacher}")
    ssd_cli("fit", *args, cwd=tmp_path)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2))
    assert len(r0["batches"]) == STEPS and set(r0["batches"]).isdisjoint(r1["batches"])  # ranks saw different data
    for part in ("raw", "ema"):
        assert r0[part].keys() == r1[part].keys()
        assert all(torch.equal(r0[part][k], r1[part][k]) for k in r0[part]), part  # gradients and EMA in sync
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [f"epoch=0-step={STEPS}.ckpt", "last.ckpt"]
    saved = torch.load(tmp_path / "checkpoints/last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(saved[f"net.{k}"], v) for k, v in r0["raw"].items())  # raw and EMA, side by side
    assert all(torch.equal(saved[f"net_ema.module.{k}"], v) for k, v in r0["ema"].items())
    assert any(not torch.equal(r0["raw"][k], r0["ema"][k]) for k in r0["raw"])


def test_ddp_fit_then_sharded_predict_is_bit_identical(tmp_path, fmnist_idx, cache_dir):
    data = [f"--config={ROOT / 'configs/smoke/ssd_tiny.yaml'}", f"--data.idx_dir={fmnist_idx}",
            f"--data.cache_dir={cache_dir}", f"--trainer.default_root_dir={tmp_path}"]  # fmt: skip
    ssd_cli("fit", "--trainer.strategy=ddp_find_unused_parameters_true", "--trainer.devices=2", "--trainer.max_steps=3",
            *data, cwd=tmp_path)  # fmt: skip
    ckpt = tmp_path / "checkpoints/last.ckpt"
    assert ckpt.exists()
    for devices in (1, 2):
        ssd_cli("predict", "--trainer.strategy=ddp", f"--trainer.devices={devices}", f"--ckpt_path={ckpt}",
                "--data.num_samples=7", "--data.batch_size=2", f"--sample_writer.run_name=dev{devices}", *data, cwd=tmp_path)  # fmt: skip
    one, two = (sorted((tmp_path / f"samples/dev{d}").glob("0*.png")) for d in (1, 2))
    assert [p.name for p in one] == [f"{i:06d}.png" for i in range(7)] == [p.name for p in two]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(one, two))
