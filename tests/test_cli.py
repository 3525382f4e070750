"""The command line: every config runs `fit --trainer.fast_dev_run=1` on CPU (bad runs: tests/test_bad_input.py)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import ROOT, train_and_save

from scale_space_diffusion.models.settings import Optimization
from scale_space_diffusion.models.settings import Sampling
from scale_space_diffusion.networks import official
from scale_space_diffusion.cli import run
from scale_space_diffusion.models.ddpm import DDPM
from scale_space_diffusion.networks.flexi_unet import FlexiUNet
from scale_space_diffusion.networks.unet import UNet

CONFIGS = sorted(p.relative_to(ROOT) for p in (ROOT / "configs").rglob("*.yaml"))
TINY = 8  # paper-sized configs run at this width


@pytest.fixture(autouse=True)
def plain_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["ssd"])  # LightningCLI warns when args and argv both exist


def fit_args(config: Path, tmp_path, fmnist_idx, cache_dir) -> list[str]:
    return [
        "fit", f"--config={ROOT / config}", "--trainer.fast_dev_run=1", f"--trainer.default_root_dir={tmp_path}",
        "--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.precision=32-true",
        "--model.init_args.sampling.steps=2", "--model.init_args.sampling.grid_size=2",
        "--model.init_args.sampling.grid_every_n_epochs=0",
        "--data.batch_size=2",
        "--data.num_workers=0", f"--data.idx_dir={fmnist_idx}", f"--data.cache_dir={cache_dir}",
    ]  # fmt: skip


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_every_config_fast_dev_run(config, tmp_path, fmnist_idx, cache_dir, rgb_folder, monkeypatch):
    monkeypatch.chdir(tmp_path)  # ModelCheckpoint saves last.ckpt on train end even under fast_dev_run, to outputs/
    cfg = yaml.safe_load((ROOT / config).read_text())
    net = cfg["model"]["init_args"]["net"]["init_args"]
    size, channels = net["image_size"], net["in_channels"]
    args = fit_args(config, tmp_path, fmnist_idx, cache_dir)
    if cfg["data"]["dataset"] != "fashion_mnist":  # hub datasets: a generated folder of the same shape instead
        args += [f"--data.dataset={rgb_folder(size)}", f"--model.init_args.net.init_args.model_channels={TINY}"]
        net = {**net, "model_channels": TINY}
    init = cfg["model"]["init_args"]
    if init.get("official_checkpoint"):  # a random-weight file in the authors' format, at the tiny width
        flexi = FlexiUNet(**{**net, "channel_mult": tuple(net["channel_mult"])})
        path = tmp_path / Path(init["official_checkpoint"]).name
        torch.save(official.to_official(flexi.state_dict(), flexi), path)
        args.append(f"--model.init_args.official_checkpoint={path}")
    if init.get("teacher"):  # a one-step DDPM teacher of the matching size
        teacher = DDPM(UNet(size, channels, None, 16, (1, 2), 1, (), 4), optim=Optimization(ema_decay=None), sampling=Sampling(grid_size=0))
        args.append(f"--model.init_args.teacher={train_and_save(teacher, tmp_path / 'teacher.ckpt', size, channels)}")
    cli = run(args)
    assert cli.trainer.global_step == 1
    assert (tmp_path / "samples").exists()  # the end-of-fit grid


TINY_SSD = ROOT / "configs/smoke/ssd_tiny.yaml"


def test_fit_then_predict_writes_indexed_pngs(tmp_path, fmnist_idx, cache_dir):
    common = [f"--config={TINY_SSD}", f"--trainer.default_root_dir={tmp_path}", f"--data.idx_dir={fmnist_idx}",
              f"--data.cache_dir={cache_dir}"]  # fmt: skip
    run(["fit", *common, "--trainer.max_steps=2"])
    ckpt = next((tmp_path / "checkpoints").glob("last*.ckpt"))
    predict = ["predict", *common, f"--ckpt_path={ckpt}", "--data.num_samples=5", "--sample_writer.run_name=a"]
    run(predict)
    out = tmp_path / "samples/a"
    assert sorted(p.name for p in out.glob("0*.png")) == [f"{i:06d}.png" for i in range(5)]
    assert (out / "grid.png").exists() and list(out.glob("ladder_strip_*.png"))


def test_train_a_teacher_then_distil_a_student_through_the_cli(tmp_path, fmnist_idx, cache_dir):
    data = [f"--data.idx_dir={fmnist_idx}", f"--data.cache_dir={cache_dir}"]
    run(["fit", f"--config={ROOT / 'configs/smoke/ddpm_tiny.yaml'}", f"--trainer.default_root_dir={tmp_path / 't'}",
         "--trainer.max_steps=2", *data])  # fmt: skip
    teacher = next((tmp_path / "t").rglob("*.ckpt"))
    cli = run(["fit", f"--config={ROOT / 'configs/smoke/spectral_tiny.yaml'}", f"--trainer.default_root_dir={tmp_path / 's'}",
               "--trainer.max_steps=2", f"--model.init_args.teacher={teacher}", *data])  # fmt: skip
    model = cli.model
    assert model.teacher is not None and model.matched == [8, 16]
    metrics = cli.trainer.callback_metrics
    assert all(torch.isfinite(metrics[k]) and metrics[k] > 0 for k in ("train/spatial", "train/freq"))
    shutil.rmtree(tmp_path / "t")  # the teacher is gone; its path is still in the student's checkpoint and flags
    student = next((tmp_path / "s").rglob("last*.ckpt"))
    run(["predict", f"--config={ROOT / 'configs/smoke/spectral_tiny.yaml'}", f"--trainer.default_root_dir={tmp_path / 's'}",
         f"--ckpt_path={student}", f"--model.init_args.teacher={teacher}", "--data.num_samples=3",
         "--sample_writer.run_name=no_teacher", *data])  # fmt: skip
    assert len(list((tmp_path / "s/samples/no_teacher").glob("0*.png"))) == 3


def test_predict_from_a_checkpoint_saved_in_python(tmp_path, fmnist_idx, cache_dir, tiny_teacher):
    """A checkpoint from ``Trainer.fit`` in a user's script has no ``_class_path``; the CLI still reads it."""
    run(["predict", f"--config={ROOT / 'configs/smoke/ddpm_tiny.yaml'}", f"--ckpt_path={tiny_teacher}",
         f"--trainer.default_root_dir={tmp_path}", f"--data.idx_dir={fmnist_idx}", f"--data.cache_dir={cache_dir}",
         "--data.num_samples=2", "--sample_writer.run_name=py",
         "--model.init_args.net.init_args.attention_resolutions=[]"])  # fmt: skip  (the teacher's net has none)
    assert sorted(p.name for p in (tmp_path / "samples/py").glob("0*.png")) == ["000000.png", "000001.png"]


def test_checkpointing_can_be_switched_off(tmp_path, fmnist_idx, cache_dir):
    cli = run(["fit", f"--config={ROOT / 'configs/smoke/ddpm_tiny.yaml'}", "--trainer.callbacks=[]",
               "--trainer.enable_checkpointing=false", "--trainer.max_steps=1", f"--trainer.default_root_dir={tmp_path}",
               f"--data.idx_dir={fmnist_idx}", f"--data.cache_dir={cache_dir}"])  # fmt: skip
    assert cli.trainer.global_step == 1 and not list(tmp_path.rglob("*.ckpt"))


@pytest.mark.parametrize("subcommand, extra, says", [
    ("fit", ["--model.init_args.optim.lr=-1"], "error: lr=-1.0 must be > 0; set --model.init_args.optim.lr"),
    ("fit", ["--model.init_args.schedule.kind=quad"], "error: --model.init_args.schedule.kind: Expected a"),
    ("validate", ["--ckpt_path={tmp}"], "error: --ckpt_path={tmp} is a folder; pass a .ckpt file in it"),
    ("test", ["--ckpt_path={tmp}/none.ckpt"], "error: --ckpt_path={tmp}/none.ckpt does not exist"),
    ("predict", ["--model.init_args.net.init_args.model_channels=7"], "error: model_channels=7 must be even"),
])  # fmt: skip
def test_every_subcommand_prints_a_refusal_as_one_line_without_traceback(subcommand, extra, says, tmp_path,
                                                                         fmnist_idx, cache_dir, monkeypatch, capsys):
    from scale_space_diffusion.cli import main

    argv = [subcommand, f"--config={ROOT / 'configs/smoke/ddpm_tiny.yaml'}", f"--trainer.default_root_dir={tmp_path}",
            f"--data.idx_dir={fmnist_idx}", f"--data.cache_dir={cache_dir}", *[a.format(tmp=tmp_path) for a in extra]]
    monkeypatch.setattr(sys, "argv", ["ssd", *argv])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err and "usage:" not in err
    assert [ln for ln in err.splitlines() if ln.startswith("error:")] == [ln for ln in err.splitlines()
                                                                           if says.format(tmp=tmp_path) in ln]


def test_predict_takes_sampling_overrides_over_the_checkpoint_and_writes_nothing_over_the_run(tmp_path, fmnist_idx,
                                                                                              cache_dir):
    common = [f"--config={TINY_SSD}", f"--trainer.default_root_dir={tmp_path}", f"--data.idx_dir={fmnist_idx}",
              f"--data.cache_dir={cache_dir}"]  # fmt: skip
    run(["fit", *common, "--trainer.max_steps=2"])
    config = (tmp_path / "config.yaml").read_text()
    for steps in (4, 8):
        run(["predict", *common, "--ckpt_path=last", f"--model.init_args.sampling.steps={steps}", "--data.num_samples=2",
             f"--sample_writer.run_name=s{steps}"])  # fmt: skip
    assert (tmp_path / "samples/s4/000000.png").read_bytes() != (tmp_path / "samples/s8/000000.png").read_bytes()
    assert (tmp_path / "config.yaml").read_text() == config  # predict wrote no config over the training run's
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints", "config.yaml", "samples"]


@pytest.mark.parametrize("args, says", [
    (["fit", "--help"], ["Models (--model=NAME", "ScaleSpaceDiffusion:", "num_levels:", "SpectralDiffusion:", "teacher:"]),
    (["fit", "--model.help", "ScaleSpaceDiffusion"], ["--model.num_levels", "ladder"]),
    (["fit", "--model.init_args.net.help", "FlexiUNet"],
     ["pixel resolutions with self-attention", "the authors' decoder", "classifier-free guidance"]),
    (["fit", "--model.init_args.net.help", "SpectralUNet"], ["wavelet-gated resampling", "gate MLP"]),
], ids=["fit", "model", "flexi_unet", "spectral_unet"])  # fmt: skip
def test_help_explains_every_model_and_network_option(args, says):
    """In a fresh process, as typed in a shell: short class names resolve without the test suite's imports."""
    done = subprocess.run([sys.executable, "-c", "from scale_space_diffusion.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    out = " ".join(done.stdout.split())  # argparse wraps lines
    for text in says:
        assert text in out, f"`ssd {' '.join(args)}` does not say {text!r}"


def test_ssd_help_lists_every_subcommand_without_importing_torch_and_version_is_the_package_s():
    """`ssd --help` answers from a table, before torch or Lightning is imported (0.05 s on the 2-core Xeon)."""
    from importlib.metadata import version

    from scale_space_diffusion.cli import SUBCOMMANDS

    code = ("import sys; from scale_space_diffusion.cli import main; sys.argv = ['ssd', sys.argv[1]]; main(); "
            "print('torch loaded' if 'torch' in sys.modules else 'torch not loaded')")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code, "--help"], capture_output=True, text=True, timeout=60)
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and lines[-1] == "torch not loaded", done.stderr[-2000:]
    listed = [line.split()[0] for line in lines if line.startswith("  ")]
    assert listed == list(SUBCOMMANDS) == ["fit", "validate", "test", "predict", "export", "sample", "fid"]
    done = subprocess.run([sys.executable, "-c", code, "--version"], capture_output=True, text=True, timeout=60)
    import scale_space_diffusion

    assert done.stdout.splitlines()[0] == f"ssd {version('scale-space-diffusion')}" == f"ssd {scale_space_diffusion.__version__}"


def test_each_predict_run_gets_a_new_folder(tmp_path):
    from scale_space_diffusion.callbacks import next_run_dir

    assert next_run_dir(tmp_path) == tmp_path / "run_000"
    for name in ("run_000", "run_002", "run_x", "other"):
        (tmp_path / name).mkdir()
    assert next_run_dir(tmp_path) == tmp_path / "run_003"  # one past the largest: nothing is reused
