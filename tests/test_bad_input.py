"""The bad-input matrix (issue #6): every bad input we refuse, the exception it raises, the bad value its message
names and the fix it gives. Each fails before training work could be lost: no optimiser step has completed.

A case is ``make(tmp, fixtures) -> act``: ``make`` arranges (files, checkpoints), ``act()`` must raise.
"""

from argparse import ArgumentError
import sys
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from PIL import Image
from torch.optim.optimizer import register_optimizer_step_post_hook

from conftest import ROOT

from scale_space_diffusion.data import sources
from scale_space_diffusion.networks import official
from scale_space_diffusion.cli import parse_error, run
from scale_space_diffusion.data import ImageDataModule
from scale_space_diffusion.data.idx import FASHION_FILES
from scale_space_diffusion.diffusion.ladder import ResolutionLadder
from scale_space_diffusion.diffusion.loss import DiffusionLoss
from scale_space_diffusion.diffusion.schedule import NoiseSchedule
from scale_space_diffusion.models.settings import Optimization, Sampling
from scale_space_diffusion.models.ddpm import DDPM
from scale_space_diffusion.models.spectral import SpectralDiffusion
from scale_space_diffusion.models.ssd import ScaleSpaceDiffusion
from scale_space_diffusion.networks.flexi_unet import FlexiUNet
from scale_space_diffusion.networks.spectral_unet import SpectralUNet
from scale_space_diffusion.networks.unet import UNet

Act = Callable[[], object]
Fixture = Callable[[str], Any]  # request.getfixturevalue: fixtures are made only for the cases that use them
Make = Callable[[Path, Fixture], Act]


# --- builders: tiny models, data, checkpoints and CLI runs ----------------------------------------------------------

def net(cls: type = UNet, **kw) -> UNet:
    """16px, 1 channel, levels [16, 8]: the shape of configs/smoke and of the ``tiny_teacher`` fixture."""
    return cls(**{**dict(image_size=16, in_channels=1, model_channels=8, channel_mult=(1, 2), num_res_blocks=1,
                         attention_resolutions=(), num_heads=2), **kw})  # fmt: skip


T100, NO_EMA = NoiseSchedule(timesteps=100), Optimization(ema_decay=None)


def ddpm(network: UNet | None = None, **kw) -> DDPM:
    return DDPM(network or net(), **{"schedule": T100, "optim": NO_EMA, **kw})


def ssd(network: UNet | None = None, timesteps: int = 100, **kw) -> ScaleSpaceDiffusion:
    kw = {"num_levels": 2, "schedule": NoiseSchedule(timesteps=timesteps), "optim": NO_EMA, **kw}
    return ScaleSpaceDiffusion(network or net(FlexiUNet), **kw)


def spectral(teacher: str | None, image_size: int = 16, timesteps: int = 100, **kw) -> SpectralDiffusion:
    network = net(SpectralUNet, image_size=image_size, model_channels=4)
    return SpectralDiffusion(network, teacher=teacher, **{"schedule": NoiseSchedule(timesteps=timesteps), "optim": NO_EMA, **kw})


def fitting_spectral(teacher: str, **kw) -> None:
    """A student as ``fit`` starts it: the teacher file is read then (not when the student is built)."""
    spectral(teacher, **kw).prepare_fit()


def datamodule(tmp: Path, **kw) -> ImageDataModule:
    m = ImageDataModule(**{"cache_dir": str(tmp / "cache"), **kw})
    m.prepare_data()
    m.setup("fit")
    return m


def images(root: Path, n: int = 2) -> Path:
    (root / "cat").mkdir(parents=True)
    for i in range(n):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(root / "cat" / f"{i}.png")
    return root


def saved(model, path: Path) -> str:
    """What ``load_model`` reads from a Lightning checkpoint (the model's hook keys, hyper-parameters, weights)."""
    ckpt = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(ckpt)
    torch.save(ckpt, path)
    return str(path)


def call(f: Callable, *args, **kw) -> Make:
    """A case with nothing to arrange."""
    return lambda tmp, fx: partial(f, *args, **kw)


class _Args(dict):
    """Fills ``{tmp}`` and ``{<fixture>}`` in CLI arguments."""

    def __init__(self, tmp: Path, fx: Fixture):
        super().__init__(tmp=tmp)
        self.fx = fx

    def __missing__(self, name: str) -> Any:
        return self.fx(name)


def cli(subcommand: str, *extra: str, config: str = "ssd_tiny", prepare: Make = lambda tmp, fx: None) -> Make:
    """``ssd <subcommand>`` on a smoke config with the test data; a parser error's message is what it printed."""

    def make(tmp: Path, fx: Fixture) -> Act:
        fx("monkeypatch").setattr(sys, "argv", ["ssd"])  # LightningCLI warns when args and argv both exist
        prepare(tmp, fx)
        args = [subcommand, f"--config={ROOT / 'configs/smoke' / config}.yaml", "--trainer.default_root_dir={tmp}",
                "--data.idx_dir={fmnist_idx}", "--data.cache_dir={cache_dir}", *extra]  # fmt: skip
        args = [a.format_map(_Args(tmp, fx)) for a in args]

        def act():
            try:
                run(args)
            except ArgumentError as e:  # a bad option: what `ssd` prints for it
                raise SystemExit(parse_error(e)) from e

        return act

    return make


# --- cases that arrange files --------------------------------------------------------------------------------------

def offline(tmp: Path, fx: Fixture, **kw) -> Act:
    fx("monkeypatch").setattr(sources, "_hub_reachable", lambda timeout=3.0: False)
    return partial(datamodule, tmp, **kw)


def empty_folder(tmp: Path, fx) -> Act:
    (tmp / "empty_folder" / "sub").mkdir(parents=True)
    (tmp / "empty_folder" / "notes.txt").write_text("no images")
    return partial(datamodule, tmp, dataset=str(tmp / "empty_folder"))


def corrupt_image(tmp: Path, fx) -> Act:
    folder = images(tmp / "imgs")
    (folder / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return partial(datamodule, tmp, dataset=str(folder))


def corrupt_idx(tmp: Path, fx) -> Act:
    (tmp / "idx").mkdir()
    for name in (f for pair in FASHION_FILES.values() for f in pair):
        (tmp / "idx" / name).write_bytes(b"not gzip")
    return partial(datamodule, tmp, idx_dir=str(tmp / "idx"))


def no_train_split(tmp: Path, fx) -> Act:
    images(tmp / "only_test" / "test")
    return partial(datamodule, tmp, dataset=str(tmp / "only_test"))


def other_architecture(tmp: Path, fx) -> Act:
    released, path = net(FlexiUNet, layout="official"), tmp / "ssd_16res_toy_2levels.pt"
    torch.save(official.to_official(released.state_dict(), released), path)
    return partial(ssd, net(FlexiUNet, model_channels=16, layout="official"), official_checkpoint=str(path))


def teacher_file(model: Callable[[], object]) -> Make:
    return lambda tmp, fx: partial(fitting_spectral, saved(model(), tmp / "teacher.ckpt"))


def plain_torch_file(tmp: Path, fx) -> Act:
    torch.save({"state_dict": {}}, tmp / "plain.pt")
    return partial(fitting_spectral, str(tmp / "plain.pt"))


def with_tiny_teacher(**kw) -> Make:
    return lambda tmp, fx: partial(fitting_spectral, fx("tiny_teacher"), **kw)


def samples_in(run_dir: str) -> Make:
    def prepare(tmp: Path, fx) -> None:
        (tmp / "samples" / run_dir).mkdir(parents=True)
        Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp / "samples" / run_dir / "000000.png")

    return prepare


def fit_from(make_model: Callable[[], object], tmp: Path, fx) -> Act:
    """``Trainer.fit(model, ckpt_path=<the DDPM tiny_teacher>)``: resuming, the Python way."""
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", default_root_dir=tmp)  # fmt: skip
    loader = DataLoader(TensorDataset(torch.zeros(8, 1, 16, 16), torch.zeros(8, dtype=torch.long)), batch_size=4)
    return partial(trainer.fit, make_model(), loader, ckpt_path=fx("tiny_teacher"))


def bad_file(kind: str, as_teacher: str | None = None):
    """{tmp}/bad.ckpt, empty, truncated (the first 4 kB of a real checkpoint) or random bytes."""

    def make(tmp: Path, fx) -> Act | None:
        data = {"empty": b"", "random": np.random.default_rng(0).bytes(5000),
                "truncated": Path(fx("tiny_teacher")).read_bytes()[:4096]}[kind]  # fmt: skip
        (tmp / "bad.ckpt").write_bytes(data)
        return partial(fitting_spectral, str(tmp / "bad.ckpt")) if as_teacher else None

    return make


def cli_fit_done(tmp: Path, fx) -> None:
    """A finished run's checkpoints in the folder a second `fit` would write to."""
    (tmp / "checkpoints").mkdir()
    (tmp / "checkpoints/last.ckpt").write_bytes(Path(fx("tiny_teacher")).read_bytes())


def cli_trained_ddpm(tmp: Path, fx) -> None:
    """``{tmp}/ddpm.ckpt``: tiny_teacher as `ssd fit` writes it, with ``_class_path`` in its hyper-parameters."""
    ckpt = torch.load(fx("tiny_teacher"), weights_only=True)
    ckpt["hyper_parameters"]["_class_path"] = "scale_space_diffusion.DDPM"
    torch.save(ckpt, tmp / "ddpm.ckpt")


def bad_yaml(tmp: Path, fx) -> None:
    (tmp / "bad.yaml").write_text("trainer:\n  max_steps: 1\n  callbacks: [a\n")


def dataset_file(tmp: Path, fx) -> Act:
    images(tmp / "imgs")
    return partial(datamodule, tmp, dataset=str(tmp / "imgs" / "cat" / "0.png"))


def batch_of(shape: tuple[int, ...]) -> Make:
    return lambda tmp, fx: partial(ddpm().training_step, (torch.zeros(2, *shape), torch.zeros(2, dtype=torch.long)), 0)


# --- the matrix ----------------------------------------------------------------------------------------------------

def case(make: Make, exc: type[BaseException], bad: str, fix: str, id: str):
    """``bad``: a literal the message must contain; ``fix``: a regex for the part that says what to do."""
    return pytest.param(make, exc, bad, fix, id=id)


DM = ImageDataModule
USE = "set data.channels / data.image_size to match the model"
TEACHER = r"pass the \.ckpt of a trained DDPM"

CASES = [
    # data module arguments
    case(call(DM, channels=2), ValueError, "channels=2", r"must be 1 \(greyscale\) or 3 \(RGB\)", "data-channels"),
    case(call(DM, image_size=0), ValueError, "image_size=0", "must be positive, e.g. 32", "data-image-size"),
    case(call(DM, num_samples=0), ValueError, "num_samples=0", "must be positive, e.g. 64", "num-samples-0"),
    case(call(DM, num_samples=-3), ValueError, "num_samples=-3", "must be positive, e.g. 64", "num-samples-negative"),
    case(call(DM, val_fraction=1.0), ValueError, "val_fraction=1.0", r"must be in \[0, 1\)", "val-fraction-1"),
    case(call(DM, val_fraction=-0.1), ValueError, "val_fraction=-0.1", r"must be in \[0, 1\)", "val-fraction-negative"),
    case(call(DM, small_images="crop"), ValueError, "small_images='crop'", "must be 'pad' or 'resize'", "small-images"),
    case(call(DM, batch_size=0), ValueError, "batch_size=0", "must be positive", "batch-size"),
    case(call(DM, num_workers=-1), ValueError, "num_workers=-1", "must be >= 0", "num-workers"),
    case(call(DM, max_samples=0), ValueError, "max_samples=0", "must be positive or None", "max-samples"),
    # data sources
    case(partial(offline, dataset="no-such-user/no-such-dataset"), FileNotFoundError, "'no-such-user/no-such-dataset'",
         "give an image folder, dataset=fashion_mnist, or a hub name on a machine with network access",
         "unknown-dataset-offline"),
    case(lambda tmp, fx: offline(tmp, fx, idx_dir=str(tmp / "no_idx_here")), FileNotFoundError, "no_idx_here",
         r"run `make data` \(or `apt-get install dataset-fashion-mnist`\)", "fashion-mnist-missing-offline"),
    case(lambda tmp, fx: partial(datamodule, tmp, dataset=str(tmp / "missing_folder")), FileNotFoundError,
         "missing_folder", "give an existing image folder or a hub name", "missing-folder"),
    case(empty_folder, FileNotFoundError, "empty_folder", "add images, one sub-folder per class", "empty-folder"),
    case(dataset_file, NotADirectoryError, "0.png", r"is a file, not a folder; give the folder .*data\.dataset=.*cat",
         "dataset-is-a-file"),
    case(corrupt_image, ValueError, "broken.png", "delete or replace it", "corrupt-image"),
    case(corrupt_idx, ValueError, "train-images-idx3-ubyte.gz", "the file is corrupt, re-download it", "corrupt-idx"),
    case(no_train_split, ValueError, "['test']", r"put the training images in .*only_test/train/", "no-train-split"),
    # networks, ladder, noise schedule, loss, EMA
    case(call(ResolutionLadder, 36, 4), ValueError, "image_size 36",
         "use num_levels <= 3 or an image_size divisible by 8", "ladder-not-divisible"),
    case(call(net, FlexiUNet, image_size=36, channel_mult=(1, 2, 2, 2)), ValueError, "image_size 36",
         "use an image_size divisible by 8 or a shorter channel_mult", "unet-not-divisible"),
    case(call(ResolutionLadder, 32, 0), ValueError, "num_levels=0", r"must be >= 1 \(1 is plain DDPM\)", "no-levels"),
    case(call(ssd, num_levels=3), ValueError, "num_levels=3", "use num_levels <= 2 or a longer channel_mult",
         "more-levels-than-unet"),
    case(call(ResolutionLadder, 16, 2, 1), ValueError, "timesteps=1", "use timesteps >= 2 or fewer levels", "few-steps"),
    case(call(ssd, gamma=0.0), ValueError, "gamma=0.0", "must be > 0; use the official default 0.5", "gamma-0"),
    case(cli("fit", "--model.init_args.gamma=-1"), ValueError, "gamma=-1.0", "use the official default", "gamma-cli"),
    case(call(ssd, ladder_schedule="linear"), ValueError, "'linear'", "use 'convex' or 'equal'", "ladder-schedule"),
    case(call(ssd, unet_mode="half"), ValueError, "'half'", "use 'flexi' or 'full'", "unet-mode"),
    case(call(lambda: ssd(net())), TypeError, "got UNet", "use a FlexiUNet or unet_mode='full'", "flexi-needs-flexi"),
    case(call(ssd, resize="lanczos"), ValueError, "'lanczos'", "use 'bilinear' or 'box'", "resize-kind"),
    case(call(ssd, official_checkpoint="nowhere.pt"), FileNotFoundError, "'nowhere.pt'",
         r"pass the path of a downloaded \.pt file", "official-checkpoint-missing"),
    case(other_architecture, ValueError, "shape mismatch at", r"use the matching configs/official/\*\.yaml",
         "official-checkpoint-other-architecture"),
    case(call(net, model_channels=7), ValueError, "model_channels=7", "must be even", "odd-model-channels"),
    case(call(net, attention_resolutions=(8,), num_heads=3), ValueError, "num_heads=3", "use a num_heads that divides",
         "attention-heads"),
    case(call(NoiseSchedule, "quadratic"), ValueError, "'quadratic'", "use 'linear' or 'cosine'", "beta-schedule"),
    case(cli("fit", "--model.init_args.schedule.kind=quadratic"), SystemExit, "quadratic",
         r"Expected a typing.Literal\['linear', 'cosine'\]", "beta-schedule-cli"),
    case(call(NoiseSchedule, timesteps=0), ValueError, "timesteps=0", "must be >= 1, e.g. 1000", "timesteps-0"),
    case(call(NoiseSchedule, timesteps=20), ValueError, "timesteps=20", "use timesteps >= 21", "timesteps-too-few"),
    case(call(DiffusionLoss, "v"), ValueError, "'v'", "use 'eps' or 'x0'", "prediction"),
    case(call(DiffusionLoss, weighting="snr"), ValueError, "'snr'", "use 'constant' or 'min_snr'", "weighting"),
    case(call(DiffusionLoss, snr_gamma=0.0), ValueError, "got 0.0", "snr_gamma must be > 0", "snr-gamma"),
    case(call(Optimization, ema_decay=1.0), ValueError, "ema_decay=1.0", r"must be in \(0, 1\) or null", "ema-decay"),
    case(call(Optimization, lr=-1.0), ValueError, "lr=-1.0", r"optim\.lr, e\.g\. 2e-4", "lr-negative"),
    case(call(Sampling, grid_size=-1), ValueError, "sampling.grid_size=-1", "must be >= 0; 0 turns the grids off",
         "sampling-grid-size"),
    case(call(Sampling, grid_every_n_epochs=-2), ValueError, "sampling.grid_every_n_epochs=-2", "must be >= 0",
         "sampling-grid-every"),
    case(call(ssd, loss=DiffusionLoss("eps")), ValueError, "loss.prediction='eps'", "loss.prediction=x0", "ssd-eps"),
    case(cli("fit", "--model.init_args.sampling.steps=500", "--trainer.max_steps=1", config="ddpm_tiny"), ValueError,
         "sampling.steps=500", r"must be in 1\.\.100 \(timesteps\) or null", "sample-steps-above-timesteps"),
    # data and model disagree: refused at the first step
    case(cli("fit", "--data.channels=3", "--trainer.fast_dev_run=1"), ValueError, "data is (3, 16, 16)", USE,
         "channel-mismatch"),
    case(batch_of((1, 32, 32)), ValueError, "data is (1, 32, 32)", USE, "image-size-mismatch"),
    case(cli("fit", "--model.init_args.net.init_args.num_classes=5", "--trainer.max_steps=1", config="ddpm_tiny"),
         ValueError, "num_classes=5", r"the data has 10 classes .* set --model\.init_args\.net\.init_args\.num_classes=10",
         "fewer-classes-than-data"),
    # Spectral Diffusion's teacher
    case(call(fitting_spectral, "no_teacher.ckpt"), FileNotFoundError, "'no_teacher.ckpt'", TEACHER, "teacher-missing"),
    case(bad_file("empty", "teacher"), ValueError, "teacher=", r"is empty \(0 bytes\), not a checkpoint", "teacher-empty"),
    case(bad_file("truncated", "teacher"), ValueError, "teacher=", "is truncated", "teacher-truncated"),
    case(plain_torch_file, ValueError, "plain.pt", TEACHER, "teacher-not-ours"),
    case(teacher_file(ssd), TypeError, "holds a ScaleSpaceDiffusion", TEACHER, "teacher-ssd"),
    case(teacher_file(lambda: spectral(None)), TypeError, "holds a SpectralDiffusion", r"pass the \.ckpt of a DDPM",
         "teacher-spectral"),
    case(with_tiny_teacher(timesteps=200), ValueError, "timesteps=200", "set the student's schedule to the teacher's",
         "teacher-schedule"),
    case(with_tiny_teacher(image_size=32), ValueError, "1x32px",
         "set the student net's in_channels=1 and image_size=16", "teacher-image-size"),
    # checkpoints and the command line
    case(cli("test"), SystemExit, "`test`", "Pass --ckpt_path=<file.ckpt>", "test-without-checkpoint"),
    case(cli("validate"), SystemExit, "`validate`", "Pass --ckpt_path=<file.ckpt>", "validate-without-checkpoint"),
    case(cli("predict"), SystemExit, "`predict`", "Pass --ckpt_path=<file.ckpt>", "predict-without-checkpoint"),
    case(cli("test", "--ckpt_path=last"), FileNotFoundError, "--ckpt_path=last", "run `fit` with this config first",
         "test-last-none"),
    case(cli("predict", "--ckpt_path=last"), FileNotFoundError, "--ckpt_path=last", "run `fit` with this config first",
         "predict-last-none"),
    case(cli("predict", "--ckpt_path={tmp}/missing.ckpt"), FileNotFoundError, "missing.ckpt",
         r"pass an existing \.ckpt file", "predict-checkpoint-missing"),
    case(cli("predict", "--ckpt_path={tmp}"), IsADirectoryError, "is a folder", r"pass a \.ckpt file in it",
         "checkpoint-is-a-folder"),
    case(cli("predict", "--ckpt_path={tmp}/bad.ckpt", prepare=bad_file("empty")), ValueError, "bad.ckpt",
         r"is empty \(0 bytes\), not a checkpoint", "checkpoint-empty"),
    case(cli("predict", "--ckpt_path={tmp}/bad.ckpt", prepare=bad_file("truncated")), ValueError, "bad.ckpt",
         "is truncated .*use an earlier checkpoint", "checkpoint-truncated"),
    case(cli("predict", "--ckpt_path={tmp}/bad.ckpt", prepare=bad_file("random")), ValueError, "bad.ckpt",
         r"is not a PyTorch checkpoint; pass a \.ckpt written by `ssd fit`", "checkpoint-random"),
    case(cli("predict", "--ckpt_path={tmp}/ddpm.ckpt", "--model.init_args.schedule.timesteps=50", config="ddpm_tiny",
             prepare=cli_trained_ddpm), ValueError, "schedule.timesteps=50",
         "contradicts the checkpoint .* has schedule.timesteps=100.* drop the option", "override-of-the-architecture"),
    case(partial(fit_from, lambda: ddpm(net(model_channels=16))), ValueError, "is (32, 8) but this model's is (64, 16)",
         r"holds another network; set --model\.init_args\.net\.init_args\.model_channels=8", "checkpoint-other-width"),
    case(cli("fit", "--trainer.max_steps=1", config="ddpm_tiny", prepare=cli_fit_done), FileExistsError,
         "already holds checkpoints of another run", "resume it with --ckpt_path=last, or give this run its own folder",
         "second-fit-into-a-finished-run"),
    case(cli("fit", "--model.init_args.optim.lr=-1", config="ddpm_tiny"), ValueError, "lr=-1.0",
         r"set --model\.init_args\.optim\.lr, e\.g\. 2e-4", "lr-cli"),
    case(partial(fit_from, ssd), ValueError, "saved by DDPM", r"pass the matching model \(e\.g\. --model=DDPM",
         "checkpoint-of-another-model"),
    case(cli("fit", "--ckpt_path={tmp}/ddpm.ckpt", "--trainer.max_steps=1", prepare=cli_trained_ddpm), ValueError,
         "holds a DDPM", "pass the config it was trained with", "checkpoint-of-another-model-cli"),
    case(cli("predict", "--random_weights=true", "--sample_writer.run_name=old_run", prepare=samples_in("old_run")),
         FileExistsError, "old_run", "choose another --sample_writer.run_name or remove it", "predict-dir-has-samples"),
    case(cli("fit", "--model.init_args.num_levelz=3"), SystemExit, "num_levelz", r"not accepted.*--help", "unknown-option"),
    case(cli("fit", "--config={tmp}/bad.yaml", prepare=bad_yaml), ValueError, "bad.yaml",
         r"YAML syntax error at line 4, column 1: .*; fix the file", "yaml-syntax-error"),
    case(cli("predict", "--model.init_args.sample_steps=4"), SystemExit, "sample_steps",
         "it is now --model.init_args.sampling.steps", "renamed-option"),
    case(cli("fit", "--model.init_args.eta=0"), SystemExit, "'eta'", "it is now --model.init_args.sampling.eta",
         "renamed-option-eta"),
    case(cli("fit", "--model.init_args.sampling.guidance_scale=2"), ValueError, "guidance_scale=2.0",
         "build the net with num_classes and null_class=true", "guidance-without-null-class"),
]


@pytest.mark.parametrize("make, exc, bad, fix", CASES)
def test_bad_input_fails_early_with_a_clear_message(make: Make, exc, bad: str, fix: str, tmp_path, request):
    act = make(tmp_path, request.getfixturevalue)
    steps = []
    hook = register_optimizer_step_post_hook(lambda *args: steps.append(1))
    try:
        with pytest.raises(exc, match=fix) as err:
            act()
    finally:
        hook.remove()
    assert bad in str(err.value), f"the message does not name the bad value {bad!r}"
    assert not steps, f"{len(steps)} optimiser steps ran before the error"


# --- inputs taken as the user means them (issue #25) ---------------------------------------------------------------

def smoke_fit(tmp: Path, fmnist_idx: Path, cache_dir: Path, *extra: str, config: str = "ddpm_tiny") -> list[str]:
    return ["fit", f"--config={ROOT / 'configs/smoke' / config}.yaml", f"--trainer.default_root_dir={tmp}",
            f"--data.idx_dir={fmnist_idx}", f"--data.cache_dir={cache_dir}", "--model.init_args.sampling.grid_size=0",
            *extra]  # fmt: skip


def test_steps_null_works_on_the_command_line(tmp_path, fmnist_idx, cache_dir, monkeypatch):
    """The refusal of sampling.steps=500 says "or null": the command line takes it, and keeps the config's other
    sampling settings."""
    monkeypatch.setattr(sys, "argv", ["ssd"])
    cli = run(smoke_fit(tmp_path, fmnist_idx, cache_dir, "--model.init_args.sampling.steps=null", "--trainer.max_steps=1"))
    assert cli.model.sampling.steps is None and cli.model.sampling.grid_size == 0


def test_an_int_limit_val_batches_limits_batches(tmp_path, fmnist_idx, cache_dir, monkeypatch):
    """`limit_val_batches: 1` (ddpm_tiny.yaml) is one batch, not 100 % (jsonargparse read it as the float 1.0)."""
    monkeypatch.setattr(sys, "argv", ["ssd"])
    cli = run(smoke_fit(tmp_path, fmnist_idx, cache_dir, "--data.val_fraction=0.5", "--trainer.max_steps=1"))
    assert len(cli.datamodule.val_dataloader()) > 2 and cli.trainer.num_val_batches == [1]
    from scale_space_diffusion.cli_guards import batch_limits

    config = ROOT / "configs/smoke/ddpm_tiny.yaml"  # limit_val_batches: 1; the command line wins, as in LightningCLI
    assert batch_limits(["fit", f"--config={config}", "--trainer.limit_val_batches", "2"]) == {"limit_val_batches": 2}
    assert batch_limits(["fit", f"--config={config}", "--trainer.limit_val_batches=0.5"]) == {}  # a share stays one


def test_resuming_with_another_batch_size_or_dataset_warns_naming_both(tmp_path, fmnist_idx, cache_dir, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["ssd"])
    run(smoke_fit(tmp_path / "a", fmnist_idx, cache_dir, "--trainer.max_steps=1"))
    ckpt = tmp_path / "a" / "checkpoints" / "last.ckpt"
    folder = tmp_path / "imgs"
    for i in range(8):
        (folder / "x").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((16, 16), 30 * i, np.uint8)).save(folder / "x" / f"{i}.png")
    with pytest.warns(UserWarning) as seen:
        run(smoke_fit(tmp_path / "b", fmnist_idx, cache_dir, f"--ckpt_path={ckpt}", "--trainer.max_steps=2",
                      "--data.batch_size=2", f"--data.dataset={folder}"))  # fmt: skip
    said = [str(w.message) for w in seen if "resuming with data." in str(w.message)]
    assert len(said) == 2, said
    assert "data.batch_size=2, but the checkpoint was trained with data.batch_size=4" in said[0]
    assert f"data.dataset='{folder.resolve()}', but the checkpoint was trained with data.dataset='fashion_mnist'" in said[1]


def ssd_main(argv: list[str], monkeypatch, capsys) -> str:
    """What `ssd <argv>` prints on stderr when it fails."""
    from scale_space_diffusion.cli import main

    monkeypatch.setattr(sys, "argv", ["ssd", *argv])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    return capsys.readouterr().err


def test_a_read_only_output_folder_is_a_short_error(tmp_path, fmnist_idx, cache_dir, monkeypatch, capsys):
    import errno
    import os

    real_mkdir = os.mkdir

    def read_only(path, *a, **kw):  # the output folder's file system is mounted read-only
        if str(path).startswith(str(tmp_path / "out")):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_mkdir(path, *a, **kw)

    monkeypatch.setattr(os, "mkdir", read_only)
    err = ssd_main(smoke_fit(tmp_path / "out", fmnist_idx, cache_dir, "--trainer.max_steps=1"), monkeypatch, capsys)
    message = err[err.index("error: "):].strip().splitlines()
    assert "Traceback" not in err and len(message) <= 3, err
    assert str(tmp_path / "out") in message[0] and "Read-only file system" in message[0]
    assert "give a writable --trainer.default_root_dir" in message[0]


def test_a_full_disk_is_a_short_error_and_keeps_the_last_checkpoint(tmp_path, fmnist_idx, cache_dir, monkeypatch,
                                                                     capsys):  # fmt: skip
    from scale_space_diffusion.io import checkpoint_io

    real_save = torch.save

    def save(obj, f, *a, **kw):  # the disk fills up half-way through the checkpoint of step 4
        if isinstance(obj, dict) and obj.get("global_step") == 4:
            f.write(b"\0" * 1000)
            raise OSError(28, "No space left on device")
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(checkpoint_io.torch, "save", save)
    every = '{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"dirpath": "%s", ' \
            '"every_n_train_steps": 2, "save_last": true}}' % (tmp_path / "ckpt")  # fmt: skip
    err = ssd_main(smoke_fit(tmp_path, fmnist_idx, cache_dir, "--trainer.max_steps=6", f"--trainer.callbacks+={every}"),
                   monkeypatch, capsys)  # fmt: skip
    message = err[err.index("error: "):].strip().splitlines()
    assert "Traceback" not in err and len(message) <= 3, err
    assert "step=4.ckpt" in message[0] and "No space left on device" in message[0] and "intact" in message[0]
    assert "free space" in message[0]  # the fix
    assert torch.load(tmp_path / "ckpt/last.ckpt", weights_only=True)["global_step"] == 2


# --- images as a photo viewer shows them --------------------------------------------------------------------------

def test_exif_orientation_is_applied(tmp_path):
    """A phone photo stored sideways with EXIF "rotate 90 CW" (orientation 6): left half white, right half black as
    stored, so top half white, bottom half black as shown; and its size is read as shown (8x16 stored -> 16x8)."""
    from PIL import ImageOps

    stored = np.zeros((16, 16, 3), np.uint8)
    stored[:, :8] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    (tmp_path / "photos" / "a").mkdir(parents=True)
    Image.fromarray(stored).save(tmp_path / "photos/a/square.jpg", exif=exif, quality=95)
    Image.fromarray(stored[:8]).save(tmp_path / "photos/a/wide.jpg", exif=exif, quality=95)  # 8 high, 16 wide
    with Image.open(tmp_path / "photos/a/square.jpg") as im:
        assert ImageOps.exif_transpose(im).getpixel((8, 2))[0] > 200  # PIL agrees: the top is white as shown
    m = datamodule(tmp_path, dataset=str(tmp_path / "photos"), channels=3, image_size=16, val_fraction=0,
                   random_flip=False, small_images="resize")  # fmt: skip
    train = m.splits["train"]
    x, _ = train.__getitems__([0, 1])
    square = x[0] if train.sizes([0])[0] == (16, 16) else x[1]
    assert square[:, :6].mean() > 0.9 and square[:, 10:].mean() < -0.9  # top white, bottom black
    assert sorted(train.sizes([0, 1])) == [(16, 8), (16, 16)]  # as shown: 16 high, 8 wide


def rgba_folder(root: Path) -> Path:
    """3 images: RGBA fully transparent (its colour black), LA half transparent (grey 0), and an opaque RGB grey."""
    (root / "a").mkdir(parents=True)
    Image.fromarray(np.zeros((16, 16, 4), np.uint8), "RGBA").save(root / "a/0.png")
    Image.fromarray(np.dstack([np.zeros((16, 16), np.uint8), np.full((16, 16), 128, np.uint8)]), "LA").save(root / "a/1.png")
    Image.fromarray(np.full((16, 16, 3), 100, np.uint8)).save(root / "a/2.png")
    return root


@pytest.mark.parametrize("background, value", [("white", 1.0), ("black", -1.0)])
def test_transparency_is_composited_over_a_background_with_one_warning(tmp_path, background, value):
    folder = rgba_folder(tmp_path / "imgs")
    with pytest.warns(UserWarning) as seen:
        m = datamodule(tmp_path, dataset=str(folder), channels=3, image_size=16, val_fraction=0, random_flip=False,
                       transparent_background=background)  # fmt: skip
    said = [str(w.message) for w in seen if "transparent" in str(w.message)]
    assert len(said) == 1 and said[0].startswith("2 of the 3 training images have transparent pixels: composited "
                                                 f"over {background} (data.transparent_background={background})")
    x, _ = m.splits["train"].__getitems__([0, 1, 2])
    half = (128 * 0 + 127 * {"white": 255, "black": 0}[background] + 127) // 255 / 127.5 - 1
    assert torch.allclose(x[0], torch.full_like(x[0], value))  # fully transparent: the background alone
    assert torch.allclose(x[1], torch.full_like(x[1], half), atol=1e-6)  # half: grey 0 half over the background
    assert torch.allclose(x[2], torch.full_like(x[2], 100 / 127.5 - 1))  # opaque: unchanged


def test_transparent_background_is_checked():
    with pytest.raises(ValueError, match=r"transparent_background='grey' must be 'white' or 'black'"):
        ImageDataModule(transparent_background="grey")


def test_the_python_the_project_declares_is_the_one_its_code_needs():
    """typing.Unpack and tomllib arrived in Python 3.11: pyproject and the README's install line must say 3.11."""
    import re
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    needs = [p for p in [*ROOT.glob("scale_space_diffusion/**/*.py"), *ROOT.glob("tests/**/*.py")]
             if re.search(r"^\s*(from typing import .*\bUnpack\b|import tomllib)", p.read_text(), re.M)]  # fmt: skip
    assert needs and declared.replace(" ", "") == ">=3.11", f"{needs[0]} needs Python 3.11, pyproject says {declared}"
    install = next(line for line in (ROOT / "README.md").read_text().splitlines() if re.match(r"Python 3\.\d+\+", line))
    assert install.startswith("Python 3.11+"), install
