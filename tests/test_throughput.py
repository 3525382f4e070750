"""The throughput benchmark end to end on tiny networks: one repetition, no reference side, no timing asserts."""

import json
import math

from benchmarks.__main__ import main
from benchmarks.speed.throughput import MODELS


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_quick_run_writes_json_and_markdown(tmp_path):
    main(["throughput", "--quick", "--ref", "none", "--out", str(tmp_path), "--name", "smoke", "--threads", "1"])
    res = json.loads((tmp_path / "smoke.json").read_text())
    md = (tmp_path / "smoke.md").read_text()
    assert [c["case"]["model"] for c in res["cases"]] == list(MODELS) and "a" not in res["sides"]
    assert res["load_before"] >= 0 and res["threads"] == 1 and res["hardware"]["cpu_model"]
    for c in res["cases"]:
        jobs = {(j["job"], j["path"]) for j in c["jobs"]}
        assert {("train", p) for p in c["train_paths"]} | {("sample", p) for p in c["sample_paths"]} <= jobs
        assert math.isclose(sum(c["train_paths"].values()), 1.0)
        for j in c["jobs"]:
            assert _positive(j["b_s"]) and j["a_s"] is None and j["speedup"] is None
        s = c["summary"]
        assert _positive(s["train_images_per_s"]["b"]) and _positive(s["sample_s_per_image"]["b_s"])
        assert _positive(s["ladder_e2e_s_per_image"]["b_s"])
        assert _positive(c["flops"]["train_total"]) and _positive(c["flops"]["sample_total"])
    ssd = next(c for c in res["cases"] if c["case"]["model"] == "ssd")
    assert len(ssd["train_paths"]) > 1 and _positive(ssd["summary"]["train_vs_1_level"]["flops"])
    assert "## Whole ladder" in md and "SSD (flexi)" in md and "SD student" in md


def test_profile_step_splits_a_training_step_into_categories(tmp_path, monkeypatch):
    from benchmarks.speed import step_profile as module
    from benchmarks.speed.step_profile import CATEGORIES, category, profile_step, step_flops

    monkeypatch.setattr(module, "native_cpu_bf16", lambda: False)  # small bf16 ceilings, as on a CPU emulating bf16

    assert category("aten::mkldnn_convolution") == "convolution" and category("aten::mm") == "matmul"
    assert category("aten::_to_copy") == "dtype casts and copies" and category("aten::silu") == "elementwise and other"
    ms = profile_step("tiny", "ssd", "8->8", [], iters=1)
    assert ms["convolution"] > 0 and ms["optimizer"] > 0 and all(v >= 0 for v in ms.values())
    assert sum(v for k, v in ms.items() if k != "step") <= 1.5 * ms["step"]  # self times do not double count
    out = tmp_path / "profile.md"
    main(["profile", "--config", "tiny", "--model", "ddpm", "--path", "16->16", "--iters", "1", "--threads", "1",
          "--out", str(out)])  # fmt: skip
    md = out.read_text()
    assert all(f"| {name} |" in md for name, _ in CATEGORIES) and "Amdahl" in md and "**step (wall-clock)**" in md
    assert "% of fp32 ceiling" in md and "conv3x3" in md and "oneDNN emulates bf16, measured at 256x256" in md
    flops = step_flops("tiny", "ddpm", "16->16")
    # tiny attends over 8 x 8 = 64 tokens: explicit matmuls (networks/attention.py), counted as matmul, not SDPA
    assert flops["convolution"] > 0 and flops["matmul"] > 0 and flops["attention"] == 0


def test_ab_against_a_git_revision_builds_the_same_networks(tmp_path):
    main(["throughput", "--quick", "--ref", "HEAD", "--models", "ddpm", "--out", str(tmp_path), "--name", "ab", "--threads", "1"])
    res = json.loads((tmp_path / "ab.json").read_text())
    assert res["sides"]["a"]["rev"] == "HEAD" and "ssd-throughput-" in res["sides"]["a"]["source"]
    (case,) = res["cases"]
    assert case["max_abs_diff"] and max(case["max_abs_diff"].values()) < 1e-5  # same weights, same outputs
    assert all(_positive(j["a_s"]) and _positive(j["speedup"]) for j in case["jobs"])
    assert "**" in (tmp_path / "ab.md").read_text()  # the paired speed-ups are printed


def test_a_bad_revision_or_option_is_refused_before_any_worker_starts(capsys):
    import pytest

    with pytest.raises(SystemExit, match="--ref 'no-such-rev' is not a commit of this checkout"):
        main(["throughput", "--quick", "--ref", "no-such-rev"])
    with pytest.raises(SystemExit):
        main(["throughput", "--quick", "--ref", "none", "--options", "bf16,bf17"])
    assert "unknown options ['bf17']; use bf16, channels_last, compile, malloc" in capsys.readouterr().err
