"""The Fashion-MNIST model that `make demo` samples beside its own short run (pretrained/ssd_fmnist32): a few MB of
safetensors whose per-tensor checksums verify, holding the demo config's network, that samples the demo's images."""

from pathlib import Path

import torch
import yaml

from scale_space_diffusion import ScaleSpaceDiffusion

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "pretrained" / "ssd_fmnist32"


def test_the_shipped_model_is_small_and_its_card_says_how_it_was_made():
    sizes = {p.name: p.stat().st_size for p in FOLDER.iterdir()}
    assert {"config.json", "model.safetensors", "README.md"} <= set(sizes)
    assert sizes["model.safetensors"] < 8 * 2**20  # a few MB: the EMA weights only
    card = (FOLDER / "README.md").read_text()
    assert "ssd fit --config configs/ssd_fmnist32.yaml" in card and "ssd fid --samples DIR" in card


def test_the_shipped_model_is_the_demo_network_and_samples_images():
    model = ScaleSpaceDiffusion.from_pretrained(FOLDER)  # verifies every tensor's sha256
    demo = yaml.safe_load((ROOT / "configs" / "ssd_fmnist32.yaml").read_text())["model"]["init_args"]
    for key, value in demo["net"]["init_args"].items():
        assert model.net.config[key] == value, key
    assert model.process.ladder.resolutions == [32, 16, 8]
    x = model.generate(2, steps=3, output_type="tensor", progress=False)
    assert x.shape == (2, 1, 32, 32) and torch.isfinite(x).all() and x.std() > 0.1


def test_the_readmes_demo_scores_are_the_committed_records():
    import json

    scores = json.loads((FOLDER / "demo_scores.json").read_text())
    shipped, short = (round(100 * scores[k]["confident_share"]) for k in ("shipped_model", "make_demo_800_steps"))
    readme, card = (ROOT / "README.md").read_text(), (FOLDER / "README.md").read_text()
    assert f"about {shipped} % of" in readme and f"against {short} %" in readme
    assert f"| {shipped} % (" in card and f"| {short} % (" in card
