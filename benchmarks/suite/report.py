"""results.md: the main table (between the markers the README copies), the reference rows, which differences the
intervals separate, FID at equal training FLOPs and wall-clock, the Pareto points, the SD ablation, every choice;
and ``python -m benchmarks readme``, which copies that table into README.md."""

from __future__ import annotations

import re
from pathlib import Path

from scale_space_diffusion.metrics.intervals import rank_by_intervals, separable

from .presets import SD_ABLATION, recorded_preset

TABLE_START, TABLE_END = "<!-- benchmark-table -->", "<!-- /benchmark-table -->"
_BLOCK = re.compile(re.escape(TABLE_START) + r"\n(.*?)" + re.escape(TABLE_END), re.S)
PAIRS = [  # (a, b, what the difference isolates)
    ("ddpm_x0", "ddpm", "the parameterisation (x0 + min-SNR vs eps), same backbone and steps"),
    ("ssd_convex", "ddpm_x0", "the resolution ladder (3 levels vs 1), same parameterisation"),
    ("ssd_convex", "ddpm", "SSD against the DDPM reference, equal steps"),
    ("ssd_equal", "ssd_convex", "the ladder schedule (equal vs convex-0.5)"),
    ("ssd_full_unet", "ssd_convex", "Flexi-UNet vs the full UNet at every step"),
    ("sd_distilled", "sd_plain", "distillation from the teacher (gated student)"),
    ("sd_plain", "sd_nogate", "the wavelet gates (no teacher)"),
    ("sd_distilled", "ddpm", "the student against its teacher"),
]


def _num(x, fmt: str = "{:.3g}") -> str:
    return "n/a" if x is None else fmt.format(x)


def _relative(path: str) -> str:
    """``path`` relative to the working directory when it lies below it (results are committed)."""
    p = Path(path).resolve()
    return str(p.relative_to(Path.cwd())) if p.is_relative_to(Path.cwd()) else path


def ci(r: dict, key: str = "fid", fmt: str = "{:.3g}") -> str:
    lo, hi = r[f"{key}_ci95"]
    return f"{fmt.format(r[key])} [{fmt.format(lo)}, {fmt.format(hi)}]"


def verdict(a: dict, b: dict, names: tuple[str, str]) -> str:
    s = separable(tuple(a["fid_ci95"]), tuple(b["fid_ci95"]))
    if s == 0:
        return "not separable (95% intervals overlap)"
    better, worse = names if s < 0 else names[::-1]
    return f"`{better}` better than `{worse}`"


def table(runs: list[dict]) -> str:
    if not runs:
        return "(no runs)\n"
    ranks = rank_by_intervals({r["run"]: tuple(r["fid_ci95"]) for r in runs})
    cols = ["run", "params", "train GFLOPs/img", "sample GFLOPs/img", "train img/s", "sample img/s",
            f"{runs[0]['feature_extractor']} [95% CI]", "rank", "KID [95% CI]", "KID subset std", "N", "sampler steps",
            "train s (load)", "steps in DDPM time"]  # fmt: skip
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in runs:
        train = _num(r["train_gflops_per_image"])
        if r["teacher_gflops"]:
            train += f" (+{_num(r['teacher_gflops'])} teacher fwd)"
        load = r.get("load", {}).get("train_start")
        row = [f"`{r['run']}`", f"{r['params'] / 1e6:.3f}M", train, _num(r["sample_gflops_per_image"]),
               _num(r["train_images_per_s"], "{:.1f}"), _num(r["sample_images_per_s"], "{:.1f}"), ci(r), str(ranks[r["run"]]),
               ci(r, "kid", "{:.3g}"), _num(r["kid_std"], "{:.2g}"), str(r["num_samples"]) + (" (low)" if r["low_sample"] else ""),
               str(r["steps"]), (_num(r["train_seconds"], "{:.0f}") + (f" ({load:.1f})" if load is not None else "")),
               _num(r["steps_in_ddpm_time"], "{}")]  # fmt: skip
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def reference_table(rows: list[dict]) -> str:
    lines = ["| reference | N | FID [95% CI] | KID [95% CI] | KID subset std |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| `{r['run']}`: {r['description']} | {r['num_samples']} | {ci(r)} | {ci(r, 'kid')} | {_num(r['kid_std'], '{:.2g}')} |")
    return "\n".join(lines) + "\n"


def pairs_section(by_run: dict) -> list[str]:
    lines = []
    for a, b, what in PAIRS:
        if a in by_run and b in by_run:
            lines.append(f"- {what}: `{a}` {ci(by_run[a])} vs `{b}` {ci(by_run[b])}: **{verdict(by_run[a], by_run[b], (a, b))}**")
    return lines


def compute_section(by_run: dict) -> list[str]:
    """FID at equal steps, equal training FLOPs and equal wall-clock, each against DDPM's end of training (the same
    N); the checkpoints are taken at those steps (none is interpolated)."""
    ddpm = by_run.get("ddpm")
    if ddpm is None or not ddpm.get("checkpoints"):
        return ["(needs the ddpm run trained here)"]
    ref = next(q for q in ddpm["checkpoints"] if q["step"] == ddpm["train_steps"])
    lines = [f"DDPM at the end of training (step {ref['step']}, {ref['train_gflops_total']:.4g} training GFLOPs, "
             f"{ref['train_seconds']:.0f} s): FID {ci(ref)} at N = {ref['num_samples']}.\n",
             "| run | budget | step | training GFLOPs | training s | FID [95% CI] | vs DDPM |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, r in by_run.items():
        if name == "ddpm" or not r.get("checkpoints"):
            continue
        for q in r["checkpoints"]:
            budgets = [b for b in q["labels"] if b.startswith("DDPM") or b == "100% steps"]
            for b in budgets:
                label = "equal steps" if b == "100% steps" else b.replace("DDPM ", "equal ")
                lines.append(f"| `{name}` | {label} | {q['step']} | {q['train_gflops_total']:.4g} | {q['train_seconds']:.0f} "
                             f"| {ci(q)} | {verdict(q, ref, (name, 'ddpm'))} |")  # fmt: skip
        lines += [f"| `{name}` | note | | | | {n} | |" for n in r.get("budget_notes", [])]
    return lines


def pareto_table(runs: list[dict]) -> str:
    lines = ["| run | sampler | steps (requested / taken) | sample GFLOPs/img | FID [95% CI] | N |", "|---|---|---|---|---|---|"]
    for r in runs:
        for q in sorted(r.get("pareto", []), key=lambda q: (q["sampler"], q["requested_steps"])):
            s = "DDIM, eta = 0" if q["sampler"] == "ddim" else "ancestral"
            lines.append(f"| `{r['run']}` | {s} | {q['requested_steps']} / {q['steps']} | {q['sample_gflops_per_image']:.3g} "
                         f"| {ci(q)} | {q['num_samples']} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def sd_section(by_run: dict) -> list[str]:
    ddpm = by_run.get("ddpm")
    lines = ["| variant | run | params | teacher/student sampling MACs | FID [95% CI] | KID [95% CI] | vs `sd_nogate` |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    base = by_run.get("sd_nogate")
    for variant, name in SD_ABLATION.items():
        r = by_run.get(name)
        if r is None:
            continue
        ratio = ddpm["sample_gflops_per_image"] / r["sample_gflops_per_image"] if ddpm else None
        vs = verdict(r, base, (name, "sd_nogate")) if base is not None and name != "sd_nogate" else ""
        lines.append(f"| {variant} | `{name}` | {r['params']:,} | {_num(ratio, '{:.1f}x')} | {ci(r)} | {ci(r, 'kid')} | {vs} |")
    teach = next((r for r in by_run.values() if r.get("teacher_checkpoint")), None)
    if teach is not None:
        lines.append(f"\nTeacher: `{_relative(teach['teacher_checkpoint'])}` (the suite's `ddpm` run, step {teach['teacher_steps']}, "
                     f"sha1 {teach['teacher_sha1']}).")  # fmt: skip
    return lines


def timing_table(results: dict) -> str:
    lines = ["| run | fit s (CPU s) | train FLOPs count s | sampling FLOPs count s | sample s (CPU s) | features s | score s "
             "| curves s (CPU s) | load (train start/end, sample) |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in results["runs"]:
        t, ld = r["timings"], r.get("load", {})
        cpu = lambda k: f" ({t[k]:.0f})" if t.get(k) is not None else ""  # noqa: E731
        lines.append(f"| `{r['run']}` | {_num(t.get('fit_s'), '{:.0f}')}{cpu('fit_cpu_s')} | {_num(t.get('train_flops_s'), '{:.1f}')} | "
                     f"{_num(t.get('sampling_flops_s'), '{:.1f}')} | {t['sample_s']:.0f}{cpu('sample_cpu_s')} | {t['features_s']:.1f} | "
                     f"{t['score_s']:.1f} | {t['curves_s']:.0f}{cpu('curves_cpu_s')} | {ld.get('train_start')}/{ld.get('train_end')}, {ld.get('sample')} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def markdown(results: dict) -> str:
    p, hw, runs = recorded_preset(results), results["hardware"], results["runs"]
    by_run = {r["run"]: r for r in runs}
    label, acc = results.get("feature_extractor", "FID"), results.get("classifier_accuracy")
    warn = ""
    if p["low_sample"]:
        warn = (f"\n> **Low-sample run:** {p['num_samples']} samples per model (paper-like is 10k+). FID is biased "
                "upwards at small N; these numbers rank the models of this run only.\n")  # fmt: skip
    sampler = "DDIM (eta = 0)" if p["sampler"] == "ddim" else "ancestral"
    parts = [
        f"# Benchmark: preset `{p['name']}`\n",
        f"Command: `{results['command']}`  \nHardware: {hw['cpu_model']}, {hw['cpu_cores']} cores ({hw['torch_threads']} "
        f"torch threads), GPU: {hw['gpu'] or 'none'}; torch {hw['torch']}, lightning {hw['lightning']}, Python "
        f"{hw['python']}; precision {p['precision']}. Timings were taken at the 1-minute load averages shown (a busy machine makes them upper bounds).\n",
        warn, TABLE_START, table(runs), TABLE_END,
        f"\nRank: 1 + the number of runs whose FID interval lies wholly below this one's (shared ranks: not separable). "
        f"{label}, classifier test accuracy {_num(acc, '{:.4f}')}; N generated samples against {results.get('num_reference')} "
        f"real test images; main sampler {sampler}, {p['sample_steps']} steps.\n",
        "\n## Reference rows (scored exactly as the models)\n", reference_table(results.get("reference", [])),
        "\n## Which differences the intervals separate\n", *pairs_section(by_run),
        "\n## Equal training FLOPs and equal wall-clock\n",
        f"Checkpoints are saved at {'/'.join(f'{f:.0%}' for f in (*p['checkpoints'], 1.0))} of the steps and, for the budget runs ({', '.join(p['budget_runs'])}), "
        f"training goes on (at most {p['max_extend']}x the steps) to a checkpoint at DDPM's total training FLOPs and one at "
        "DDPM's training wall-clock; other runs get the wall-clock checkpoint only when they reach it within their steps. "
        f"Each is scored with {min(p['curve_samples'], p['num_samples'])} samples (the end-of-training one: the first of its "
        "main samples). Nothing is interpolated.\n", *compute_section(by_run),
        "\n## Pareto: FID against sampling GFLOPs per image\n", pareto_table(runs),
        "\n## Spectral Diffusion ablation (same slim width, steps and seed)\n", *sd_section(by_run),
        "\n`sd_ablation_spectrum.png`: the radially averaged power spectrum of each variant's samples (first 1000) "
        "against real test images, and their ratio.\n",
        "\n## Settings\n",
        "Columns, FLOP counting, the intervals and the stated choices: docs/benchmarks.md. FID/KID intervals: "
        f"{p['resamples']} bootstrap resamples; samples: lossless PNG from the EMA weights, image i seeded by "
        f"({p['seed']}, i); training: AdamW, gradient clipping 1.0, random horizontal flips. Preset: "
        + ", ".join(f"{k} {v}" for k, v in p.items()) + ".",
        "\n## Stage timings (for estimating a preset's time)\n",
        f"This invocation: {results.get('total_seconds', 0):.0f} s wall, {results.get('total_cpu_seconds', 0):.0f} CPU s, load "
        f"average {results.get('load_end')} at its end.",
        f"Classifier and reference features: {results.get('judge_seconds', 0):.0f} s ({results.get('judge_cpu_seconds', 0):.0f} CPU s); "
        f"reference rows: {results.get('reference_seconds', 0):.0f} s. CPU s: this process's CPU time (all threads); on "
        "a busy machine it estimates the quiet wall-clock better than the wall-clock does.\n", timing_table(results),
        "\n## Plots\n", *[f"- `{name}`" for name in results.get("plots", [])],
    ]  # fmt: skip
    return "\n".join(parts) + "\n"


def update_readme(results: Path, readme: Path) -> str:
    """Replace the README's table block with the one in ``results`` (a results.md); returns a one-line summary."""
    found, text = _BLOCK.search(Path(results).read_text()), Path(readme).read_text()
    for path, match in ((results, found), (readme, _BLOCK.search(text))):
        if match is None:
            raise SystemExit(f"error: {path} has no {TABLE_START} ... {TABLE_END} block")
    try:
        source = Path(results).resolve().relative_to(Path(readme).resolve().parent)
    except ValueError:
        source = Path(results)
    new = (f"{TABLE_START}\n<!-- generated from {source} by `python -m benchmarks readme`; do not edit -->\n"
           f"{found.group(1).strip(chr(10))}\n{TABLE_END}")
    Path(readme).write_text(_BLOCK.sub(lambda _: new, text, count=1))
    return f"Wrote the table of {source} into {readme}"
