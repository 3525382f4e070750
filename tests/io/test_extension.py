"""Issue 26 item 4: a network and a model defined outside the package (tests/io/extension_classes.py) train, save,
load with load_model, export and come back through from_pretrained; a file naming a module that is not imported is
refused without importing it, unless the caller trusts it; the CLI takes a model's run settings from its class."""

import json
import sys
import types

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from extension_classes import TinyModel, TinyNet, tiny
from scale_space_diffusion.diffusion.rng import image_noise
from scale_space_diffusion.io import AtomicCheckpointIO, export_checkpoint, from_pretrained, load_model
from scale_space_diffusion.io.checkpoints import merged_model
from scale_space_diffusion.models.base import DiffusionModule
from scale_space_diffusion.models.ddpm import DDPM


def fit(model, path, steps: int = 2) -> str:
    """``steps`` optimizer steps through a Trainer with our checkpoint IO (the EMA starts after the first)."""
    data = TensorDataset(torch.rand(8, 1, 8, 8) * 2 - 1, torch.zeros(8, dtype=torch.long))
    trainer = L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, accelerator="cpu",
                        plugins=[AtomicCheckpointIO()])  # fmt: skip
    trainer.fit(model, DataLoader(data, batch_size=4))
    trainer.save_checkpoint(path)
    return str(path)


def images(model):
    return model.sample(image_noise(0, torch.arange(2)))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model = tiny()
    path = fit(model, tmp_path_factory.mktemp("ext") / "tiny.ckpt")
    return path, model


def test_a_model_and_network_of_our_own_round_trip_through_checkpoint_export_and_from_pretrained(checkpoint, tmp_path):
    path, trained = checkpoint
    saved = torch.load(path, weights_only=True)
    assert saved["model_class_path"] == "extension_classes.TinyModel" and saved["net_class_path"] == "extension_classes.TinyNet"
    loaded = load_model(path)  # the test imported extension_classes: the classes resolve from sys.modules
    assert type(loaded) is TinyModel and type(loaded.net) is TinyNet
    assert loaded.net_ema.updates == trained.net_ema.updates > 0 and loaded.weights_used == "EMA"
    for key, value in trained.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)
    trained.eval()
    assert torch.equal(images(loaded), images(trained))
    folder = export_checkpoint(path, tmp_path / "export")
    assert json.loads((folder / "config.json").read_text())["net_class_path"] == "extension_classes.TinyNet"
    back = DiffusionModule.from_pretrained(folder)
    assert type(back) is TinyModel and torch.equal(images(back), images(loaded))
    assert type(TinyModel.from_pretrained(folder)) is TinyModel
    with pytest.raises(TypeError, match="holds a TinyModel, not a DDPM"):
        DDPM.from_pretrained(folder)


def untrusted_module(tmp_path, monkeypatch, name: str) -> types.SimpleNamespace:
    """A module on sys.path that, if imported, leaves a marker file (and offers TinyNet under its own name)."""
    marker = tmp_path / f"{name}.imported"
    (tmp_path / f"{name}.py").write_text(f"open({str(marker)!r}, 'w').close()\nfrom extension_classes import TinyNet as Net\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return types.SimpleNamespace(marker=marker, path=f"{name}.Net")


def test_a_checkpoint_naming_a_module_not_imported_is_refused_without_importing_it(checkpoint, tmp_path, monkeypatch):
    path, _ = checkpoint
    module = untrusted_module(tmp_path, monkeypatch, "not_imported_net_3e5")
    ckpt = torch.load(path, weights_only=True)
    ckpt["net_class_path"] = module.path
    ckpt.pop("tensor_sha256")
    torch.save(ckpt, tmp_path / "foreign.ckpt")
    with pytest.raises(ValueError) as err:
        load_model(tmp_path / "foreign.ckpt")
    message = str(err.value)
    assert "not_imported_net_3e5" in message and "is not imported" in message and "\n" not in message
    assert "trust_remote_code=True" in message and "net_class=Net" in message
    assert "not_imported_net_3e5" not in sys.modules and not module.marker.exists()
    assert type(load_model(tmp_path / "foreign.ckpt", net_class=TinyNet).net) is TinyNet  # passed in: no import
    assert "not_imported_net_3e5" not in sys.modules and not module.marker.exists()
    trusted = load_model(tmp_path / "foreign.ckpt", trust_remote_code=True)  # the opt-in imports it
    assert module.marker.exists() and type(trusted.net).__name__ == "TinyNet"


def test_an_export_naming_a_module_not_imported_is_refused_without_importing_it(checkpoint, tmp_path, monkeypatch):
    path, _ = checkpoint
    module = untrusted_module(tmp_path, monkeypatch, "not_imported_net_7a1")
    folder = export_checkpoint(path, tmp_path / "export")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "net_class_path": module.path}))
    with pytest.raises(ValueError, match=r"not_imported_net_7a1.*is not imported.*trust_remote_code=True"):
        from_pretrained(folder)
    assert "not_imported_net_7a1" not in sys.modules and not module.marker.exists()
    assert type(from_pretrained(folder, trust_remote_code=True).net).__name__ == "TinyNet" and module.marker.exists()


def test_refusals_are_about_the_contract_not_the_module_name(checkpoint, tmp_path):
    path, _ = checkpoint
    ckpt = torch.load(path, weights_only=True)
    ckpt.pop("tensor_sha256")
    for key, target, match in [("net_class_path", "subprocess.Popen", "not a subclass of Module"),
                               ("model_class_path", "extension_classes.TinyNet", "not a subclass of DiffusionModule"),
                               ("net_class_path", "extension_classes.Missing", "cannot be found")]:  # fmt: skip
        torch.save({**ckpt, key: target}, tmp_path / "bad.ckpt")
        with pytest.raises((TypeError, ValueError), match=match):
            load_model(tmp_path / "bad.ckpt")


def test_the_command_line_takes_run_settings_from_the_model_class(checkpoint):
    """``blur`` is TinyModel's own run setting: the config wins for it, as for optim; the net comes from the file."""
    path, _ = checkpoint
    given = types.SimpleNamespace(class_path="extension_classes.TinyModel",
                                  init_args={"blur": 0.5, "optim": {"lr": 1e-5, "ema_decay": 0.5}, "net": {"class_path": "extension_classes.TinyNet", "init_args": {"hidden": 4}}})  # fmt: skip
    model, notes = merged_model(path, given, argv=[])
    assert model["init_args"]["blur"] == 0.5 and model["init_args"]["optim"]["lr"] == 1e-5
    assert model["init_args"]["net"]["init_args"] == {"image_size": 8, "in_channels": 1, "hidden": 4}
    assert "blur: 0.0 -> 0.5" in notes[0]
    given.init_args["net"]["init_args"]["hidden"] = 8  # a definition option: the checkpoint's wins, with a note
    model, notes = merged_model(path, given, argv=[])
    assert model["init_args"]["net"]["init_args"]["hidden"] == 4 and "hidden=4 (the config has 8)" in notes[-1]
