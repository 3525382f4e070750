"""The benchmark suite end to end on a tiny preset and generated Fashion-MNIST-shaped IDX files."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.__main__ import main
from benchmarks.suite.presets import RUNS, SD_ABLATION

REQUIRED = ["fid", "fid_ci95", "kid", "kid_ci95", "kid_std", "num_samples", "sample_gflops_per_image",
            "train_gflops_per_image", "train_images_per_s", "sample_images_per_s", "params", "steps",
            "feature_extractor", "train_seconds", "steps_in_ddpm_time", "teacher_gflops",
            "active_params", "checkpoints", "pareto", "timings", "train_loss_curve"]  # fmt: skip


def ordered(r: dict) -> bool:
    return all(r[f"{k}_ci95"][0] <= r[k] <= r[f"{k}_ci95"][1] for k in ("fid", "kid"))


@pytest.fixture(scope="module")
def smoke(fmnist_idx, tmp_path_factory):
    out, cache = tmp_path_factory.mktemp("bench"), tmp_path_factory.mktemp("bench_cache")
    data = ["--idx-dir", str(fmnist_idx), "--data-cache-dir", str(cache / "data"), "--cache-dir", str(cache)]
    main(["--preset", "smoke", "--out", str(out), *data])
    return out, data


def test_smoke_preset_writes_every_record_and_plot(smoke):
    out, _ = smoke
    results = json.loads((out / "results.json").read_text())
    assert [r["run"] for r in results["runs"]] == list(RUNS) and "ddpm_x0" in RUNS
    for r in results["runs"]:
        missing = [k for k in REQUIRED if k not in r]
        assert not missing, f"{r['run']} lacks {missing}"
        assert r["feature_extractor"] == "FID (fmnist-classifier features)" and r["low_sample"]
        assert ordered(r) and r["kid_std"] >= 0
        assert r["sample_gflops_traced"] == r["sample_gflops_per_image"] > 0
        assert len(list((out / r["run"] / "samples").glob("0*.png"))) == r["num_samples"] == 8
        assert (out / r["run"] / "model.ckpt").is_file() and (out / r["run"] / "grid.png").is_file()
        steps = {c["step"] for c in r["checkpoints"]}
        assert {2, 4} <= steps and all(ordered(c) and c["num_samples"] == 6 for c in r["checkpoints"])
        samplers = {(q["sampler"], q["requested_steps"]) for q in r["pareto"]}
        assert samplers == {("ddim", 4), ("ancestral", 3)} and all(ordered(q) for q in r["pareto"])
        assert len(r["radial_power"]) == 16 and r["blockiness_2x2"] > 0
        fids = {c["sigma_rel"]: c["fid_val"] for c in r["ema_candidates"]}  # chosen on the validation split
        assert set(fids) == {None, 0.1} and fids[r["ema_sigma_rel"]] == min(fids.values())
        saved = torch.load(out / r["run"] / "model.ckpt", map_location="cpu", weights_only=True).get("posthoc_ema")
        assert (saved or {}).get("sigma_rel") == r["ema_sigma_rel"]  # model.ckpt samples and teaches with it
        curve = r["train_loss_curve"]  # every trained step's loss, by windows of 50
        assert len(curve) == -(-r["trained_steps"] // r["train_loss_window"]) and all(0 < v < 1e3 for v in curve)
    refs = {(x["run"], x["num_samples"]) for x in results["reference"]}
    assert refs == {("train_vs_test", 8), ("prior_noise", 8), ("train_vs_test", 6), ("prior_noise", 6)}
    assert all(ordered(x) for x in results["reference"])
    by_run = {r["run"]: r for r in results["runs"]}
    teacher = min((by_run["ddpm"], by_run["ddpm_x0"]), key=lambda r: r["fid"])  # chosen by FID in the same run
    for name in ("sd_distilled", "sd_nogate_distilled"):
        assert by_run[name]["teacher_checkpoint"] == teacher["checkpoint"] and by_run[name]["teacher_steps"] == 4
        assert by_run[name]["teacher_run"] == teacher["run"] and by_run[name]["teacher_fid"] == teacher["fid"]
        assert by_run[name]["teacher_gflops"] > 0 and by_run[name]["teacher_train_seconds"] > 0
    assert by_run["sd_plain"]["teacher_gflops"] == 0 and "teacher_checkpoint" not in by_run["sd_plain"]
    assert by_run["ddpm"]["steps_in_ddpm_time"] == by_run["ddpm"]["train_steps"]
    ssd = by_run["ssd_convex"]  # a budget run: trained on past `steps` to DDPM's FLOPs and wall-clock
    labels = [b for c in ssd["checkpoints"] for b in c["labels"]]
    assert "DDPM FLOPs" in labels and ("DDPM wall-clock" in labels or ssd["budget_notes"])
    flops_step = next(c["step"] for c in ssd["checkpoints"] if "DDPM FLOPs" in c["labels"])
    assert flops_step * ssd["train_gflops_total_per_image"] >= 4 * by_run["ddpm"]["train_gflops_total_per_image"]
    for plot in ("fid_vs_sample_gflops.png", "fid_vs_training.png", "samples_side_by_side.png", "ssd_ladder.png",
                 "sd_ablation_spectrum.png"):  # fmt: skip
        assert (out / plot).stat().st_size > 1000
    md = (out / "results.md").read_text()
    assert "Low-sample run" in md and "EMA" in md and all(f"`{name}`" in md for name in RUNS)
    assert "<!-- benchmark-table -->" in md and "[95% CI]" in md and "train_vs_test" in md
    assert all(v in md for v in SD_ABLATION) and "Teacher:" in md and "equal FLOPs" in md
    assert f"the student against its teacher (`{teacher['run']}`)" in md and "Distillation at each scored length" in md
    ddpm_row = next(line for line in md.splitlines() if line.startswith("| `ddpm` |"))
    blocks, distance = (float(x) for x in ddpm_row.strip("| ").split(" | ")[-2:])  # B1, B3 of metrics/sharpness.py
    assert blocks == pytest.approx(by_run["ddpm"]["blockiness_2x2"], abs=1e-3) and distance >= 0


def test_restart_skips_finished_runs_and_reruns_the_rest(smoke, tmp_path, capsys):
    out, data = smoke
    copy = tmp_path / "bench"
    shutil.copytree(out, copy)
    results = json.loads((copy / "results.json").read_text())
    for r in results["runs"]:  # the copy's records point at its own files
        for key in ("checkpoint", "samples_dir"):
            r[key] = r[key].replace(str(out), str(copy))
    results["runs"] = results["runs"][:-1]  # as if the suite had crashed in the last run
    (copy / "results.json").write_text(json.dumps(results))
    capsys.readouterr()
    main(["--preset", "smoke", "--out", str(copy), *data])
    printed = capsys.readouterr().out
    assert sum("finished before" in line and "skipped" in line for line in printed.splitlines()) == len(RUNS) - 1
    after = json.loads((copy / "results.json").read_text())
    assert [r["run"] for r in after["runs"]] == list(RUNS)
    assert [r["fid"] for r in after["runs"][:-1]] == [r["fid"] for r in results["runs"]]


@pytest.mark.parametrize("recorded", [{"judge": "clf0123456789ab"}, {"judge": None}])
def test_a_run_scored_by_another_judge_is_not_continued(smoke, tmp_path, recorded, capsys):
    """Another machine trains another feature classifier: FIDs under two judges would not compare (older results,
    without the judge's identity, are refused too)."""
    out, data = smoke
    shutil.copytree(out, copy := tmp_path / "bench")
    results = json.loads((copy / "results.json").read_text())
    assert results["judge"].startswith("clf")  # the classifier file's sha1
    results.update(recorded)
    if recorded["judge"] is None:
        del results["judge"]
    (copy / "results.json").write_text(json.dumps(results))
    with pytest.raises(SystemExit, match="scored by another FID judge.*--fresh"):
        main(["--preset", "smoke", "--out", str(copy), *data])
    assert "skipped" not in capsys.readouterr().out  # refused before any run


def test_checkpoints_are_reused_and_the_teacher_found(smoke, tmp_path):
    out, data = smoke
    ddpm = out / "ddpm" / "model.ckpt"
    main(["--preset", "smoke", "--out", str(tmp_path), "--only", "ddpm", "sd_distilled", "--ckpt", f"ddpm={ddpm}", *data])
    runs = {r["run"]: r for r in json.loads((tmp_path / "results.json").read_text())["runs"]}
    assert not runs["ddpm"]["trained_here"] and runs["ddpm"]["train_seconds"] is None
    assert runs["ddpm"]["train_steps"] == 4 and runs["ddpm"]["train_images_per_s"] > 0
    assert runs["sd_distilled"]["trained_here"] and runs["sd_distilled"]["teacher_checkpoint"] == str(ddpm)


def test_a_longer_teacher_teaches_the_student_again(smoke, tmp_path):
    out, data = smoke
    shutil.copytree(out, copy := tmp_path / "bench")  # the command writes into the run's folder
    main([*data, "longer-teacher", "--results", str(copy), "--factor", "2"])
    teacher, student = json.loads((copy / "longer_teacher" / "results.json").read_text())["runs"]
    assert teacher["run"] == "ddpm_x0" and teacher["train_steps"] == 8 and student["train_steps"] == 4
    assert student["teacher_checkpoint"] == teacher["checkpoint"] and student["teacher_steps"] == 8
    assert student["teacher_fid"] == teacher["fid"] and ordered(student) and ordered(teacher)
    md = (copy / "longer_teacher" / "results.md").read_text()
    assert "teacher trained 2x longer" in md and "vs the plain student: **" in md and "| 100% steps | 4 |" in md
    with pytest.raises(SystemExit, match="--factor 1.0 trains the teacher no longer"):
        main([*data, "longer-teacher", "--results", str(copy), "--factor", "1"])
    results = json.loads((copy / "results.json").read_text())
    (copy / "results.json").write_text(json.dumps({**results, "judge": "clf0123456789ab"}))  # another machine's
    (copy / "judge").mkdir()  # where a committed run keeps its classifier
    with pytest.raises(SystemExit, match=f"another FID judge.*pass --cache-dir {copy / 'judge'}$"):
        main([*data, "longer-teacher", "--results", str(copy)])
    results["runs"] = [r for r in results["runs"] if r["run"] != "sd_plain"]
    (copy / "results.json").write_text(json.dumps(results))
    with pytest.raises(SystemExit, match="has no sd_plain run; run the preset with them first"):
        main([*data, "longer-teacher", "--results", str(copy)])


def test_readme_table_is_generated_from_results(smoke, tmp_path):
    out, _ = smoke
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- benchmark-table -->\nold\n<!-- /benchmark-table -->\n\nafter\n")
    main(["readme", "--results", str(out / "results.md"), "--readme", str(readme)])
    text = readme.read_text()
    assert "old" not in text and "| `ssd_convex` |" in text and text.endswith("after\n")
    main(["readme", "--results", str(out / "results.md"), "--readme", str(readme)])  # idempotent
    assert readme.read_text() == text


def test_committed_results_stay_readable_by_readme_and_compare(tmp_path, monkeypatch):
    from pathlib import Path

    from benchmarks.suite import RESULTS

    root = Path(__file__).parents[1]
    monkeypatch.chdir(root)
    doc = tmp_path / "benchmarks.md"
    shutil.copy(root / "docs" / "benchmarks.md", doc)
    main(["readme", "--results", "benchmarks/suite/results/standard/results.md", "--readme", str(doc)])
    assert doc.read_text() == (root / "docs" / "benchmarks.md").read_text()  # the docs' table is the generated one
    main(["compare", str(RESULTS / "quick_fp32_ab" / "results.json"), str(RESULTS / "quick_bf16" / "results.json"),
          "--out", str(tmp_path)])  # fmt: skip
    rows = [[line for line in md.splitlines() if line.startswith("| `")]
            for md in ((tmp_path / "compare.md").read_text(), (RESULTS / "compare_fp32_vs_bf16" / "compare.md").read_text())]
    assert rows[0] == rows[1] and len(rows[0]) == 2  # the committed comparison, row for row
    assert (tmp_path / "compare_loss.png").stat().st_size > 1000


def test_bf16_mixed_trains_and_samples_under_autocast(smoke, tmp_path):
    import torch

    out, data = smoke
    main(["--preset", "smoke", "--out", str(tmp_path), "--only", "ddpm", "--precision", "bf16-mixed", *data])
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["preset"]["precision"] == "bf16-mixed" and "precision bf16-mixed" in (tmp_path / "results.md").read_text()
    fp32, bf16 = (torch.load(d / "ddpm" / "model.ckpt", weights_only=True)["state_dict"] for d in (out, tmp_path))
    assert any(not torch.equal(fp32[k], bf16[k]) for k in fp32)  # same seed and data: the weights saw bf16 steps
    with pytest.raises(SystemExit, match="other settings"):  # an fp32 results.json is not continued in bf16
        main(["--preset", "smoke", "--out", str(out), "--only", "ddpm", "--precision", "bf16-mixed", *data])
    main(["compare", str(out / "results.json"), str(tmp_path / "results.json"), "--out", str(tmp_path / "cmp")])
    md = (tmp_path / "cmp" / "compare.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| `ddpm` |"))
    assert "smoke bf16-mixed" in md and "smoke 32-true" in md and "n/a" not in row
    assert ("not separable" in row) != ("better" in row) and "`ssd_convex`" not in md  # only the runs both hold
    assert (tmp_path / "cmp" / "compare_loss.png").stat().st_size > 1000


def test_train_seed_is_a_replicate_under_the_same_judge(smoke, tmp_path):
    import torch

    out, data = smoke
    main(["--preset", "smoke", "--out", str(tmp_path), "--only", "ddpm", "--train-seed", "1", *data])
    a, b = (json.loads((d / "results.json").read_text()) for d in (out, tmp_path))
    assert b["preset"]["train_seed"] == 1 and b["preset"]["seed"] == a["preset"]["seed"] == 0
    assert b["reference"] == a["reference"]  # same split and judge: the floor and ceiling rows are identical
    w0, w1 = (torch.load(d / "ddpm" / "model.ckpt", weights_only=True)["state_dict"] for d in (out, tmp_path))
    assert any(not torch.equal(w0[k], w1[k]) for k in w0)
    main(["compare", str(out / "results.json"), str(tmp_path / "results.json"), "--out", str(tmp_path / "cmp")])
    assert "smoke 32-true train seed 1" in (tmp_path / "cmp" / "compare.md").read_text()


def test_sample_images_runs_under_the_precision_asked_for():
    from dataclasses import replace

    import torch

    from benchmarks.suite.presets import PRESETS
    from benchmarks.suite.runs import build
    from benchmarks.suite.scoring import sample

    torch.manual_seed(0)
    p = PRESETS["smoke"]
    model, dtypes = build("ddpm", p, None), []
    model.net.register_forward_hook(lambda module, args, output: dtypes.append(output.dtype))
    for precision in ("32-true", "bf16-mixed"):
        images, timing = sample(model, replace(p, precision=precision), "ddim", 3, 2)
        assert images.dtype == torch.uint8 and images.shape == (2, 1, 16, 16) and timing["s"] > 0
    steps = len(dtypes) // 2
    assert set(dtypes[:steps]) == {torch.float32} and set(dtypes[steps:]) == {torch.bfloat16}
    with pytest.raises(ValueError, match="'16-mixed'.*32-true, bf16-mixed"):  # refused before any training
        replace(PRESETS["smoke"], precision="16-mixed")


def test_distillation_without_a_teacher_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="ddpm and ddpm_x0 runs; include one"):
        main(["--preset", "smoke", "--out", str(tmp_path), "--only", "sd_distilled"])


def test_a_dataset_without_labels_is_refused_before_training(tmp_path, capsys):
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray((rng.random((16, 16)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    with pytest.raises(SystemExit, match="no class labels"):
        main(["--preset", "smoke", "--out", str(tmp_path / "out"), "--dataset", str(folder), "--image-size", "16",
              "--data-cache-dir", str(tmp_path / "cache"), "--cache-dir", str(tmp_path / "cache")])  # fmt: skip
    assert not (tmp_path / "out" / "ddpm").exists()


def test_hierarchy_analysis(fmnist_idx, tmp_path):
    import logging
    import warnings

    from benchmarks.__main__ import QUIET

    levels, filters = [logging.getLogger(n).level for n in QUIET], list(warnings.filters)
    main(["--idx-dir", str(fmnist_idx), "--data-cache-dir", str(tmp_path / "data"), "hierarchy", "--out", str(tmp_path)])
    assert [logging.getLogger(n).level for n in QUIET] == levels and warnings.filters == filters  # as it found them
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


def test_quick_runs_the_four_compared_models_and_only_overrides_it():
    from benchmarks.suite.presets import PRESETS
    from benchmarks.suite.suite import selected_runs

    assert selected_runs(PRESETS["quick"], None, {}) == ["ddpm", "ddpm_x0", "ssd_convex", "sd_distilled"]
    assert selected_runs(PRESETS["standard"], None, {}) == list(RUNS)
    assert selected_runs(PRESETS["quick"], ["sd_plain", "ddpm"], {}) == ["ddpm", "sd_plain"]  # the suite's order
    assert "ssd_equal" in selected_runs(PRESETS["quick"], None, {"ssd_equal": "x.ckpt"})  # a given checkpoint is run
    with pytest.raises(SystemExit, match="unknown run.*'ssd_x'"):
        selected_runs(PRESETS["quick"], ["ssd_x"], {})


def test_a_restart_continues_only_with_the_same_settings_and_fresh_starts_over(tmp_path):
    from dataclasses import replace

    from benchmarks.suite.presets import PRESETS
    from benchmarks.suite.suite import _previous

    p = PRESETS["smoke"]
    assert _previous(tmp_path, p, "classifier", fresh=False) is None  # nothing there yet
    (tmp_path / "results.json").write_text(json.dumps({"preset": p.as_dict(), "extractor": "classifier", "runs": [1]}))
    assert _previous(tmp_path, p, "classifier", fresh=False)["runs"] == [1]
    assert _previous(tmp_path, p, "classifier", fresh=True) is None
    old = {k: v for k, v in p.as_dict().items() if k not in ("precision", "train_seed")}  # before the fields: fp32, seed
    (tmp_path / "results.json").write_text(json.dumps({"preset": old, "extractor": "classifier", "runs": [2]}))
    assert _previous(tmp_path, p, "classifier", fresh=False)["runs"] == [2]
    for preset, extractor in ((replace(p, steps=5), "classifier"), (p, "inception"),
                              (replace(p, precision="bf16-mixed"), "classifier"), (replace(p, train_seed=1), "classifier")):  # fmt: skip
        with pytest.raises(SystemExit, match="other settings.*--fresh"):
            _previous(tmp_path, preset, extractor, fresh=False)


def test_the_distillation_study_scores_every_row_and_continues(fmnist_idx, tmp_path):
    from benchmarks.studies.distillation import ROWS, run_distillation
    from benchmarks.suite.presets import PRESETS

    args = (tmp_path / "study", tmp_path / "cache", {"idx_dir": str(fmnist_idx), "cache_dir": str(tmp_path / "data")})
    md = run_distillation(*args, PRESETS["smoke"]).read_text()
    rows = json.loads((tmp_path / "study" / "results.json").read_text())["rows"]
    assert list(rows) == list(ROWS) and all(r["fid_ci95"][0] <= r["fid"] <= r["fid_ci95"][1] for r in rows.values())
    assert all(f"| {label} |" in md for label in ROWS) and "vs plain" in md
    assert [r["settings"] for r in rows.values()] == list(ROWS.values())
    run_distillation(*args, PRESETS["smoke"])  # finished rows are kept, not trained again
    saved = json.loads((tmp_path / "study" / "results.json").read_text())
    assert saved["rows"] == rows
    (tmp_path / "study" / "results.json").write_text(json.dumps({**saved, "judge": "clf0123456789ab"}))
    with pytest.raises(SystemExit, match="scored by judge clf0123456789ab.*--cache-dir"):  # FIDs would not compare
        run_distillation(*args, PRESETS["smoke"])


def test_a_default_run_writes_under_outputs_not_over_the_committed_results(monkeypatch):
    """`make benchmark` on a clean checkout: the committed runs (another machine's judge, older settings) would refuse
    to be continued; a user's run goes to the git-ignored outputs/benchmark/<preset>/."""
    from benchmarks.studies import distillation
    from benchmarks.suite import RESULTS, suite

    seen = []
    monkeypatch.setattr(suite, "run_preset", lambda p, out, *args: seen.append((p.name, out)))
    monkeypatch.setattr(distillation, "run_distillation", lambda out, *args: seen.append(("distillation", out)))
    main(["--preset", "quick"])
    main(["--preset", "standard", "--out", str(RESULTS / "standard")])
    main(["distillation"])  # the study continues a run too, and refuses another machine's judge
    outputs = RESULTS.parents[2] / "outputs" / "benchmark"
    assert seen == [("quick", outputs / "quick"), ("standard", RESULTS / "standard"),
                    ("distillation", outputs / "distillation")]  # fmt: skip

