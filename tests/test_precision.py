"""Precision and compilation: bf16-mixed training runs on CPU for every model, and torch.compile is one flag."""

import shutil
import sys

import lightning as L
import pytest
import torch

from conftest import ROOT

from scale_space_diffusion import cpu
from scale_space_diffusion.cli import run


class OutputDtype(L.Callback):
    """Records the dtype of the network's output and the loss of every training step."""

    def __init__(self):
        self.dtypes, self.losses = set(), []

    def on_fit_start(self, trainer, pl_module):
        pl_module.net.register_forward_hook(lambda m, i, out: self.dtypes.add(out.dtype))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


@pytest.fixture(autouse=True)
def plain_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["ssd"])  # LightningCLI warns when args and argv both exist


@pytest.fixture
def bf16_instructions(monkeypatch):
    """bf16-mixed runs as on a CPU with bf16 instructions, also on one that emulates them (slower, same results)."""
    monkeypatch.setattr(cpu, "native_cpu_bf16", lambda: True)


def fit(name, tmp_path, fmnist_idx, cache_dir, teacher, *extra):
    args = [
        "fit", f"--config={ROOT / f'configs/smoke/{name}_tiny.yaml'}", "--trainer.max_steps=2",
        f"--trainer.default_root_dir={tmp_path}", f"--data.idx_dir={fmnist_idx}", f"--data.cache_dir={cache_dir}",
        "--model.init_args.sampling.grid_size=0", "--trainer.callbacks+=test_precision.OutputDtype", *extra,
    ]  # fmt: skip
    args += [f"--model.init_args.teacher={teacher}"] if name == "spectral" else []
    cli = run(args)
    return cli, next(cb for cb in cli.trainer.callbacks if isinstance(cb, OutputDtype))


@pytest.mark.parametrize("name", ["ddpm", "ssd", "spectral"])
def test_bf16_mixed_trains_on_cpu(name, tmp_path, fmnist_idx, cache_dir, tiny_teacher, bf16_instructions):
    cli, probe = fit(name, tmp_path, fmnist_idx, cache_dir, tiny_teacher, "--trainer.precision=bf16-mixed")
    assert cli.trainer.global_step == 2 and torch.bfloat16 in probe.dtypes  # autocast really ran the network in bf16
    assert all(torch.isfinite(torch.tensor(probe.losses)))
    assert all(p.dtype == torch.float32 for p in cli.model.parameters())  # master weights stay float32


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="torch.compile's CPU backend (inductor) needs a C++ compiler; none on PATH")  # fmt: skip
@pytest.mark.parametrize("name", ["ddpm", "ssd"])
def test_torch_compile_flag(name, tmp_path, fmnist_idx, cache_dir, tiny_teacher):
    cli, probe = fit(name, tmp_path, fmnist_idx, cache_dir, tiny_teacher, "--model.init_args.torch_compile=true",
                     "--trainer.limit_val_batches=0")  # fmt: skip  (each network path compiles once; keep them few)
    assert cli.model.net._compiled_call_impl is not None and cli.trainer.global_step == 2
    assert all(torch.isfinite(torch.tensor(probe.losses)))
    saved = torch.load(tmp_path / "checkpoints/last.ckpt", weights_only=False)["state_dict"]
    assert saved.keys() == cli.model.state_dict().keys() and not any("_orig_mod" in k for k in saved)


@pytest.mark.parametrize("name", ["ddpm", "ssd", "spectral"])
def test_bf16_mixed_predict_samples_like_fp32(name, tmp_path, fmnist_idx, cache_dir, tiny_teacher, bf16_instructions):
    """Under bf16-mixed only the network runs in bf16: SSD's transitions (antialiased upsample, which has no bf16
    kernel) and the posterior stay fp32, so predict works and its samples are the fp32 ones up to rounding."""
    import numpy as np
    from PIL import Image

    net = ["--model.init_args.sampling.sampler=ddim"]  # SSD: 3 levels, so a transition's output feeds the next one
    net += ["--model.init_args.num_levels=3", "--model.init_args.net.init_args.channel_mult=[1,2,2]"] if name == "ssd" else []
    fit(name, tmp_path, fmnist_idx, cache_dir, tiny_teacher, *net)
    args = [f"--config={ROOT / f'configs/smoke/{name}_tiny.yaml'}", f"--trainer.default_root_dir={tmp_path}",
            f"--data.idx_dir={fmnist_idx}", f"--data.cache_dir={cache_dir}", "--ckpt_path=last", "--data.num_samples=4",
            *net, *([f"--model.init_args.teacher={tiny_teacher}"] if name == "spectral" else [])]  # fmt: skip
    images = {}
    for precision in ("32-true", "bf16-mixed"):
        run(["predict", *args, f"--trainer.precision={precision}", f"--sample_writer.run_name={precision}"])
        files = sorted((tmp_path / "samples" / precision).glob("0*.png"))
        images[precision] = np.stack([np.asarray(Image.open(f), dtype=np.float64) for f in files])
    assert images["32-true"].shape == images["bf16-mixed"].shape == (4, 16, 16)
    assert np.abs(images["32-true"] - images["bf16-mixed"]).mean() < 8  # grey levels of 255, mean over pixels


def test_the_fmnist_configs_train_in_bf16_mixed():
    import yaml

    for name in ("ddpm_fmnist32", "ssd_fmnist32", "ssd_fmnist32_cond", "spectral_fmnist32"):
        assert yaml.safe_load((ROOT / f"configs/{name}.yaml").read_text())["trainer"]["precision"] == "bf16-mixed", name


@pytest.mark.skipif(__import__("platform").machine().lower() not in ("x86_64", "amd64"), reason="x86 capability names")
@pytest.mark.parametrize("caps, native", [({}, False), ({"avx512_bf16": True}, True), ({"amx_bf16": True}, True)])
def test_bf16_mixed_runs_in_fp32_with_a_warning_on_a_cpu_without_bf16_instructions(caps, native, tmp_path, fmnist_idx,
                                                                                   cache_dir, tiny_teacher, monkeypatch):  # fmt: skip
    import warnings

    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: caps)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        cli, probe = fit("ddpm", tmp_path, fmnist_idx, cache_dir, tiny_teacher, "--trainer.precision=bf16-mixed",
                         "--trainer.max_steps=1")  # fmt: skip
    hits = [str(w.message) for w in seen if "without bf16 instructions" in str(w.message)]
    assert bool(hits) != native and all("precision=32-true instead" in h for h in hits)
    assert cli.trainer.precision == ("bf16-mixed" if native else "32-true")
    assert (torch.bfloat16 in probe.dtypes) == native  # the network really ran in the precision the trainer says
