"""Parity with the authors' released code, recorded in tests/fixtures/official_ssd (see its README)."""

import pytest
import torch

from conftest import ROOT

from scale_space_diffusion.models.settings import Optimization
from scale_space_diffusion.networks import official
from scale_space_diffusion.models.ssd import ScaleSpaceDiffusion
from scale_space_diffusion.networks.flexi_unet import FlexiUNet

FIXTURE = ROOT / "tests/fixtures/official_ssd/official_ssd_tiny.pt"  # a copy, with its README


@pytest.fixture(scope="module")
def fx():
    return torch.load(FIXTURE, weights_only=True)


@pytest.fixture(scope="module")
def model(fx):
    cfg = fx["config"]
    net = FlexiUNet(cfg["image_size"], 3, None, cfg["model_channels"], cfg["channel_mult"], cfg["num_res_blocks"],
                    (16,), cfg["num_heads"], layout="official")  # fmt: skip
    net.load_state_dict(official.to_ours(fx["state_dict"], net))
    return ScaleSpaceDiffusion(net, num_levels=cfg["num_levels"], optim=Optimization(ema_decay=None)).eval()


def test_infer_config_reads_the_architecture(fx):
    cfg = official.infer_config(fx["state_dict"], "ssd_32res_toy_3levels_ema_0.9999_1.pt")
    assert cfg["channel_mult"] == (1, 2, 2) and cfg["num_res_blocks"] == 1 and cfg["model_channels"] == 32
    assert cfg["image_size"] == 32 and cfg["num_levels"] == 3


def test_network_cases(fx, model):
    paths = {f"in{r}_out{r}" for r in fx["resolutions"]} | {"in8_out16", "in16_out32"}  # every level, every transition
    assert set(fx["network_cases"]) == paths, "the fixture must hold a case for every network path"
    for name, case in fx["network_cases"].items():
        with torch.no_grad():
            y = model.net(case["x"], case["t"], out_res=case["y"].shape[-1])
        torch.testing.assert_close(y, case["y"], rtol=0, atol=1e-5, msg=name)


def test_ladder(fx, model):
    assert model.process.ladder.t2res == fx["t2res"]
    assert model.process.ladder.transitions == fx["transitions"]
    torch.testing.assert_close(model.process.schedule.betas, fx["betas"].double())


def test_posterior_means(fx, model):
    proc = model.process
    assert {str(t) for t in fx["transitions"]} <= set(fx["posterior_cases"]), "a case at every transition"
    assert any(proc.ladder.res(int(t)) == proc.ladder.res(int(t) - 1) for t in fx["posterior_cases"]), "and within a level"
    for t, case in fx["posterior_cases"].items():
        t = int(t)
        assert (proc.ladder.res(t), proc.ladder.res(t - 1)) == (case["rt"], case["rs"])
        torch.testing.assert_close(proc.degrade(fx["x0"], case["rt"]), case["x0_rt"], rtol=0, atol=1e-5)
        mean = proc.posterior_mean(case["xt"], case["x0_rs"], t)
        torch.testing.assert_close(mean, case["posterior_mean"], rtol=0, atol=1e-5)


def test_losses(fx, model):
    assert len({model.process.ladder.res(int(t)) for t in fx["loss_cases"]}) >= 2, "cases at two resolutions at least"
    for t, case in fx["loss_cases"].items():
        t = torch.full((2,), int(t))
        with torch.no_grad():
            loss = model.loss_fn(model.raw_network, model.process, fx["x0"], t, case["noise"])
        torch.testing.assert_close(loss, case["loss"], rtol=1e-5, atol=1e-5)


PAPER = {  # file name -> (channel_mult, params in millions as released)
    "ssd_64res_celeba_4levels_ema_0.9999_1000000.pt": ((1, 2, 3, 4), 92.26),
    "ssd_128res_celeba_5levels_ema_0.9999_300000.pt": ((1, 1, 2, 3, 4), 95.23),
    "ssd_256res_celeba_6levels_ema_0.9999_300000.pt": ((1, 1, 2, 2, 4, 4), 124.25),
    "ssd_64res_imagenet_2levels_ema_0.9999_1000000.pt": ((1, 2, 3, 4), 92.26),
}


@pytest.mark.parametrize("filename", PAPER)
def test_paper_sized_round_trip(filename, tmp_path):
    mult, millions = PAPER[filename]
    size = int(filename.split("_")[1].removesuffix("res"))
    net = FlexiUNet(size, 3, None, 128, mult, 2, (16, 8), 4, layout="official")
    assert sum(p.numel() for p in net.parameters()) / 1e6 == pytest.approx(millions, abs=0.01)
    theirs = official.to_official(net.state_dict(), net)
    assert any(k.startswith("output_blocks.") for k in theirs) and "out.2.weight" in theirs
    path = tmp_path / filename
    torch.save(theirs, path)
    state = official.load_official_state(str(path))
    cfg = official.infer_config(state, filename)
    assert (cfg["image_size"], cfg["channel_mult"], cfg["num_res_blocks"]) == (size, mult, 2)
    ours = official.to_ours(state, net)
    assert all(torch.equal(ours[k], v) for k, v in net.state_dict().items())


def test_mismatch_names_the_first_bad_key(fx):
    net = FlexiUNet(32, 3, None, 32, (1, 2, 4), 1, (16,), 2, layout="official")
    with pytest.raises(ValueError, match=r"shape mismatch at '.*': checkpoint"):
        official.to_ours(fx["state_dict"], net)


def test_from_official_builds_loads_and_samples(fx, tmp_path):
    path = tmp_path / "ssd_32res_toy_3levels_ema_0.9999_1.pt"
    torch.save(fx["state_dict"], path)
    model = ScaleSpaceDiffusion.from_official(str(path), num_heads=2, sample_steps=6).eval()
    assert model.pretrained and model.net.layout == "official" and model.process.ladder.transitions == [555, 889]
    case = fx["network_cases"]["in16_out32"]
    with torch.no_grad():
        torch.testing.assert_close(model.net(case["x"], case["t"], out_res=32), case["y"], rtol=0, atol=1e-5)
    images = model.sample([torch.Generator().manual_seed(0)])
    assert images.shape == (1, 3, 32, 32)
