"""``ssd`` / ``python -m scale_space_diffusion``: LightningCLI with fit, validate, test and predict.

    ssd fit --config configs/ssd_fmnist32.yaml
    ssd predict --config configs/ssd_fmnist32.yaml --ckpt_path last --model.init_args.sampling.steps=50
    ssd export --ckpt_path outputs/ssd/checkpoints/last.ckpt --out my_model   # a save_pretrained folder
    ssd sample --model my_model --num_images 64                                # PNGs from such a folder

With ``--ckpt_path`` the model's definition (network, schedule, ladder, loss) comes from the checkpoint; what only
changes training or sampling (``optim``, ``sampling``, ``teacher``, ...) comes from the config and the command line,
which win over the checkpoint. An option on the command line that contradicts the checkpoint's definition is refused.
Every refusal of ours reaches the terminal as one short ``error:`` line (``SSD_TRACEBACK=1`` shows the traceback).
``ssd --help`` answers from :data:`OVERVIEW` without importing Lightning.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings

os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")

NEEDS_WEIGHTS = ("validate", "test", "predict")
SUBCOMMANDS = {  # what `ssd --help` lists; `ssd <subcommand> --help` gives every option
    "fit": "train a model from a config (--config configs/ssd_fmnist32.yaml); --ckpt_path last resumes",
    "validate": "one validation epoch of a checkpoint (--ckpt_path)",
    "test": "one test epoch of a checkpoint (--ckpt_path)",
    "predict": "sample PNGs, a grid and a ladder strip from a checkpoint (--ckpt_path last)",
    "export": "write a checkpoint as a shareable folder: config.json + model.safetensors",
    "sample": "sample PNGs and a grid from a shareable folder (`ssd export`'s output) or a Hub repo of one",
    "fid": "FID and KID of a folder of PNG samples against real images, with 95% intervals",
}
OVERVIEW = "\n".join([
    "usage: ssd [-h] [--version] {" + ",".join(SUBCOMMANDS) + "} ...",
    "",
    "Scale Space Diffusion, Spectral Diffusion and DDPM on PyTorch Lightning.",
    "",
    "subcommands (`ssd <subcommand> --help` lists every option):",
    *(f"  {name:<10} {text}" for name, text in SUBCOMMANDS.items()),
    "",
    "e.g. ssd fit --config configs/ssd_fmnist32.yaml && ssd predict --config configs/ssd_fmnist32.yaml --ckpt_path last",
])


class _NoTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in str(record.msg) and "litlogger" not in str(record.msg)


def _cli_class():
    from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

    from . import cli_guards, cpu
    from .io import checkpoints
    from .io.checkpoint_io import with_atomic_io
    from .callbacks import RunLifecycle, SampleWriter
    from .run_report import cli_trainer_kwargs
    from .networks import flexi_unet, spectral_unet, unet  # noqa: F401  (imported, so --model.net=SpectralUNet resolves)
    from .lightning_internals import replace_checkpoint_merge

    class FitConfigSaver(SaveConfigCallback):
        """Saves ``config.yaml`` for ``fit`` only: ``predict`` or ``test`` never write over a training run's files."""

        def setup(self, trainer, pl_module, stage: str) -> None:
            if stage == "fit":
                super().setup(trainer, pl_module, stage)

    class DiffusionCLI(LightningCLI):
        def add_arguments_to_parser(self, parser):
            parser.add_argument_group("Models (--model=NAME; all options of one: --model.help NAME)",
                                      description=_models_overview())  # fmt: skip
            parser.add_lightning_class_args(SampleWriter, "sample_writer")
            parser.add_lightning_class_args(RunLifecycle, "lifecycle")
            parser.add_argument(
                "--random_weights", type=bool, default=False,
                help="allow validate/test/predict without a checkpoint (an untrained model)",
            )  # fmt: skip

        def parse_arguments(self, parser, args) -> None:
            self._argv = list(sys.argv[1:] if args is None else args) if not isinstance(args, dict) else []
            cli_guards.check_config_files(self._argv)  # a YAML error names its file
            with cli_guards.nulls_in_groups(args) as args:  # `--model.init_args.sampling.steps=null` works
                super().parse_arguments(parser, args)
            sub = self.config.get("subcommand")
            checkpoints_under_root(self.config[sub].trainer if sub else self.config.trainer)

        def merge_checkpoint(self) -> None:
            """Replaces Lightning's merge (checkpoint wins): see the module docstring."""
            sub = self.config.get("subcommand")
            if not sub or not self.config[sub].get("ckpt_path"):
                return
            cfg = self.config[sub]
            path = checkpoints.resolve(cfg.ckpt_path, cfg.trainer.get("callbacks") or [], cfg.trainer.default_root_dir or ".")
            cfg.ckpt_path = path
            model, notes = checkpoints.merged_model(path, cfg.model, self._argv)  # the model class's run_settings win
            for note in notes:
                logging.getLogger("scale_space_diffusion").warning(note)
            self.config = self.parser.parse_object({sub: {"model": model}}, self.config)

        def before_instantiate_classes(self) -> None:
            trainer = self.config[self.subcommand].trainer if self.subcommand else self.config.trainer
            trainer.precision = cpu.usable_precision(trainer.precision, trainer.accelerator)

        def instantiate_trainer(self, **kwargs):
            if self.subcommand == "predict":
                kwargs.setdefault("logger", False)  # sampling logs nothing: no empty version_N folders
            kwargs.update(cli_guards.batch_limits(self._argv))  # `limit_val_batches: 1` is one batch, not 100 %
            init = self.config_init[self.subcommand] if self.subcommand else self.config_init
            kwargs["plugins"] = with_atomic_io(init.trainer.get("plugins"))  # unless the config names a checkpoint IO
            kwargs.update(cli_trainer_kwargs(init.trainer, self.subcommand))  # fit summary, metrics, no hp_metric
            return super().instantiate_trainer(**kwargs)

        def _require_weights(self, subcommand: str) -> None:
            cfg = self.config[subcommand]
            if cfg.get("random_weights") or getattr(self.model, "pretrained", False) or cfg.get("ckpt_path"):
                return
            raise SystemExit(
                f"error: `{subcommand}` without --ckpt_path would use an untrained model. Pass "
                "--ckpt_path=<file.ckpt> (or 'last' with the training config), an official checkpoint "
                "(--model.init_args.official_checkpoint=...), or --random_weights=true."
            )

        def before_fit(self):
            if not self.config.fit.get("ckpt_path"):
                checkpoints.refuse_owned_folders(checkpoints.checkpoint_dirs(self.trainer))

        def before_validate(self):
            self._require_weights("validate")

        def before_test(self):
            self._require_weights("test")

        def before_predict(self):
            self._require_weights("predict")

    replace_checkpoint_merge(DiffusionCLI, DiffusionCLI.merge_checkpoint)
    return DiffusionCLI, FitConfigSaver


def checkpoints_under_root(trainer) -> None:
    """A ModelCheckpoint without ``dirpath`` writes to ``<trainer.default_root_dir>/checkpoints`` (not into a
    ``version_N`` folder): ``default_root_dir`` is the one place a config names its output folder."""
    root = trainer.get("default_root_dir") or "."
    for cb in trainer.get("callbacks") or []:
        init = cb.get("init_args") if hasattr(cb, "get") else None
        if str(cb.get("class_path", "")).endswith("ModelCheckpoint") and init is not None and not init.get("dirpath"):
            init["dirpath"] = os.path.join(root, "checkpoints")


def _models_overview() -> str:
    """Each model's own options with their one-line explanations, from the docstrings (for ``ssd fit --help``)."""
    from docstring_parser import parse

    from .models.base import DiffusionModule

    shared = {"net", "schedule", "loss", "optim", "sampling", "torch_compile"}
    lines = []
    for cls in DiffusionModule.__subclasses__() + [c for s in DiffusionModule.__subclasses__() for c in s.__subclasses__()]:
        doc = parse(cls.__doc__ or "")
        lines.append(f"{cls.__name__}: {(doc.short_description or '').rstrip('.')}.")
        lines += [f"  {p.arg_name}: {' '.join(p.description.split())}" for p in doc.params if p.arg_name not in shared]
    lines.append("Every model also takes net, schedule, loss, optim (AdamW, EMA, label dropout), sampling (steps, "
                 "sampler, eta, guidance_scale, seed, grids) and torch_compile.")
    return "\n".join(lines)


class _Parser(Exception):
    """Carries the parser out of LightningCLI's constructor (``run(parse_only=True)``)."""


def run(args: list[str] | None = None, parse_only: bool = False):
    """Build and run the CLI; ``args`` replaces ``sys.argv[1:]`` (for tests). Returns the LightningCLI, or with
    ``parse_only`` its parser (every subcommand, nothing parsed or run: tests/test_readme.py checks commands)."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_NoTips())
    warnings.filterwarnings("ignore", message=".*treespec.*LeafSpec.*")
    # Resuming is exact through the data module's state (tests/test_lifecycle.py), which this warning cannot see;
    # and a resumed run writes into its own, non-empty checkpoint folder (a new run there is refused instead).
    warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")
    warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
    from .data.datamodule import ImageDataModule
    from .models.base import DiffusionModule

    cli_class, config_saver = _cli_class()
    if parse_only:
        def grab(self, parser, args):
            raise _Parser(parser)

        cli_class = type("ParserOnly", (cli_class,), {"parse_arguments": grab})
    try:
        return cli_class(
            DiffusionModule,
            ImageDataModule,
            subclass_mode_model=True,
            save_config_callback=config_saver,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"exit_on_error": False, **{sub: {"exit_on_error": False} for sub in NEEDS_WEIGHTS + ("fit",)}},
            auto_configure_optimizers=False,
            args=args,
        )
    except _Parser as found:
        return found.args[0]


_REFUSALS = (ValueError, TypeError, OSError, FloatingPointError)


def one_line(err: BaseException) -> str | None:
    """The message of the innermost refusal raised by this package in ``err``'s chain, or None (e.g. a bug)."""
    package = os.path.dirname(os.path.abspath(__file__))
    found, seen = None, set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        tb, ours, last = err.__traceback__, False, ""
        while tb is not None:
            ours = ours or tb.tb_frame.f_code.co_filename.startswith(package)
            last = tb.tb_frame.f_code.co_filename
            tb = tb.tb_next
        if isinstance(err, _REFUSALS) and ours and last.startswith(package):
            found = str(err).strip().splitlines()[0] if str(err).strip() else None
        err = err.__cause__ or err.__context__
    return found


def parse_error(err: BaseException) -> str | None:
    """jsonargparse's error for a bad option, cut to the option and what was expected: one line, no usage dump."""
    if type(err).__name__ != "ArgumentError":
        return None
    lines = [ln for ln in str(err).splitlines() if ln.strip() and "<class 'NoneType'>" not in ln]
    keys, detail, depth = [], None, -1
    for ln in lines:
        indent = len(ln) - len(ln.lstrip())
        key = re.search(r'Parser key "([^"]+)"', ln)
        if key:
            keys = [k for k in keys if k[0] < indent] + [(indent, key[1])]
        elif "class_path" in ln and "Problem with" in ln:
            keys = [k for k in keys if k[0] < indent] + [(indent, "init_args")]
        elif indent > depth and not ln.lstrip().startswith(("Given value", "Does not validate")):
            detail, depth, path = ln.strip().lstrip("- "), indent, [k for i, k in keys if i < indent]
    if detail is None:
        detail, path = (lines[0].strip() if lines else "bad option"), []
    hint = " (see --help for the options)" if "not accepted" in detail or "unrecognized" in detail else ""
    from .io.legacy import current_name

    renamed = re.search(r"Option '([^']+)' is not accepted", detail)
    if renamed and path and path[-1] == "init_args" and current_name(renamed[1]):
        hint = f"; it is now --{'.'.join(path)}.{current_name(renamed[1])}"
    return (f"--{'.'.join(path)}: {detail}" if path else detail) + hint


def main() -> None:
    if sys.argv[1:] in ([], ["-h"], ["--help"]):
        print(OVERVIEW)  # without importing torch or Lightning: under 2 s
        return
    if sys.argv[1:] == ["--version"]:
        from . import __version__

        print(f"ssd {__version__}")
        return
    from .cpu import retain_freed_memory

    retain_freed_memory()  # no page faults on reused activations: faster CPU steps (cpu.py)
    try:
        if sys.argv[1:2] == ["export"]:
            from .cli_folders import export

            export(sys.argv[2:])
        elif sys.argv[1:2] == ["sample"]:
            from .cli_folders import sample

            sample(sys.argv[2:])
        elif sys.argv[1:2] == ["fid"]:
            from .metrics.score import main as fid

            fid(sys.argv[2:])
        else:
            run()
    except SystemExit as exit_:
        if exit_.code is None and type(exit_).__name__ == "SIGTERMException":
            raise SystemExit(143) from None  # Lightning's own SIGTERM stop carries no status
        raise
    except Exception as err:
        from .cli_guards import cannot_write

        message = cannot_write(err) or one_line(err) or parse_error(err)
        if message is None or os.environ.get("SSD_TRACEBACK"):
            raise
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
