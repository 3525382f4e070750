"""PNG plots (matplotlib, Agg): the Pareto front (FID vs sampling GFLOPs), FID vs training GFLOPs and seconds,
samples side by side, the SSD ladder, and the SD ablation's radial power spectra."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image

from scale_space_diffusion.diffusion.ladder import ResolutionLadder

from ..figure import plt, save
from .presets import SD_ABLATION


def _err(points: list[dict]) -> np.ndarray:
    return np.array([[p["fid"] - p["fid_ci95"][0], p["fid_ci95"][1] - p["fid"]] for p in points]).T


def _floor(results: dict, n: int) -> float | None:
    return next((r["fid"] for r in results.get("reference", []) if r["run"] == "train_vs_test" and r["num_samples"] == n), None)


def _log_x(ax) -> None:
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 5)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def _finish(fig, ax, results: dict, n: int, path: Path) -> Path:
    floor = _floor(results, n)
    if floor is not None:
        ax.axhline(floor, color="grey", ls=":", lw=1, label=f"real train vs test, N = {n}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return save(fig, path)


def pareto(results: dict, path: Path) -> Path:
    """FID against sampling GFLOPs per image, each run at several DDIM (circles) and ancestral (squares) steps."""
    runs = [r for r in results["runs"] if r.get("pareto")]
    fig, ax = plt.subplots(figsize=(7, 5))
    n = runs[0]["pareto"][0]["num_samples"] if runs else 0
    for i, r in enumerate(runs):
        color = f"C{i % 10}"
        for sampler, marker, ls in (("ddim", "o", "-"), ("ancestral", "s", "--")):
            pts = sorted((q for q in r["pareto"] if q["sampler"] == sampler), key=lambda q: q["sample_gflops_per_image"])
            if not pts:
                continue
            x = [q["sample_gflops_per_image"] for q in pts]
            ax.errorbar(x, [q["fid"] for q in pts], yerr=_err(pts), color=color, marker=marker, ls=ls, ms=4, capsize=2,
                        label=f"{r['run']} ({'DDIM eta=0' if sampler == 'ddim' else 'ancestral'})")  # fmt: skip
            for q, xv in zip(pts, x):
                ax.annotate(str(q["requested_steps"]), (xv, q["fid"]), textcoords="offset points", xytext=(3, 3), fontsize=6)
    _log_x(ax)
    ax.set(yscale="log", xlabel="sampling GFLOPs per image (whole trajectory; labels: sampler steps)",
           ylabel=results.get("feature_extractor", "FID") + " [95% CI]", title=f"Quality vs sampling cost, N = {n} per point")
    return _finish(fig, ax, results, n, path)


def training_curves(results: dict, path: Path) -> Path:
    """FID of the checkpoints against cumulative training GFLOPs and against training seconds."""
    runs = [r for r in results["runs"] if r.get("checkpoints")]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    n = runs[0]["checkpoints"][0]["num_samples"] if runs else 0
    ddpm = next((r for r in runs if r["run"] == "ddpm"), None)
    for ax, key, xlabel in ((axes[0], "train_gflops_total", "training GFLOPs (student + teacher forward)"),
                            (axes[1], "train_seconds", "training seconds (this machine, saves excluded)")):  # fmt: skip
        for i, r in enumerate(runs):
            pts = sorted(r["checkpoints"], key=lambda q: q["step"])
            ax.errorbar([q[key] for q in pts], [q["fid"] for q in pts], yerr=_err(pts), color=f"C{i % 10}", marker="o",
                        ms=4, capsize=2, label=r["run"])  # fmt: skip
        if ddpm is not None:
            at = next(q for q in ddpm["checkpoints"] if q["step"] == ddpm["train_steps"])
            ax.axvline(at[key], color="k", ls="--", lw=0.8)
        _log_x(ax)
        ax.set(yscale="log", xlabel=xlabel, ylabel=results.get("feature_extractor", "FID") + " [95% CI]")
        ax.set_title(f"FID during training, N = {n} per checkpoint (dashed: DDPM's budget)", fontsize=9)
        if ax is axes[0]:
            ax.grid(alpha=0.3)
    return _finish(fig, axes[1], results, n, path)


def _first_images(samples_dir: str, n: int) -> np.ndarray:
    files = sorted(Path(samples_dir).glob("[0-9]*.png"))[:n]
    return np.stack([np.array(Image.open(f).convert("RGB")) for f in files])


def sample_grids(runs: list[dict], path: Path, per_side: int = 4) -> Path:
    """The first per_side^2 samples of every model (the same seeds), one panel per model."""
    n = max(len(runs), 1)
    cols = min(n, 5)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 3.0 * rows), squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for ax, r in zip(axes.flat, runs):
        imgs = _first_images(r["samples_dir"], per_side * per_side)
        k, (h, w) = len(imgs), imgs.shape[1:3]
        canvas = np.full((per_side * (h + 1), per_side * (w + 1), 3), 255, np.uint8)
        for i in range(k):
            y, x = divmod(i, per_side)
            canvas[y * (h + 1) : y * (h + 1) + h, x * (w + 1) : x * (w + 1) + w] = imgs[i]
        ax.imshow(canvas, interpolation="nearest")
        ax.set_title(f"{r['run']}\nFID {r['fid']:.4g}", fontsize=9)
    return save(fig, path, tight=False)


def ladder(path: Path, image_size: int = 32, num_levels: int = 3, T: int = 1000) -> Path:
    """r(t) over t for the convex-0.5 and equal ladders."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    t = np.arange(T)
    for schedule in ("convex", "equal"):
        lad = ResolutionLadder(image_size, num_levels, T, schedule, 0.5)
        ax.step(t, lad.t2res, where="post", label=f"{schedule}" + (" (gamma 0.5)" if schedule == "convex" else ""))
    ax.set_yscale("log", base=2)
    ax.set_yticks(ResolutionLadder(image_size, num_levels, T).resolutions)
    ax.get_yaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set(xlabel="timestep t", ylabel="resolution r(t) [px]", title=f"SSD resolution ladder, {num_levels} levels, T = {T}")
    ax.legend()
    ax.grid(alpha=0.3)
    return save(fig, path)


def sd_ablation_spectrum(results: dict, path: Path) -> Path | None:
    """Radially averaged power spectrum of each SD variant's samples (and the teacher's) against real test images."""
    by_run = {r["run"]: r for r in results["runs"]}
    real = np.array(results.get("real_radial_power") or [])
    shown = [(v, by_run[n]) for v, n in SD_ABLATION.items() if n in by_run] + \
            ([("teacher (ddpm)", by_run["ddpm"])] if "ddpm" in by_run else [])  # fmt: skip
    if not shown or not len(real):
        return None
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    f = (np.arange(len(real)) + 0.5) / len(real)
    a.plot(f, real, "k-", lw=2, label="real (test)")
    for i, (variant, r) in enumerate(shown):
        p = np.array(r["radial_power"])
        ls = "--" if variant.startswith("teacher") else "-"
        a.plot(f, p, ls, color=f"C{i}", label=f"{variant}: {r['run']}")
        b.plot(f, p / np.maximum(real, np.finfo(float).tiny), ls, color=f"C{i}", label=f"{variant}, FID {r['fid']:.3g}")
    b.axhline(1, color="k", lw=1)
    for ax, ylabel in ((a, "power |FFT2|^2 (radial mean)"), (b, "samples / real")):
        ax.set(yscale="log", xlabel="radial frequency |k| / k_max", ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    a.set_title("Frequency bias: radial power spectrum", fontsize=9)
    b.set_title("ratio to real (below 1: missing power)", fontsize=9)
    return save(fig, path)


def all_plots(results: dict, out: Path) -> list[str]:
    runs, p = results["runs"], results["preset"]
    made = [pareto(results, out / "fid_vs_sample_gflops.png"), training_curves(results, out / "fid_vs_training.png"),
            sample_grids(runs, out / "samples_side_by_side.png"), ladder(out / "ssd_ladder.png", p["image_size"], 3, p["timesteps"]),
            sd_ablation_spectrum(results, out / "sd_ablation_spectrum.png")]  # fmt: skip
    return [m.name for m in made if m is not None]
