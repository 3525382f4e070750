"""The suite's markdown: results.md (the main table between the markers the README copies, reference rows, which
differences the intervals separate, equal FLOPs and wall-clock, Pareto points, the SD ablation, settings, stage
timings), ``python -m benchmarks readme`` and ``compare`` (two results.json side by side, nothing recomputed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from scale_space_diffusion.metrics import power_distance, rank_by_intervals, separable

from ..output import cell, table
from .presets import SD_ABLATION, recorded_preset

TABLE_START, TABLE_END = "<!-- benchmark-table -->", "<!-- /benchmark-table -->"
PAIRS = [  # (a, b, what the difference isolates)
    ("ddpm_x0", "ddpm", "the parameterisation (x0 + min-SNR vs eps), same backbone and steps"),
    ("ssd_convex", "ddpm_x0", "the resolution ladder (3 levels vs 1), same parameterisation"),
    ("ssd_convex", "ddpm", "SSD against the DDPM reference, equal steps"),
    ("ssd_2l", "ssd_convex", "the number of ladder levels (2 vs 3; the SSD paper compares 2 and 4)"),
    ("ssd_equal", "ssd_convex", "the ladder schedule (equal vs convex-0.5)"),
    ("ssd_full_unet", "ssd_convex", "Flexi-UNet vs the full UNet at every step"),
    ("sd_distilled", "sd_plain", "distillation from the teacher (gated student)"),
    ("sd_plain", "sd_nogate", "the wavelet gates (no teacher)"),
]  # and the student against its teacher, the run that taught it (``pairs``)


def ci(r: dict, key: str = "fid") -> str:
    return f"{r[key]:.3g} [{r[f'{key}_ci95'][0]:.3g}, {r[f'{key}_ci95'][1]:.3g}]"


def verdict(a: dict, b: dict, names: tuple[str, str]) -> str:
    s = separable(tuple(a["fid_ci95"]), tuple(b["fid_ci95"]))
    better, worse = names if s < 0 else names[::-1]
    return "not separable (95% intervals overlap)" if s == 0 else f"`{better}` better than `{worse}`"


def stage(t: dict | None) -> str:
    return f"{t['s']:.1f} ({t['cpu_s']:.0f}, {t['load']})" if t else ""


def ema(r: dict, p: dict) -> str:
    """The EMA a run's main samples came from: chosen on the validation split, or the tracked one (older runs)."""
    return f"sigma_rel {r['ema_sigma_rel']:g}" if r.get("ema_sigma_rel") else f"decay {p['ema_decay']:g}"


def main_table(runs: list[dict], real_power: list[float], p: dict) -> str:
    """The README's table; the last two columns (B1, B3 of metrics/sharpness.py) see the blocks and the missing or
    excess detail that a classifier-feature FID barely sees (runs before they were recorded: n/a)."""
    ranks = rank_by_intervals({r["run"]: tuple(r["fid_ci95"]) for r in runs})
    teacher = {r["run"]: f" (+{r['teacher_gflops']:.3g} teacher fwd)" if r["teacher_gflops"] else "" for r in runs}
    rows = [[f"`{r['run']}`", f"{r['params'] / 1e6:.3f}M", f"{r['train_gflops_per_image']:.3g}" + teacher[r["run"]],
             f"{r['sample_gflops_per_image']:.3g}", f"{r['train_images_per_s']:.1f}", f"{r['sample_images_per_s']:.1f}",
             ci(r), ranks[r["run"]], ci(r, "kid"), f"{r['kid_std']:.2g}",
             f"{r['num_samples']}" + (" (low)" if r["low_sample"] else ""), r["steps"], ema(r, p),
             f"{cell(r['train_seconds'], '.0f', 'n/a')} ({r['timings']['fit']['load']})",
             cell(r["steps_in_ddpm_time"], "", "n/a"),
             cell(r.get("blockiness_2x2"), ".3f", "n/a"),
             f"{power_distance(torch.tensor(r['radial_power']), torch.tensor(real_power)):.3f}"]
            for r in runs]  # fmt: skip
    return table(["run", "params", "train GFLOPs/img", "sample GFLOPs/img", "train img/s", "sample img/s",
                  f"{runs[0]['feature_extractor']} [95% CI]", "rank", "KID [95% CI]", "KID subset std", "N",
                  "sampler steps", "EMA", "train s (load)", "steps in DDPM time", "2x2 blockiness (real ~1)",
                  "spectrum distance to real"], rows)  # fmt: skip


def ema_choice(runs: list[dict], p: dict) -> list[str]:
    """Each run's EMA candidates: FID of ``ema_samples`` images against the validation split (* chosen)."""
    runs = [r for r in runs if r.get("ema_candidates")]
    if not runs:
        return ["(the runs predate the choice: each used its tracked EMA)"]
    rows = [[f"`{r['run']}`", *(f"{c['fid_val']:.3g}" + (" *" if c["sigma_rel"] == r["ema_sigma_rel"] else "")
                                for c in r["ema_candidates"])] for r in runs]  # fmt: skip
    return [f"FID of {p['ema_samples']} images per EMA against the held-out validation split; * the one each run's "
            "main samples, end-of-training checkpoint and teaching use (earlier checkpoints: the tracked EMA).\n",
            table(["run", *(c["label"] for c in runs[0]["ema_candidates"])], rows)]


def budgets(by_run: dict) -> list[str]:
    """FID at equal steps, training FLOPs and wall-clock, each against DDPM's end of training (the same N)."""
    ddpm = by_run.get("ddpm")
    if ddpm is None or not ddpm["checkpoints"]:
        return ["(needs the ddpm run trained here)"]
    ref, rows = next(q for q in ddpm["checkpoints"] if q["step"] == ddpm["train_steps"]), []
    for name, r in by_run.items():
        rows += [[f"`{name}`", "equal steps" if b == "100% steps" else b.replace("DDPM ", "equal "), q["step"],
                  f"{q['train_gflops_total']:.4g}", f"{q['train_seconds']:.0f}", ci(q), verdict(q, ref, (name, "ddpm"))]
                 for q in r["checkpoints"] for b in q["labels"] if name != "ddpm" and b[:4] in ("DDPM", "100%")]
        rows += [[f"`{name}`", "note", "", "", "", note, ""] for note in r["budget_notes"]]
    return [f"DDPM at the end of training (step {ref['step']}, {ref['train_gflops_total']:.4g} training GFLOPs, "
            f"{ref['train_seconds']:.0f} s): FID {ci(ref)} at N = {ref['num_samples']}.\n",
            table(["run", "budget", "step", "training GFLOPs", "training s", "FID [95% CI]", "vs DDPM"], rows)]


def teacher_of(by_run: dict) -> str:
    """The run that taught the distilled students (results from before the teacher was chosen by FID: ddpm)."""
    return next((r["teacher_run"] for r in by_run.values() if r.get("teacher_run")), "ddpm")


def pairs(by_run: dict) -> list[tuple[str, str, str]]:
    teacher = teacher_of(by_run)
    return [*PAIRS, ("sd_distilled", teacher, f"the student against its teacher (`{teacher}`)")]


def distillation_lengths(by_run: dict) -> list[str]:
    """SD distilled vs plain vs their teacher at each scored length (the same steps, the checkpoints' samples)."""
    names = ("sd_distilled", "sd_plain", teacher_of(by_run))
    if not all(n in by_run for n in names):
        return []
    at = [{q["step"]: q for q in by_run[n]["checkpoints"]} for n in names]
    rows = [[q["labels"][0], step, *(ci(a[step]) for a in at), verdict(q, at[1][step], names[:2])]
            for step, q in sorted(at[0].items()) if all(step in a for a in at[1:])]  # fmt: skip
    return ["\nDistillation at each scored length (same steps; the checkpoints' samples):\n",
            table(["length", "step", *(f"`{n}` FID [95% CI]" for n in names), "distilled vs plain"], rows)]


def sd_ablation(by_run: dict) -> list[str]:
    ddpm, base = by_run.get("ddpm"), by_run.get("sd_nogate")
    rows = [[variant, f"`{name}`", f"{r['params']:,}",
             f"{ddpm['sample_gflops_per_image'] / r['sample_gflops_per_image']:.1f}x" if ddpm else "n/a", ci(r),
             ci(r, "kid"), verdict(r, base, (name, "sd_nogate")) if base and name != "sd_nogate" else ""]
            for variant, name in SD_ABLATION.items() if (r := by_run.get(name))]  # fmt: skip
    lines = [table(["variant", "run", "params", "teacher/student sampling MACs", "FID [95% CI]", "KID [95% CI]",
                       "vs `sd_nogate`"], rows)]  # fmt: skip
    if teach := next((r for r in by_run.values() if r.get("teacher_checkpoint")), None):
        path = Path(teach["teacher_checkpoint"]).resolve()  # relative to the checkout: results are committed
        path = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
        lines.append(f"Teacher: `{path}` (the suite's `{teacher_of(by_run)}` run, step {teach['teacher_steps']}, "
                     f"sha1 {teach['teacher_sha1']}" + (f", FID {ci(teach, 'teacher_fid')}, trained in "
                     f"{teach['teacher_train_seconds']:.0f} s" if teach.get("teacher_train_seconds") else "") + ").")
    return lines + distillation_lengths(by_run)


def markdown(results: dict) -> str:
    p, hw, runs = recorded_preset(results), results["hardware"], results["runs"]
    by_run, stages = {r["run"]: r for r in runs}, list(dict.fromkeys(k for r in runs for k in r["timings"]))
    pareto = [[f"`{r['run']}`", "DDIM, eta = 0" if q["sampler"] == "ddim" else "ancestral",
               f"{q['requested_steps']} / {q['steps']}", f"{q['sample_gflops_per_image']:.3g}", ci(q), q["num_samples"]]
              for r in runs for q in sorted(r["pareto"], key=lambda q: (q["sampler"], q["requested_steps"]))]
    parts = [
        f"# Benchmark: preset `{p['name']}`\n\nCommand: `{results['command']}`  \nHardware: {hw['cpu_model']}, "
        f"{hw['cpu_cores']} cores ({hw['torch_threads']} torch threads), GPU: {hw['gpu'] or 'none'}; torch "
        f"{hw['torch']}, lightning {hw['lightning']}, Python {hw['python']}; precision {p['precision']}. Timings were "
        "taken at the 1-minute load averages shown (a busy machine makes them upper bounds).\n",
        f"> **Low-sample run:** {p['num_samples']} samples per model (paper-like is 10k+). FID is biased upwards at "
        "small N; these numbers rank the models of this run only.\n" if p["low_sample"] else "",
        TABLE_START, main_table(runs, results["real_radial_power"], p), TABLE_END,
        "\nRank: 1 + the number of runs whose FID interval lies wholly below this one's (shared: not separable). "
        f"{results['feature_extractor']}, classifier test accuracy "
        f"{cell(results['classifier_accuracy'], '.4f', 'n/a')}; "
        f"N samples against {results['num_reference']} real test images; main sampler "
        f"{'DDIM (eta = 0)' if p['sampler'] == 'ddim' else 'ancestral'}, {p['sample_steps']} steps.\n",
        "\n## Reference rows (scored exactly as the models)\n",
        table(["reference", "N", "FID [95% CI]", "KID [95% CI]", "KID subset std"],
                 [[f"`{r['run']}`: {r['description']}", r["num_samples"], ci(r), ci(r, "kid"), f"{r['kid_std']:.2g}"]
                  for r in results["reference"]]),  # fmt: skip
        "\n## Which differences the intervals separate\n",
        *[f"- {what}: `{a}` {ci(by_run[a])} vs `{b}` {ci(by_run[b])}: **{verdict(by_run[a], by_run[b], (a, b))}**"
          for a, b, what in pairs(by_run) if a in by_run and b in by_run],
        "\n## Equal training FLOPs and equal wall-clock\n",
        f"Checkpoints at {'/'.join(f'{f:.0%}' for f in (*p['checkpoints'], 1.0))} of the steps and, reached within "
        f"{p['max_extend']}x the steps by the budget runs ({', '.join(p['budget_runs'])}), at DDPM's training FLOPs "
        f"and wall-clock; {min(p['curve_samples'], p['num_samples'])} samples each, nothing interpolated.\n",
        *budgets(by_run),
        "\n## EMA length chosen after training (EDM2's post-hoc EMA)\n", *ema_choice(runs, p),
        "\n## Pareto: FID against sampling GFLOPs per image\n",
        table(["run", "sampler", "steps (requested / taken)", "sample GFLOPs/img", "FID [95% CI]", "N"], pareto),
        "\n## Spectral Diffusion ablation (same slim width, steps and seed)\n", *sd_ablation(by_run),
        "\n`sd_ablation_spectrum.png`: each variant's radial power spectrum against real test images.\n\n## Settings\n",
        "Columns, FLOP counting, intervals and choices: docs/benchmarks.md. FID/KID intervals: "
        f"{p['resamples']} bootstrap resamples; samples: lossless PNG from the EMA weights, image i seeded by "
        f"({p['seed'] if p['train_seed'] is None else p['train_seed']}, i); training: AdamW, gradient clipping 1.0, "
        "random horizontal flips. Preset: " + ", ".join(f"{k} {v}" for k, v in p.items()) + ".",
        "\n## Stage timings (for estimating a preset's time)\n",
        "Wall s (CPU s of this process, all threads; load average at the start): "
        + "; ".join(f"{k}: {stage(t)}" for k, t in results["timings"].items()) + ".\n",
        table(["run", *(f"{k} s" for k in stages)],
                 [[f"`{r['run']}`", *(stage(r["timings"].get(k)) for k in stages)] for r in runs]),
        "\n## Plots\n", *[f"- `{name}`" for name in results["plots"]],
    ]  # fmt: skip
    return "\n".join(parts) + "\n"


def update_readme(results: Path, readme: Path) -> str:
    """Replace the README's table block with the one in ``results`` (a results.md); returns a one-line summary."""
    block = re.compile(re.escape(TABLE_START) + r"\n(.*?)" + re.escape(TABLE_END), re.S)
    found, text = block.search(results.read_text()), readme.read_text()
    for path, match in ((results, found), (readme, block.search(text))):
        if match is None:
            raise SystemExit(f"error: {path} has no {TABLE_START} ... {TABLE_END} block")
    source, folder = results.resolve(), readme.resolve().parent
    source = source.relative_to(folder) if source.is_relative_to(folder) else results
    new = (f"{TABLE_START}\n<!-- generated from {source} by `python -m benchmarks readme`; do not edit -->\n"
           f"{found.group(1).strip(chr(10))}\n{TABLE_END}")
    readme.write_text(block.sub(lambda _: new, text, count=1))
    return f"Wrote the table of {source} into {readme}"


def compare(a_path: Path, b_path: Path, out: Path) -> Path:
    """``out/compare.md``: per shared run, each FID [95% CI] and whether the intervals separate them, training and
    sampling img/s and their ratio, the mean loss over the last 20 % of the steps; ``compare_loss.png`` the curves."""
    from .plots import loss_curves

    a, b = (json.loads(path.read_text()) for path in (a_path, b_path))
    la, lb = _label(a, a_path), _label(b, b_path)
    shared = [(ra, rb) for ra in a["runs"] for rb in b["runs"] if ra["run"] == rb["run"]]
    if not shared:
        raise SystemExit(f"error: {a_path} and {b_path} share no run")
    rows = []
    for ra, rb in shared:
        s = separable(tuple(ra["fid_ci95"]), tuple(rb["fid_ci95"]))
        row = [f"`{ra['run']}`", ci(ra), ci(rb), "not separable" if s == 0 else "A better" if s < 0 else "B better"]
        for k in ("train_images_per_s", "sample_images_per_s"):
            row += [f"{ra[k]:.1f}", f"{rb[k]:.1f}", f"{rb[k] / ra[k]:.2f}x"]
        rows.append(row + [cell(_tail_loss(ra), ".4f", "n/a"), cell(_tail_loss(rb), ".4f", "n/a")])
    lines = [f"# {lb} against {la}\n", f"A: `{a_path}` (`{a['command']}`)  ", f"B: `{b_path}` (`{b['command']}`)\n",
             table(["run", "FID A [95% CI]", "FID B [95% CI]", "FID", "train img/s A", "B", "B/A", "sample img/s A",
                       "B", "B/A", "loss A (last 20 %)", "loss B"], rows),
             f"N = {shared[0][0]['num_samples']} (A) and {shared[0][1]['num_samples']} (B) samples per model; FID "
             f"from the same feature extractor when both say so: A {a['feature_extractor']}, B "
             f"{b['feature_extractor']}."]  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    if all(ra.get("train_loss_curve") and rb.get("train_loss_curve") for ra, rb in shared):
        loss_curves(shared, la, lb, out / "compare_loss.png")
        lines.append("\n`compare_loss.png`: the training loss per window of steps, A solid, B dashed.")
    (out / "compare.md").write_text("\n".join(lines) + "\n")
    return out / "compare.md"


def _label(results: dict, path: Path) -> str:
    p = recorded_preset(results)
    seed = f" train seed {p['train_seed']}" if p["train_seed"] is not None else ""
    return f"{p['name']} {p['precision']}{seed} ({path.parent.name})"


def _tail_loss(r: dict, fraction: float = 0.2) -> float | None:
    """Mean of the last ``fraction`` of the loss windows up to ``train_steps`` (a budget run trains on past it)."""
    if not r.get("train_loss_curve"):
        return None
    curve = r["train_loss_curve"][: -(-r["train_steps"] // r["train_loss_window"])]
    tail = curve[-max(1, round(fraction * len(curve))) :]
    return sum(tail) / len(tail)
