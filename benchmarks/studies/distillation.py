"""Which choice of Spectral Diffusion's distillation loss moves it (issue 28, item 2): at the quick preset's scale, a
DDPM-x0 teacher (the suite's `ddpm_x0` settings) teaches the gated slim student (the suite's `sd_distilled`: x0,
min-SNR-5) with one documented choice changed per row, against the same student trained plainly; one judge, one
seed, the tracked EMA. Rows finished before are kept (results.json), so an interrupted study continues."""

from __future__ import annotations

import json
import time
from pathlib import Path

import lightning as L

from scale_space_diffusion import SpectralDiffusion

from ..output import table
from ..suite.presets import QUICK, Preset
from ..suite.report import ci, verdict
from ..suite.runs import X0_LOSS, build, fit
from ..suite.scoring import make_judge, preset_data, sample

ROWS = {  # row -> SpectralDiffusion's loss arguments (None: no teacher); docs/spectral_diffusion.md lists the choices
    "plain (no teacher)": None,
    "default: features + output, lambda_s = lambda_f = 0.1, alpha = -1": {},
    "output only (match_features: false)": {"match_features": False},
    "output only, lambda_s = lambda_f = 1": {"match_features": False, "spatial_weight": 1.0, "spectral_weight": 1.0},
    "spatial term only (lambda_f = 0)": {"spectral_weight": 0.0},
    "frequency term only (lambda_s = 0)": {"spatial_weight": 0.0},
    "alpha = 0 (omega = 1: L_freq = L_spatial)": {"alpha": 0.0},
    "alpha = +1 (weight where x_0 has energy)": {"alpha": 1.0},
}


def run_distillation(out: Path, cache_dir: Path, data_location: dict[str, str], p: Preset = QUICK) -> Path:
    """Train and score the teacher and every row of preset ``p`` under ``out``; returns results.md."""
    data = preset_data(p, data_location)
    judge = make_judge(data, "classifier", cache_dir, p.classifier_epochs, p.seed, p.resamples, None)
    path = out / "results.json"
    res = json.loads(path.read_text()) if path.is_file() else {"judge": judge.identity, "rows": {}}
    if res["judge"] != judge.identity:
        raise SystemExit(f"error: {path} was scored by judge {res['judge']}, this machine's is {judge.identity}; "
                         "pass another --out, or --cache-dir with that judge's classifier")  # fmt: skip

    def trained(model, folder: str, label: str, **record) -> dict:
        start = time.perf_counter()
        fit(model, data, p.steps, p, out / folder, {p.steps: ["end"]}, None)
        scores = judge.score(sample(model.eval(), p, p.sampler, p.sample_steps, p.num_samples)[0], label)
        return {"fid": scores["fid"], "fid_ci95": scores["fid_ci95"], "seconds": time.perf_counter() - start, **record}

    teacher = out / "teacher-x0" / f"step{p.steps:06d}.ckpt"
    if "teacher" not in res or not teacher.is_file():
        L.seed_everything(p.run_seed, verbose=False)
        res["teacher"] = trained(build("ddpm_x0", p, None), "teacher-x0", "teacher")
        res["rows"] = {}  # a new teacher: every row again
        path.write_text(json.dumps(res, indent=1))
    for i, (label, settings) in enumerate(ROWS.items()):
        if label in res["rows"]:
            continue
        L.seed_everything(p.run_seed, verbose=False)  # every row starts from the same weights
        model = build("sd_plain", p, None)
        if settings is not None:
            model = SpectralDiffusion(model.net, teacher=str(teacher), loss=X0_LOSS, schedule=model.process.schedule,
                                      optim=model.optim, sampling=model.sampling, **settings)  # fmt: skip
        res["rows"][label] = trained(model, f"row-{i}", label, settings=settings)
        path.write_text(json.dumps(res, indent=1))
        write_markdown(res, p, judge.label, out / "results.md")  # after every row: a stopped study shows its rows
    return out / "results.md"


def write_markdown(res: dict, p: Preset, judge: str, path: Path) -> None:
    plain = res["rows"]["plain (no teacher)"]
    rows = [[label, ci(r), f"{r['seconds']:.0f}", verdict(r, plain, ("row", "plain")) if r is not plain else ""]
            for label, r in res["rows"].items()]  # fmt: skip
    path.write_text("\n".join([
        "# Spectral Diffusion: one distillation choice per row\n",
        f"Preset `{p.name}`: {p.steps} steps at batch {p.batch_size}, {p.num_samples} samples at {p.sample_steps} DDIM "
        f"steps, {judge} against the test split ({p.resamples} bootstrap resamples), judge {res['judge']}. "
        f"Teacher: a DDPM-x0 trained alike, FID {ci(res['teacher'])}.\n",
        table(["row", "FID [95% CI]", "train + sample s", "vs plain"], rows),
    ]) + "\n")  # fmt: skip
