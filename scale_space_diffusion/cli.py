"""``ssd`` / ``python -m scale_space_diffusion``: LightningCLI with fit, validate, test and predict.

    ssd fit --config configs/ssd_fmnist32.yaml
    ssd predict --config configs/ssd_fmnist32.yaml --ckpt_path last
"""

from __future__ import annotations

import logging
import os
import warnings

os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")


class _NoTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in str(record.msg)


def _cli_class():
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.cli import LightningCLI

    from .callbacks import InterruptCheckpoint, SampleWriter

    class DiffusionCLI(LightningCLI):
        def add_arguments_to_parser(self, parser):
            parser.add_lightning_class_args(SampleWriter, "sample_writer")
            parser.add_lightning_class_args(InterruptCheckpoint, "interrupt_checkpoint")
            parser.add_argument(
                "--random_weights", type=bool, default=False,
                help="allow test/predict without a checkpoint (samples from an untrained model)",
            )  # fmt: skip

        def _require_weights(self, subcommand: str) -> None:
            cfg = self.config[subcommand]
            if cfg.get("random_weights") or getattr(self.model, "pretrained", False):
                return
            ckpt = cfg.get("ckpt_path")
            if ckpt is None:
                raise SystemExit(
                    f"error: `{subcommand}` without --ckpt_path would use an untrained model. Pass "
                    "--ckpt_path=<file.ckpt> (or 'last' with the training config), an official checkpoint "
                    "(--model.official_checkpoint=...), or --random_weights=true."
                )
            if ckpt == "last":
                dirs = [cb.dirpath for cb in self.trainer.callbacks if isinstance(cb, ModelCheckpoint) and cb.dirpath]
                if not any(os.path.isdir(d) and any(f.endswith(".ckpt") for f in os.listdir(d)) for d in dirs):
                    raise SystemExit(
                        f"error: --ckpt_path=last found no checkpoint in {dirs or 'the config (no ModelCheckpoint dirpath)'}; "
                        "run `fit` with this config first or pass a checkpoint file"
                    )
            elif not os.path.isfile(ckpt):
                raise SystemExit(
                    f"error: checkpoint {ckpt!r} does not exist; pass an existing .ckpt file, or --ckpt_path=last "
                    "with the training config"
                )

        def _parse_ckpt_path(self) -> None:
            """Lightning's, plus: refuse a checkpoint of another model class, and read ones saved from Python."""
            sub = self.config.get("subcommand")
            ckpt_path = self.config[sub].get("ckpt_path") if sub else None
            if not ckpt_path or not os.path.isfile(ckpt_path):
                return
            import torch

            ckpt = torch.load(ckpt_path, weights_only=True, map_location="cpu", mmap=True)
            saved, model = ckpt.get("model_class"), self.config[sub].get("model")
            want = getattr(model, "class_path", None)
            if saved and want and want.rsplit(".", 1)[-1] != saved:
                raise SystemExit(
                    f"error: --ckpt_path={ckpt_path} holds a {saved}, but the config's model is {want}; pass the "
                    f"config it was trained with, or --model={saved}"
                )
            hparams = dict(ckpt.get("hyper_parameters", {}))
            hparams.pop("_instantiator", None)
            class_path = hparams.pop("_class_path", None) or ckpt.get("model_class_path")
            if hparams and class_path:  # the checkpoint's hyperparameters override the config's, as in Lightning
                model = {"class_path": class_path, "dict_kwargs": hparams}
                self.config = self.parser.parse_object({sub: {"model": model}}, self.config)

        def before_test(self):
            self._require_weights("test")

        def before_predict(self):
            self._require_weights("predict")

    return DiffusionCLI


def run(args: list[str] | None = None):
    """Build and run the CLI; ``args`` replaces ``sys.argv[1:]`` (for tests). Returns the LightningCLI."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_NoTips())
    warnings.filterwarnings("ignore", message=".*treespec.*LeafSpec.*")
    # Our data order resumes through the data module's state (EpochSampler), which this warning does not see.
    warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")
    from .data import ImageDataModule
    from .models.base import DiffusionModule

    return _cli_class()(
        DiffusionModule,
        ImageDataModule,
        subclass_mode_model=True,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
        args=args,
    )


def main() -> None:
    run()


if __name__ == "__main__":
    main()
