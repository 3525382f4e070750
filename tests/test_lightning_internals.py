"""Each private Lightning or torch detail in scale_space_diffusion.lightning_internals, checked against the installed
version: if an upgrade changes one, its test fails here rather than a run going wrong later."""

import inspect
import sys

import lightning as L
import pytest
import torch
from lightning.pytorch.cli import LightningCLI
from torch.utils.data import DataLoader, TensorDataset

from scale_space_diffusion import lightning_internals as li
from scale_space_diffusion.diffusion.schedule import NoiseSchedule
from scale_space_diffusion.models.ddpm import DDPM
from scale_space_diffusion.models.settings import Optimization, Sampling
from scale_space_diffusion.networks.unet import UNet


def tiny() -> DDPM:
    net = UNet(16, 1, None, 8, (1, 2), 1, (), 2)
    return DDPM(net, NoiseSchedule(timesteps=100), optim=Optimization(ema_decay=None), sampling=Sampling(grid_size=0))


def test_attached_trainer_is_none_where_the_public_property_raises():
    model = tiny()
    assert li.attached_trainer(model) is None
    with pytest.raises(RuntimeError, match="not attached to a `Trainer`"):
        model.trainer  # noqa: B018  (the reason for the helper)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, accelerator="cpu")
    model.trainer = trainer
    assert li.attached_trainer(model) is trainer


def test_batches_trained_counts_every_processed_batch_of_the_fit_and_epoch_batches_follows_the_limit():
    seen = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append((batch_idx, li.batches_trained(trainer)))

    data = TensorDataset(torch.rand(12, 1, 16, 16) * 2 - 1, torch.zeros(12, dtype=torch.long))
    trainer = L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[Record()], accelerator="cpu")  # fmt: skip
    trainer.fit(tiny(), DataLoader(data, batch_size=4))
    assert seen == [(i, e * 3 + i + 1) for e in range(2) for i in range(3)]
    for limit in (2, 0.5):  # epoch_batches repeats Lightning's count
        limited = L.Trainer(max_epochs=1, limit_train_batches=limit, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")  # fmt: skip
        limited.fit(tiny(), DataLoader(data, batch_size=4))
        assert limited.num_training_batches == li.epoch_batches(3, limit)


def test_is_compiled_follows_module_compile_and_the_compiled_call_can_be_wrapped():
    net = tiny().net
    assert not li.is_compiled(net)
    net.compile()  # lazy: nothing is compiled until the first call
    assert li.is_compiled(net)
    li.wrap_compiled_call(net, lambda call: lambda *args, **kwargs: ("wrapped", call))
    assert net(torch.zeros(1, 1, 16, 16), torch.zeros(1, dtype=torch.long))[0] == "wrapped"  # torch calls it


def test_lightning_cli_merges_checkpoint_hyperparameters_through_the_hook_we_replace(monkeypatch):
    assert callable(getattr(LightningCLI, li.CLI_CKPT_HPARAMS_HOOK))
    assert f"self.{li.CLI_CKPT_HPARAMS_HOOK}()" in inspect.getsource(LightningCLI.__init__)
    calls = []

    class Probe(LightningCLI):
        pass

    li.replace_checkpoint_merge(Probe, lambda self: calls.append(True))
    monkeypatch.setattr(sys, "argv", ["ssd"])
    Probe(L.LightningModule, run=False, args=[], save_config_callback=None)
    assert calls == [True]


def test_model_summary_internals_are_what_the_quiet_summary_reads():
    from lightning.pytorch.callbacks import ModelSummary

    assert li.summary_depth(ModelSummary(max_depth=3)) == 3
    table = li.summary_table(10, 4, 0.1, {"train": 2, "eval": 0}, 0, ("Name", ["net"]), ("FLOPs", ["0"]))
    assert table.splitlines()[-1].endswith("Total Flops") and "FLOPs" in table.splitlines()[0]


def test_fit_logs_a_summary_without_flops(caplog):
    import logging

    caplog.set_level(logging.INFO)
    data = TensorDataset(torch.rand(4, 1, 16, 16) * 2 - 1, torch.zeros(4, dtype=torch.long))
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        accelerator="cpu")  # fmt: skip
    trainer.fit(tiny(), DataLoader(data, batch_size=4))
    summary = next(r.getMessage() for r in caplog.records if "Trainable params" in r.getMessage())
    assert "net" in summary and "Flops" not in summary and "FLOPs" not in summary
