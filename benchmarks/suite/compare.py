"""Two suite results side by side, e.g. the same preset in fp32 and with ``--precision bf16-mixed``.

For every run both hold: FID [95% CI] of each and whether the intervals separate them, training and sampling
images/s and their ratio, and the mean training loss over the last 20 % of the steps; ``compare_loss.png`` overlays
the training-loss curves. Nothing is recomputed: it reads two ``results.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

from scale_space_diffusion.metrics.intervals import separable

from .presets import recorded_preset
from .report import ci


def _label(results: dict, path: Path) -> str:
    p = recorded_preset(results)
    seed = f" train seed {p['train_seed']}" if p["train_seed"] is not None else ""
    return f"{p['name']} {p['precision']}{seed} ({path.parent.name})"


def _tail_loss(r: dict, fraction: float = 0.2) -> float | None:
    """Mean of the last ``fraction`` of the loss windows up to ``train_steps`` (a budget run trains on past it)."""
    curve = r.get("train_loss_curve")
    if not curve:
        return None
    curve = curve[: -(-r["train_steps"] // r["train_loss_window"])]
    tail = curve[-max(1, round(fraction * len(curve))) :]
    return sum(tail) / len(tail)


def _fmt(x: float | None, spec: str = "{:.4f}") -> str:
    return "n/a" if x is None else spec.format(x)


def compare(a_path: Path, b_path: Path, out: Path) -> Path:
    """Write ``out/compare.md`` (and ``out/compare_loss.png`` when both hold loss curves); returns its path."""
    a, b = (json.loads(Path(p).read_text()) for p in (a_path, b_path))
    la, lb = _label(a, Path(a_path)), _label(b, Path(b_path))
    runs_b = {r["run"]: r for r in b["runs"]}
    shared = [(r, runs_b[r["run"]]) for r in a["runs"] if r["run"] in runs_b]
    if not shared:
        raise SystemExit(f"error: {a_path} and {b_path} share no run")
    lines = [f"# {lb} against {la}\n", f"A: `{a_path}` (`{a['command']}`)  ", f"B: `{b_path}` (`{b['command']}`)\n",
             "| run | FID A [95% CI] | FID B [95% CI] | FID | train img/s A | B | B/A | sample img/s A | B | B/A "
             "| loss A (last 20 %) | loss B |", "|" + "---|" * 12]  # fmt: skip
    for ra, rb in shared:
        s = separable(tuple(ra["fid_ci95"]), tuple(rb["fid_ci95"]))
        verdict = "not separable" if s == 0 else ("A better" if s < 0 else "B better")
        cells = [f"`{ra['run']}`", ci(ra), ci(rb), verdict]
        for key in ("train_images_per_s", "sample_images_per_s"):
            cells += [f"{ra[key]:.1f}", f"{rb[key]:.1f}", f"{rb[key] / ra[key]:.2f}x"]
        cells += [_fmt(_tail_loss(ra)), _fmt(_tail_loss(rb))]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(f"\nN = {shared[0][0]['num_samples']} (A) and {shared[0][1]['num_samples']} (B) samples per model; "
                 "FID from the same feature extractor when both say so: "
                 f"A {a.get('feature_extractor')}, B {b.get('feature_extractor')}.")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    if all(ra.get("train_loss_curve") and rb.get("train_loss_curve") for ra, rb in shared):
        _loss_plot(shared, la, lb, out / "compare_loss.png")
        lines.append("\n`compare_loss.png`: the training loss per window of steps, A solid, B dashed.")
    text = "\n".join(lines) + "\n"
    (out / "compare.md").write_text(text)
    return out / "compare.md"


def _loss_plot(shared: list[tuple[dict, dict]], la: str, lb: str, path: Path) -> None:
    from ..figure import plt, save

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (ra, rb) in enumerate(shared):
        for r, ls, label in ((ra, "-", la), (rb, "--", lb)):
            w, curve = r["train_loss_window"], r["train_loss_curve"]
            ax.plot([w * (k + 0.5) for k in range(len(curve))], curve, color=f"C{i}", ls=ls, label=f"{r['run']}: {label}")
    ax.set(yscale="log", xlabel="optimisation step", ylabel="training loss (window mean)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save(fig, path)
