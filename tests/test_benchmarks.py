"""The benchmark suite end to end on a tiny preset and generated Fashion-MNIST-shaped IDX files."""

import json

import pytest

from benchmarks.__main__ import main
from benchmarks.runs import RUNS

REQUIRED = ["params", "train_gflops_per_image", "sample_gflops_per_image", "train_images_per_s", "sample_images_per_s",
            "fid", "kid", "feature_extractor", "classifier_accuracy", "num_samples", "sampler", "steps", "ema", "seed",
            "train_seconds", "steps_in_ddpm_time", "teacher_gflops", "active_params", "hardware", "preset"]  # fmt: skip


@pytest.fixture(scope="module")
def smoke(fmnist_idx, tmp_path_factory):
    out, cache = tmp_path_factory.mktemp("bench"), tmp_path_factory.mktemp("bench_cache")
    data = ["--idx-dir", str(fmnist_idx), "--data-cache-dir", str(cache / "data"), "--cache-dir", str(cache)]
    main(["--preset", "smoke", "--out", str(out), *data])
    return out, data


def test_smoke_preset_writes_every_record_and_plot(smoke):
    out, _ = smoke
    results = json.loads((out / "results.json").read_text())
    assert [r["run"] for r in results["runs"]] == list(RUNS)
    for r in results["runs"]:
        missing = [k for k in REQUIRED if k not in r]
        assert not missing, f"{r['run']} lacks {missing}"
        assert r["feature_extractor"] == "FID (fmnist-classifier features)" and r["ema"] and r["low_sample"]
        assert r["sample_gflops_traced"] == r["sample_gflops_per_image"] > 0
        assert {"cpu_model", "cpu_cores", "torch"} <= set(r["hardware"])
        assert len(list((out / r["run"] / "samples").glob("0*.png"))) == r["num_samples"] == 8
        assert (out / r["run"] / "model.ckpt").is_file()
    by_run = {r["run"]: r for r in results["runs"]}
    assert by_run["sd_distilled"]["teacher_gflops"] > 0 == by_run["sd_plain"]["teacher_gflops"]
    assert by_run["ddpm"]["steps_in_ddpm_time"] == by_run["ddpm"]["train_steps"]
    for plot in ("fid_vs_sample_gflops.png", "samples_side_by_side.png", "ssd_ladder.png"):
        assert (out / plot).stat().st_size > 1000
    md = (out / "results.md").read_text()
    assert "Low-sample run" in md and "EMA" in md and all(f"`{name}`" in md for name in RUNS)


def test_checkpoints_are_reused_and_the_teacher_found(smoke, tmp_path):
    out, data = smoke
    ddpm = out / "ddpm" / "model.ckpt"
    main(["--preset", "smoke", "--out", str(tmp_path), "--only", "ddpm", "sd_distilled", "--ckpt", f"ddpm={ddpm}", *data])
    runs = {r["run"]: r for r in json.loads((tmp_path / "results.json").read_text())["runs"]}
    assert not runs["ddpm"]["trained_here"] and runs["ddpm"]["train_seconds"] is None
    assert runs["ddpm"]["train_steps"] == 2 and runs["ddpm"]["train_images_per_s"] > 0
    assert runs["sd_distilled"]["trained_here"] and runs["sd_distilled"]["teacher_gflops"] > 0


def test_distillation_without_a_teacher_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="ddpm"):
        main(["--preset", "smoke", "--out", str(tmp_path), "--only", "sd_distilled"])


def test_hierarchy_analysis(fmnist_idx, tmp_path):
    main(["--idx-dir", str(fmnist_idx), "--data-cache-dir", str(tmp_path / "data"), "hierarchy", "--out", str(tmp_path)])
    curves = json.loads((tmp_path / "hierarchy.json").read_text())
    freq = curves["frequencies"]
    assert len(freq) == 1000 and freq[0] > 0.5 > freq[-1]  # signal dominates at t = 0, noise at t = T-1
    assert curves["ladder_convex"][0] == 1 and curves["ladder_convex"][-1] == 1 / 16
    assert (tmp_path / "hierarchy.png").is_file() and "r^2/R^2" in (tmp_path / "hierarchy.md").read_text()


@pytest.mark.slow
def test_scaling_analysis_at_64px(tmp_path):
    main(["scaling", "--sizes", "64", "--out", str(tmp_path)])
    rows = json.loads((tmp_path / "scaling.json").read_text())["rows"]
    ddpm = next(r for r in rows if r["layout"] == "full" and r["levels"] == 1)
    ssd4 = next(r for r in rows if r["layout"] == "official" and r["levels"] == 4 and r["schedule"] == "convex")
    assert ddpm["sample_vs_ddpm"] == 1 and ssd4["sample_vs_ddpm"] < 0.7
    assert round(ssd4["params"] / 1e6, 2) == 92.26  # the released 64px 4L net
    assert (tmp_path / "scaling.png").is_file()
