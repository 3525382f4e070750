"""save_pretrained / from_pretrained folders (no pickle, plain JSON, class checks, clear errors, the Hub calls) and
generate() (seeded per image, batch-independent, output types, per-call overrides that never leak)."""

import dataclasses
import json
import tomllib

import numpy as np
import pytest
import torch
from safetensors import safe_open

from conftest import ROOT

from scale_space_diffusion.diffusion.rng import image_noise
from scale_space_diffusion.diffusion.schedule import NoiseSchedule
from scale_space_diffusion.models.base import DiffusionModule
from scale_space_diffusion.models.ddpm import DDPM
from scale_space_diffusion.models.settings import Optimization, Sampling
from scale_space_diffusion.models.ssd import ScaleSpaceDiffusion
from scale_space_diffusion.networks.unet import UNet

NET = dict(image_size=16, in_channels=1, model_channels=8, channel_mult=(1, 2), num_res_blocks=1,
           attention_resolutions=(), num_heads=2)  # fmt: skip


def ddpm(channels=1, num_classes=None, ema=None, **sampling) -> DDPM:
    torch.manual_seed(0)
    net = UNet(**{**NET, "in_channels": channels}, num_classes=num_classes, null_class=num_classes is not None)
    for p in net.parameters():  # an untrained net outputs ~0; random weights make differences visible
        torch.nn.init.normal_(p, std=0.1)
    optim = Optimization(ema_decay=ema, cond_drop_prob=0.1 if num_classes else 0.0)
    return DDPM(net, NoiseSchedule(timesteps=30), optim=optim, sampling=Sampling(steps=3, **sampling)).eval()


def images(model, n=3):
    return model.sample(image_noise(0, range(n)), model.sample_labels(torch.arange(n)))


# -- the folder ------------------------------------------------------------------------------
def test_the_folder_is_plain_json_and_safetensors_and_loads_back_sampling_the_same(tmp_path):
    model = ddpm(num_classes=3)
    assert model.save_pretrained(tmp_path / "m") == tmp_path / "m"
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((tmp_path / "m/config.json").read_text())
    assert config["model_class_path"] == "scale_space_diffusion.models.ddpm.DDPM" and config["weights"] == "raw"
    assert config["net_config"] == json.loads(json.dumps(model.net.config))
    assert config["hparams"]["sampling"]["steps"] == 3 and config["hparams"]["schedule"]["timesteps"] == 30
    with safe_open(tmp_path / "m/model.safetensors", "pt") as f:
        assert set(f.keys()) == {f"net.{k}" for k in model.net.state_dict()}
    loaded = DiffusionModule.from_pretrained(tmp_path / "m")
    assert type(loaded) is DDPM and not loaded.training and loaded.sampling == model.sampling
    assert torch.equal(images(loaded), images(model))


def test_ema_weights_are_the_ones_sampled_with_and_raw_is_recorded_when_the_ema_has_not_started(tmp_path):
    model = ddpm(ema=0.5)
    model.save_pretrained(tmp_path / "fresh")  # EMA configured but never updated: it samples with the raw net
    assert json.loads((tmp_path / "fresh/config.json").read_text())["weights"] == "raw"
    with torch.no_grad():
        model.net_ema.update(model.net)
        for p in model.net.parameters():
            p.add_(0.05)
    model.save_pretrained(tmp_path / "ema")
    model.save_pretrained(tmp_path / "raw", weights="raw")
    ema, raw = DDPM.from_pretrained(tmp_path / "ema"), DDPM.from_pretrained(tmp_path / "raw")
    assert json.loads((tmp_path / "ema/config.json").read_text())["weights"] == "ema"
    assert torch.equal(images(ema), images(model)) and not torch.equal(images(raw), images(model))
    model.net_ema = None  # sample with the raw weights
    assert torch.equal(images(raw), images(model))
    with pytest.raises(ValueError, match="weights='best' must be 'ema'"):
        model.save_pretrained(tmp_path / "x", weights="best")


def test_a_model_class_refuses_another_models_folder_and_overrides_replace_settings(tmp_path):
    ddpm().save_pretrained(tmp_path)
    with pytest.raises(TypeError, match="holds a DDPM, not a ScaleSpaceDiffusion; use DDPM.from_pretrained"):
        ScaleSpaceDiffusion.from_pretrained(tmp_path)
    assert DDPM.from_pretrained(tmp_path, sampling=Sampling(steps=2)).sampling.steps == 2
    assert DDPM.from_pretrained(tmp_path, sampling={"steps": 5}).sampling.steps == 5
    with pytest.raises(TypeError, match=r"DDPM has no setting \['sampler'\]"):
        DDPM.from_pretrained(tmp_path, sampler="ddim")


def test_bad_sources_fail_with_one_line_naming_them_and_the_fix(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.ckpt").write_bytes(b"x")
    for source, err, match in [
        (tmp_path / "empty", FileNotFoundError, "holds no config.json; pass a folder written by save_pretrained"),
        (tmp_path / "file.ckpt", NotADirectoryError, "is a file; pass a folder written by save_pretrained.*a .ckpt loads with load_model"),
        (str(tmp_path / "no" / "such" / "dir"), FileNotFoundError, "neither a folder nor a Hugging Face Hub id"),
    ]:  # fmt: skip
        with pytest.raises(err, match=match):
            DiffusionModule.from_pretrained(source)
    (tmp_path / "empty/config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        DiffusionModule.from_pretrained(tmp_path / "empty")


def test_a_hub_id_goes_through_snapshot_download_and_offline_fails_in_one_line(tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(OSError) as err:
        DiffusionModule.from_pretrained("someone/tiny-ssd")
    message = str(err.value)
    assert "\n" not in message and "'someone/tiny-ssd' is no local folder" in message
    assert "check the id and the connection" in message and "pass a folder written by save_pretrained" in message

    ddpm().save_pretrained(tmp_path / "snapshot")
    seen = {}

    def snapshot_download(repo_id, revision=None, allow_patterns=None):
        seen.update(repo_id=repo_id, revision=revision, allow_patterns=allow_patterns)
        return str(tmp_path / "snapshot")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    assert type(DDPM.from_pretrained("someone/tiny-ddpm", revision="v1")) is DDPM
    assert seen == {"repo_id": "someone/tiny-ddpm", "revision": "v1",
                    "allow_patterns": ["config.json", "model.safetensors", "README.md"]}  # never a pickle  # fmt: skip


def test_push_to_hub_uploads_the_folder_through_hfapi(tmp_path, monkeypatch):
    import huggingface_hub

    calls = []

    class RecordingApi:
        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id, kwargs))

        def upload_folder(self, **kwargs):
            calls.append(("upload_folder", kwargs))

    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    ddpm().save_pretrained(tmp_path, push_to_hub=True, repo_id="me/tiny-ddpm")
    assert calls[0] == ("create_repo", "me/tiny-ddpm", {"exist_ok": True})
    name, upload = calls[1]
    assert name == "upload_folder" and upload["repo_id"] == "me/tiny-ddpm" and upload["folder_path"] == str(tmp_path)
    assert upload["allow_patterns"] == ["config.json", "model.safetensors", "README.md"]
    assert 'from_pretrained("me/tiny-ddpm")' in (tmp_path / "README.md").read_text()
    with pytest.raises(ValueError, match="push_to_hub=True needs repo_id='owner/name'"):
        ddpm().save_pretrained(tmp_path, push_to_hub=True)
    with pytest.raises(ValueError, match="repo_id='me/x' is only used with push_to_hub=True"):
        ddpm().save_pretrained(tmp_path, repo_id="me/x")
    assert len(calls) == 2


# -- generate -----------------------------------------------------------------------------------
def test_generate_is_seeded_per_image_whatever_the_batch_size():
    model = ddpm(num_classes=3)
    first = model.generate(5, seed=0, output_type="tensor", progress=False)
    assert torch.equal(first, model.generate(5, seed=0, output_type="tensor", progress=False))
    for batch_size in (1, 2):  # the same noise; the batched CPU kernels differ by float rounding alone (~1e-7)
        rebatched = model.generate(5, seed=0, output_type="tensor", batch_size=batch_size, progress=False)
        torch.testing.assert_close(rebatched, first, rtol=0, atol=1e-4)
    assert torch.equal(first, images(model, 5))  # the per-sample generators and balanced labels of sample()
    assert not torch.equal(first, model.generate(5, seed=1, output_type="tensor", progress=False))
    assert torch.equal(model.generate(2, labels=1, output_type="tensor", progress=False),
                       model.sample(image_noise(0, range(2)), torch.tensor([1, 1])))  # fmt: skip


def test_generate_output_types():
    gray, rgb = ddpm(), ddpm(channels=3)
    pil = gray.generate(3, progress=False)
    assert len(pil) == 3 and {(im.mode, im.size) for im in pil} == {("L", (16, 16))}
    assert {im.mode for im in rgb.generate(2, progress=False)} == {"RGB"}
    x = rgb.generate(2, output_type="tensor", progress=False)
    assert x.shape == (2, 3, 16, 16) and x.dtype == torch.float32 and -1 <= x.min() and x.max() <= 1
    u = rgb.generate(2, output_type="uint8", progress=False)
    assert u.dtype == torch.uint8 and u.shape == (2, 3, 16, 16)
    assert torch.equal(torch.from_numpy(np.array(rgb.generate(2, progress=False)[1])),
                       u[1].permute(1, 2, 0))  # fmt: skip
    with pytest.raises(ValueError, match="output_type='np' must be"):
        gray.generate(1, output_type="np")


def test_generate_overrides_act_for_the_call_only_and_modes_are_restored():
    model = ddpm(num_classes=3).train()
    before, seen = model.sampling, []
    model.net.register_forward_pre_hook(lambda m, args: seen.append((m.training, torch.is_grad_enabled())))
    ddim = model.generate(2, sampler="ddim", eta=0.0, guidance_scale=2.0, output_type="tensor", progress=False)
    assert model.sampling is before and model.training and set(seen) == {(False, False)}
    options = dataclasses.replace(before, sampler="ddim", eta=0.0, guidance_scale=2.0)
    with torch.no_grad():
        direct = model.eval().sample(image_noise(0, range(2)), model.sample_labels(torch.arange(2)), sampling=options)
    assert torch.equal(ddim, direct.clamp(-1, 1)) and model.sampling is before
    model.train()
    with pytest.raises(ValueError, match=r"sampling.eta=2 must be in \[0, 1\]"):
        model.generate(1, sampler="ddim", eta=2)
    with pytest.raises(ValueError, match="eta=0.5 only acts with the DDIM sampler"):
        model.generate(1, eta=0.5)
    with pytest.raises(ValueError, match="guidance_scale=3.0 / cond_drop_prob=0.0 need a class-conditional net"):
        ddpm().train().generate(1, guidance_scale=3.0)
    assert model.sampling is before and model.training


def test_generate_refuses_bad_labels_and_counts():
    with pytest.raises(ValueError, match="labels were given but this model is unconditional"):
        ddpm().generate(2, labels=0)
    with pytest.raises(ValueError, match="got 3 labels for num_images=2"):
        ddpm(num_classes=3).generate(2, labels=[0, 1, 2])
    with pytest.raises(ValueError, match=r"label 7 is not a class of this model \(0..2\)"):
        ddpm(num_classes=3).generate(2, labels=7)
    with pytest.raises(ValueError, match="steps=50 must be in 1..30"):
        ddpm().generate(1, steps=50)


def test_the_package_ships_py_typed():
    assert (ROOT / "scale_space_diffusion/py.typed").is_file()
    assert "py.typed" in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "scale_space_diffusion"]  # fmt: skip
