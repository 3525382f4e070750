"""The run lifecycle as a matrix: every way a `fit` can stop, then `fit --ckpt_path last` to the same total step count,
equals one uninterrupted run bit for bit (raw weights, EMA, AdamW state, the order of the training batches).

Runs go through the CLI with the smoke configs: 8 batches per epoch, a checkpoint every 3 steps, 10 steps in all, so
resumed runs cross an epoch end and its validation. The signals sent from another process are in the `slow` cases.
"""

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time

import lightning as L
import pytest
import torch
import yaml
from torch.utils.data import DataLoader, TensorDataset

from conftest import ROOT

from scale_space_diffusion import run_lock
from scale_space_diffusion.cli import run
from scale_space_diffusion.diffusion.schedule import NoiseSchedule
from scale_space_diffusion.io import checkpoint_io
from scale_space_diffusion.models.ddpm import DDPM
from scale_space_diffusion.models.settings import Optimization, Sampling
from scale_space_diffusion.networks.unet import UNet

TOTAL, EVERY = 10, 3  # steps in all; the periodic checkpoint schedule (the end, step 10, is off it)


class Probe(L.Callback):
    """Records a hash of every training batch; makes one kind of stop happen at step ``at``."""

    def __init__(self, how: str | None = None, at: int = 0):
        self.how, self.at, self.hashes = how, at, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.how == "crash" and trainer.global_step == self.at:
            raise RuntimeError("simulated crash")
        self.hashes.append(hashlib.sha256(batch[0].numpy().tobytes()).hexdigest())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.at and self.how in ("sigint", "sigterm"):
            signal.raise_signal(signal.SIGINT if self.how == "sigint" else signal.SIGTERM)

    def on_train_epoch_end(self, trainer, pl_module):
        if self.how == "sigterm_at_epoch_end" and trainer.global_step == self.at:
            signal.raise_signal(signal.SIGTERM)  # handled between epochs: the epoch done, its batch count not reset

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if self.how == "sigint_in_validation" and not trainer.sanity_checking and trainer.global_step == self.at:
            signal.raise_signal(signal.SIGINT)


@pytest.fixture(autouse=True)
def plain_argv_and_signals(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["ssd"])  # LightningCLI warns when args and argv both exist
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, h in handlers.items():
        signal.signal(s, h)  # Lightning ignores SIGINT after a KeyboardInterrupt


def args(name, root, fmnist_idx, cache_dir, teacher, max_steps=TOTAL, ckpt_path=None, probe=(None, 0), extra=()):
    callbacks = [
        {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
         "init_args": {"dirpath": str(root / "ckpt"), "filename": "{step}", "every_n_train_steps": EVERY,
                       "save_top_k": -1, "save_last": True}},
        {"class_path": "test_lifecycle.Probe", "init_args": {"how": probe[0], "at": probe[1]}}, *extra,
    ]  # fmt: skip
    root.mkdir(parents=True, exist_ok=True)
    (root / "override.yaml").write_text(yaml.safe_dump({"trainer": {"callbacks": callbacks}}))
    out = [
        "fit", f"--config={ROOT / f'configs/smoke/{name}_tiny.yaml'}", f"--config={root / 'override.yaml'}",
        f"--data.idx_dir={fmnist_idx}", f"--data.cache_dir={cache_dir}", f"--trainer.default_root_dir={root}",
        f"--trainer.max_steps={max_steps}", "--trainer.limit_val_batches=2", "--model.init_args.sampling.grid_size=0",
    ]  # fmt: skip
    out += [f"--model.init_args.teacher={teacher}"] if name == "spectral" else []
    return out + ([f"--ckpt_path={ckpt_path}"] if ckpt_path else [])


def fit(*a, **kw) -> list[str]:
    cli = run(args(*a, **kw))
    return next(cb for cb in cli.trainer.callbacks if isinstance(cb, Probe)).hashes


def states(path):
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    state = ckpt["state_dict"]
    return {
        "raw": {k: v for k, v in state.items() if k.startswith(("net.", "align."))},
        "ema": {k: v for k, v in state.items() if k.startswith("net_ema.")},
        "optimizer": {f"{i}.{k}": v for i, s in ckpt["optimizer_states"][0]["state"].items() for k, v in s.items()},
        "step": ckpt["global_step"],
    }


def assert_identical(a, b, ema: bool = True):
    assert a["step"] == b["step"] == TOTAL
    for part in ("raw", "ema", "optimizer") if ema else ("raw", "optimizer"):
        assert a[part].keys() == b[part].keys() and a[part], part
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part} {key}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory, fmnist_idx, cache_dir, tiny_teacher):
    """name -> (batch hashes, final states) of one uninterrupted 10-step run."""
    made = {}

    def get(name):
        if name not in made:
            root = tmp_path_factory.mktemp(f"whole-{name}")
            hashes = fit(name, root, fmnist_idx, cache_dir, tiny_teacher)
            assert len(hashes) == TOTAL and len(set(hashes)) == TOTAL
            made[name] = hashes, states(root / "ckpt/last.ckpt")
        return made[name]

    return get


def full_disk_at(step: int, monkeypatch):
    """The disk fills up half-way through the checkpoint of ``step``."""
    real_save = torch.save

    def save(obj, f, *a, **kw):
        if isinstance(obj, dict) and obj.get("global_step") == step:
            f.write(b"\0" * 1000)
            raise OSError(28, "No space left on device")
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(checkpoint_io.torch, "save", save)


# way to stop -> (what the stopped run raises, step it saved, file the resume starts from)
STOPS = {
    "max_steps": (None, 5, "last.ckpt"),
    "max_steps_at_epoch_end": (None, 8, "last.ckpt"),  # the epoch counted done with all its batches
    "crash_after_periodic_checkpoint": (RuntimeError, 6, "last.ckpt"),  # like kill -9: nothing saved at step 7
    "ctrl_c_in_training": (SystemExit, 5, "interrupted.ckpt"),
    "ctrl_c_in_validation": (SystemExit, 8, "interrupted.ckpt"),
    "sigterm": (SystemExit, 5, "interrupted.ckpt"),
    "sigterm_between_epochs": (SystemExit, 8, "interrupted.ckpt"),
    "full_disk": (OSError, 3, "last.ckpt"),
}
PROBES = {"crash_after_periodic_checkpoint": ("crash", 7), "ctrl_c_in_training": ("sigint", 5),
          "ctrl_c_in_validation": ("sigint_in_validation", 8), "sigterm": ("sigterm", 5),
          "sigterm_between_epochs": ("sigterm_at_epoch_end", 8)}  # fmt: skip
MATRIX = [("ssd", stop) for stop in STOPS] + [("ddpm", "max_steps"), ("ddpm", "ctrl_c_in_training"),
                                              ("spectral", "max_steps"), ("spectral", "sigterm")]  # fmt: skip


@pytest.mark.parametrize("name, stop", MATRIX, ids=[f"{n}-{s}" for n, s in MATRIX])
def test_every_stop_resumes_exactly(name, stop, tmp_path, fmnist_idx, cache_dir, tiny_teacher, reference, monkeypatch):
    whole, final = reference(name)
    raises, saved_step, resume_file = STOPS[stop]
    stopped = tmp_path / "stopped"
    max_steps = saved_step if stop.startswith("max_steps") else TOTAL
    if stop == "full_disk":
        full_disk_at(2 * EVERY, monkeypatch)
    common = (name, stopped, fmnist_idx, cache_dir, tiny_teacher)
    if raises is None:
        fit(*common, max_steps=max_steps)
    else:
        with pytest.raises(raises) as err:
            fit(*common, probe=PROBES.get(stop, (None, 0)))
        if stop.startswith("sigterm"):
            assert type(err.value).__name__ == "SIGTERMException"  # `ssd` turns it into status 143 (slow test)
        if stop.startswith("ctrl_c"):
            assert err.value.code == 1
    monkeypatch.undo()
    monkeypatch.setattr(sys, "argv", ["ssd"])
    assert not list(stopped.rglob(".*.tmp-*"))  # no stray temporary file, even after the failed save
    saved = torch.load(stopped / "ckpt" / resume_file, weights_only=True)
    assert saved["global_step"] == saved_step
    resumed = fit(name, tmp_path / "resumed", fmnist_idx, cache_dir, tiny_teacher, ckpt_path=stopped / "ckpt" / resume_file)
    assert resumed == whole[saved_step:]  # the same batches, in the same order, from where it stopped
    assert_identical(states(tmp_path / "resumed/ckpt/last.ckpt"), final)


def test_the_end_of_fit_is_saved_off_the_periodic_schedule_with_raw_and_ema_apart(tmp_path, fmnist_idx, cache_dir):
    fit("ssd", tmp_path, fmnist_idx, cache_dir, None, max_steps=5)
    last = torch.load(tmp_path / "ckpt/last.ckpt", weights_only=True)
    assert last["global_step"] == 5 and sorted(p.name for p in (tmp_path / "ckpt").glob("step=*")) == ["step=3.ckpt"]
    raw = {k[len("net."):]: v for k, v in last["state_dict"].items() if k.startswith("net.")}
    ema = {k[len("net_ema.module."):]: v for k, v in last["state_dict"].items() if k.startswith("net_ema.module.")}
    assert raw.keys() == ema.keys() and any(not torch.equal(raw[k], ema[k]) for k in raw)  # never swapped


def test_nan_loss_stops_with_step_and_t_and_keeps_the_last_good_checkpoint(tmp_path, fmnist_idx, cache_dir):
    class Poison(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == EVERY + 1:
                batch[0][0, 0, 0, 0] = float("nan")

    run_args = args("ssd", tmp_path, fmnist_idx, cache_dir, None)
    cfg = yaml.safe_load((tmp_path / "override.yaml").read_text())
    cfg["trainer"]["callbacks"].append({"class_path": "test_lifecycle.Poison"})
    (tmp_path / "override.yaml").write_text(yaml.safe_dump(cfg))
    globals()["Poison"] = Poison
    with pytest.raises(FloatingPointError, match=rf"non-finite train loss nan at global step {EVERY + 1} with t in"):
        run(run_args)
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("*.ckpt")) == ["last.ckpt", f"step={EVERY}.ckpt"]
    ckpt = torch.load(tmp_path / "ckpt/last.ckpt", weights_only=True)
    assert ckpt["global_step"] == EVERY and all(v.isfinite().all() for v in ckpt["state_dict"].values())


def test_a_failed_save_keeps_the_previous_file_and_leaves_no_stray_file(tmp_path, monkeypatch):
    """Half-way through writing, the disk fills up: in a folder that is not $TMPDIR, with the real Trainer save."""
    folder = tmp_path / "elsewhere"
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    model = DDPM(UNet(16, 1, None, 8, (1, 2), 1, (), 4), NoiseSchedule(timesteps=100), optim=Optimization(ema_decay=None),
                 sampling=Sampling(grid_size=0))  # fmt: skip
    path = folder / "last.ckpt"
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", plugins=[checkpoint_io.AtomicCheckpointIO()])
    trainer.fit(model, DataLoader(TensorDataset(torch.rand(8, 1, 16, 16) * 2 - 1, torch.zeros(8, dtype=torch.long)),
                                  batch_size=4))  # fmt: skip
    trainer.save_checkpoint(path)  # through the plugin the configs and `ssd` give the Trainer
    good = path.read_bytes()
    full_disk_at(model.trainer.global_step, monkeypatch)
    with pytest.raises(OSError, match=r"could not save checkpoint .*last\.ckpt .*the previous file there.* is intact"):
        model.trainer.save_checkpoint(path)
    assert path.read_bytes() == good and sorted(p.name for p in folder.iterdir()) == ["last.ckpt"]


# --- signals from another process ------------------------------------------------------------------------------------

def start(name, root, fmnist_idx, cache_dir, max_steps, ckpt_path=None, extra=()) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "scale_space_diffusion",
           *args(name, root, fmnist_idx, cache_dir, None, max_steps, ckpt_path, extra=extra)]
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM", "SIGKILL"])
def test_a_signal_from_another_process_stops_a_run_that_resumes_exactly(sig, tmp_path, fmnist_idx, cache_dir):
    total = 60
    whole = start("ssd", tmp_path / "whole", fmnist_idx, cache_dir, total)
    assert whole.wait(900) == 0, whole.stdout.read()
    proc = start("ssd", tmp_path / "stopped", fmnist_idx, cache_dir, total)
    first = tmp_path / f"stopped/ckpt/step={2 * EVERY}.ckpt"
    while not first.exists() and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(getattr(signal, sig))
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == {"SIGINT": 1, "SIGTERM": 143, "SIGKILL": -9}[sig], out
    if sig != "SIGKILL":
        assert "resume with `ssd fit ... --ckpt_path=" in out
    resumed = start("ssd", tmp_path / "stopped", fmnist_idx, cache_dir, total, ckpt_path="last")
    assert resumed.wait(900) == 0, resumed.stdout.read()
    a, b = states(tmp_path / "stopped/ckpt/last.ckpt"), states(tmp_path / "whole/ckpt/last.ckpt")
    assert a["step"] == b["step"] == total
    for part in ("raw", "ema", "optimizer"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in b[part]), part


# --- the lock: one run per checkpoint folder, removed only by its owner ----------------------------------------------

class Hold(L.Callback):
    """Keeps training paused at step ``at`` until the file ``release`` exists: a run that is still going."""

    def __init__(self, release: str, at: int = EVERY + 1):
        self.release, self.at = release, at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        while trainer.global_step == self.at and not os.path.exists(self.release):
            time.sleep(0.05)


@pytest.mark.slow  # a training process beside the test's own runs: about 20 s on a quiet 2-core machine, 65 s busy
def test_a_refused_run_leaves_the_running_owners_lock(tmp_path, fmnist_idx, cache_dir):
    """Issue #25: a second `fit --ckpt_path last` into a training run's folder is refused and keeps its lock, so a
    third one is refused too; the owner removes its own lock when it ends."""
    release, lock = tmp_path / "release", tmp_path / "ckpt" / run_lock.LOCK
    hold = {"class_path": "test_lifecycle.Hold", "init_args": {"release": str(release)}}
    first = start("ddpm", tmp_path, fmnist_idx, cache_dir, TOTAL, extra=[hold])
    try:
        while not (tmp_path / "ckpt" / "last.ckpt").exists() and first.poll() is None:
            time.sleep(0.1)
        assert first.poll() is None, first.stdout.read()
        assert run_lock.owner(tmp_path / "ckpt").pid == first.pid
        for _ in range(2):  # the second and the third run
            with pytest.raises(FileExistsError, match=rf"belongs to a running fit \(pid {first.pid}\b"):
                fit("ddpm", tmp_path, fmnist_idx, cache_dir, None, ckpt_path="last")
            held = run_lock.owner(tmp_path / "ckpt")
            assert held is not None and held.pid == first.pid, "the refused run removed the running owner's lock"
    finally:
        release.touch()
        out, _ = first.communicate(timeout=300)
    assert first.returncode == 0, out
    assert not lock.exists()  # removed by its owner at the end of fit
    assert torch.load(tmp_path / "ckpt/last.ckpt", weights_only=True)["global_step"] == TOTAL


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_stale_lock_is_taken_over_with_one_warning(tmp_path, fmnist_idx, cache_dir):
    gone = run_lock.Owner(dead_pid(), socket.gethostname(), "2026-01-01T00:00:00+00:00", None)
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / run_lock.LOCK).write_text(gone.line())
    with pytest.warns(UserWarning, match=rf"named a fit that is gone \(pid {gone.pid} on ") as seen:
        fit("ddpm", tmp_path, fmnist_idx, cache_dir, None, max_steps=1)
    assert sum("is gone" in str(w.message) for w in seen) == 1
    assert not (tmp_path / "ckpt" / run_lock.LOCK).exists()  # this run's own lock, removed at its end


def test_who_holds_a_lock(tmp_path):
    """Alive: a live pid that started when the lock says, or any pid on another host. Stale: a dead pid, or a live
    pid whose process started at another time (the pid was reused). Only the owner's release removes it."""
    me = run_lock.acquire(tmp_path)
    assert run_lock.owner(tmp_path) == me and me.is_me() and run_lock.live_owner(tmp_path) is None
    parent = os.getppid()
    ticks = run_lock._start_ticks(parent)
    live = run_lock.Owner(parent, socket.gethostname(), "2026-01-01T00:00:00+00:00", ticks)
    reused = run_lock.Owner(parent, socket.gethostname(), "2026-01-01T00:00:00+00:00", (ticks or 0) + 1)
    elsewhere = run_lock.Owner(dead_pid(), "another-host", "2026-01-01T00:00:00+00:00", None)
    assert live.alive() and elsewhere.alive() and not reused.alive()
    assert not run_lock.Owner(dead_pid(), socket.gethostname(), "?", None).alive()
    assert run_lock.release(tmp_path, reused) is False and run_lock.owner(tmp_path) == me  # not the owner: kept
    for holder in (live, elsewhere):
        (tmp_path / run_lock.LOCK).write_text(holder.line())
        with pytest.raises(FileExistsError, match=rf"pid {holder.pid} on {holder.host}, since 2026-01-01.*remove "):
            run_lock.acquire(tmp_path)
        assert run_lock.owner(tmp_path) == holder
    assert run_lock.Owner.parse("12345\n") == run_lock.Owner(12345, None, "?", None)  # the format before #25
    assert run_lock.release(tmp_path, me) is False and run_lock.owner(tmp_path) == elsewhere


def test_a_dry_run_leaves_no_checkpoint_and_the_next_fit_starts(tmp_path, fmnist_idx, cache_dir):
    """Issue #25: `fit --trainer.fast_dev_run=1` (Lightning turns checkpointing off for it) wrote last.ckpt into
    the config's folder, and the next real `fit` was refused as a second run into a finished one."""
    base = ["fit", f"--config={ROOT / 'configs/smoke/ddpm_tiny.yaml'}", f"--data.idx_dir={fmnist_idx}",
            f"--data.cache_dir={cache_dir}", f"--trainer.default_root_dir={tmp_path}"]  # fmt: skip
    run([*base, "--trainer.fast_dev_run=1"])
    assert not list(tmp_path.rglob("*.ckpt")) and not list(tmp_path.rglob(run_lock.LOCK))
    run([*base, "--trainer.max_steps=1"])
    assert torch.load(tmp_path / "checkpoints/last.ckpt", weights_only=True)["global_step"] == 1
