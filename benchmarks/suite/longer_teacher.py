"""A teacher trained longer than its student (issue 28): a finished preset run's ``ddpm_x0`` settings trained for
``factor`` x the steps, then ``sd_distilled`` trained again from it for the preset's steps, both scored by that run's
judge. ``<results>/longer_teacher/results.md`` sets them beside the run's own teacher, distilled and plain rows."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from ..output import table
from .presets import Preset
from .report import ci, verdict
from .scoring import make_judge, preset_data
from .suite import check_same_judge, run_one

SHOWN = ("ddpm_x0", "sd_distilled", "sd_plain")  # the finished run's rows set beside the new ones


def run_longer_teacher(results_dir: Path, factor: float, cache_dir: Path, data_location: dict[str, str]) -> Path:
    """Train and score the longer teacher and its student under ``results_dir/longer_teacher``; returns its
    results.md."""
    results = json.loads((results_dir / "results.json").read_text())
    by_run = {r["run"]: r for r in results["runs"]}
    if missing := [n for n in SHOWN if n not in by_run]:
        raise SystemExit(f"error: {results_dir} has no {', '.join(missing)} run; run the preset with them first")
    if factor <= 1:
        raise SystemExit(f"error: --factor {factor} trains the teacher no longer than the student; pass e.g. 2")
    p = Preset(**{k: tuple(v) if isinstance(v, list) else v for k, v in results["preset"].items() if k != "low_sample"})
    data = preset_data(p, data_location)
    judge = make_judge(data, results["extractor"], cache_dir, p.classifier_epochs, p.seed, p.resamples, None)
    check_same_judge(results, judge, results_dir)  # its FIDs must compare with the run's
    out = results_dir / "longer_teacher"
    longer = replace(p, steps=round(factor * p.steps), checkpoints=(), pareto_steps=(), pareto_ancestral=())
    teacher = run_one("ddpm_x0", longer, data, judge, out, None, None, None)
    student = run_one("sd_distilled", p, data, judge, out, None, teacher, None)
    (out / "results.json").write_text(json.dumps({"factor": factor, "source": str(results_dir / "results.json"),
                                                  "judge": judge.identity, "runs": [teacher, student]}, indent=1))
    plain, own = by_run["sd_plain"], by_run["sd_distilled"]
    rows = [[f"teacher trained {factor:g}x longer", teacher], ["distilled from it", student],
            *([f"the run's `{n}`", by_run[n]] for n in SHOWN)]  # fmt: skip
    at = [{q["step"]: q for q in r["checkpoints"]} for r in (student, plain)]
    lengths = [[q["labels"][0], step, ci(q), ci(at[1][step]), verdict(q, at[1][step], ("distilled", "plain"))]
               for step, q in sorted(at[0].items()) if step in at[1]]  # fmt: skip
    text = [
        f"# Spectral Diffusion with a teacher trained {factor:g}x longer\n",
        f"Source: `{results_dir / 'results.json'}` (preset `{p.name}`, judge {judge.identity}); the teacher is its "
        f"`ddpm_x0` trained for {longer.steps} steps, the student its `sd_distilled` for {p.steps}, same seed.\n",
        table(["row", "run", "steps", "FID [95% CI]", "N", "train s"],
              [[label, f"`{r['run']}`", r["train_steps"], ci(r), r["num_samples"], f"{r['train_seconds']:.0f}"]
               for label, r in rows]),  # fmt: skip
        "\n- Distilled from the longer teacher vs the plain student: "
        f"**{verdict(student, plain, ('longer', 'plain'))}**",
        f"- vs the student of the run's own teacher: **{verdict(student, own, ('longer', 'own teacher'))}**",
        f"- the longer teacher vs the run's: **{verdict(teacher, by_run['ddpm_x0'], ('longer', 'run'))}**\n",
        "At each scored length (the checkpoints' samples):\n",
        table(["length", "step", "distilled (longer teacher)", "plain (the run's)", "verdict"], lengths),
    ]
    (out / "results.md").write_text("\n".join(text) + "\n")
    return out / "results.md"
