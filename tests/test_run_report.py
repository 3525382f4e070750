"""What a run tells you: the fit summary, the TensorBoard metrics (no hp_metric), the model summary, and a default
run of the demo config that triggers no warning."""

import logging
import sys
import warnings

import pytest

from conftest import ROOT

from scale_space_diffusion.cli import run

TINY = ROOT / "configs/smoke/ssd_tiny.yaml"


@pytest.fixture(autouse=True)
def plain_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["ssd"])  # LightningCLI warns when args and argv both exist


@pytest.fixture(autouse=True)
def lightning_records_reach_caplog(monkeypatch):
    """Lightning stops its logger's propagation when it is first imported with no root handler (as in a test
    session's collection); caplog listens at the root, so this module's assertions need the records there."""
    monkeypatch.setattr(logging.getLogger("lightning.pytorch"), "propagate", True)


def _data(fmnist_idx, cache_dir):
    return [f"--data.idx_dir={fmnist_idx}", f"--data.cache_dir={cache_dir}"]


def test_fit_starts_with_one_summary_of_data_sizes_precision_steps_and_outputs(tmp_path, fmnist_idx, cache_dir,
                                                                              caplog):  # fmt: skip
    with caplog.at_level(logging.INFO):
        run(["fit", f"--config={TINY}", f"--trainer.default_root_dir={tmp_path}", "--trainer.max_steps=2",
             *_data(fmnist_idx, cache_dir)])  # fmt: skip
    summaries = [r.getMessage() for r in caplog.records if r.getMessage().startswith("fit summary:")]
    assert len(summaries) == 1
    text = summaries[0]
    assert f"data: fashion_mnist ({cache_dir}" in text and "32 train, " in text and " val images" in text
    assert "images: 16x16, 1 channel(s); stored at 28x28, resized and centre-cropped to 16x16" in text
    assert "ScaleSpaceDiffusion, 2 steps at batch 4, precision 32-true, on 1 CPU" in text
    assert f"checkpoints {tmp_path / 'checkpoints'}; logs none" in text
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "will override existing callbacks" not in messages and "already configured with model summary" not in messages


def test_tensorboard_gets_lr_step_time_images_per_s_and_grad_norm_and_no_hp_metric(tmp_path, fmnist_idx, cache_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cli = run(["fit", f"--config={TINY}", f"--trainer.default_root_dir={tmp_path}", "--trainer.max_steps=4",
               "--trainer.logger=true", "--trainer.log_every_n_steps=2", "--model.init_args.optim.lr=3e-4",
               *_data(fmnist_idx, cache_dir)])  # fmt: skip
    events = EventAccumulator(str(next((tmp_path / "lightning_logs").rglob("events.out.tfevents.*")).parent))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"train/lr", "train/step_time_s", "train/images_per_s", "train/grad_norm"} <= set(tags)
    assert "hp_metric" not in tags
    steps = lambda tag: [e.step for e in events.Scalars(tag)]  # noqa: E731
    assert steps("train/lr") == steps("train/loss") == [1, 3]  # every log_every_n_steps, beside Lightning's loss
    assert [e.value for e in events.Scalars("train/lr")] == pytest.approx([3e-4, 3e-4])
    for time, speed in zip(events.Scalars("train/step_time_s"), events.Scalars("train/images_per_s")):
        assert time.value > 0 and speed.value == pytest.approx(4 / time.value, rel=1e-4)  # batch 4
    assert all(0 < e.value < float("inf") for e in events.Scalars("train/grad_norm"))
    assert cli.trainer.global_step == 4


def test_the_demo_config_runs_without_a_warning(tmp_path, caplog):
    from scale_space_diffusion.cpu import native_cpu_bf16

    precision = [] if native_cpu_bf16() else ["--trainer.precision=32-true"]  # where bf16 is emulated, ssd warns
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        run(["fit", f"--config={ROOT / 'configs/ssd_fmnist32.yaml'}", f"--trainer.default_root_dir={tmp_path}",
             "--trainer.max_steps=2", "--trainer.val_check_interval=2", "--trainer.limit_val_batches=1",
             "--model.init_args.sampling.steps=2", "--model.init_args.sampling.grid_size=2",
             "--data.max_samples=1024", *precision])  # fmt: skip  (the real data `make data` installs: 32 batches)
    said = [f"{w.category.__name__}: {w.message}" for w in caught] + [r.getMessage() for r in caplog.records
                                                                      if r.levelno >= logging.WARNING]
    assert said == []
