"""The suite's PNG plots: FID vs sampling GFLOPs (Pareto), FID vs training GFLOPs and seconds, samples side by side,
the SSD ladder, the SD ablation's radial power spectra, and compare's training-loss curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import torch
from PIL import Image

from scale_space_diffusion.diffusion.ladder import ResolutionLadder
from scale_space_diffusion.images import grid

from ..output import plt, save_figure as save
from .presets import SD_ABLATION
from .report import teacher_of


def _fid(ax, points: list[dict], x: list[float], label: str, color: str, marker: str = "o", ls: str = "-") -> None:
    err = np.array([[q["fid"] - q["fid_ci95"][0], q["fid_ci95"][1] - q["fid"]] for q in points]).T
    ax.errorbar(x, [q["fid"] for q in points], yerr=err, color=color, marker=marker, ls=ls, ms=4, capsize=2,
                label=label)


def _finish(ax, results: dict, n: int, xlabel: str) -> None:
    """Log axes, the real-data floor at ``n`` samples, grid and legend."""
    for r in results["reference"]:
        if r["run"] == "train_vs_test" and r["num_samples"] == n:
            ax.axhline(r["fid"], color="grey", ls=":", lw=1, label=f"real train vs test, N = {n}")
    ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel=results["feature_extractor"] + " [95% CI]")
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 5)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)


def pareto(results: dict, path: Path) -> Path:
    """FID against sampling GFLOPs per image, each run at several DDIM (circles) and ancestral (squares) steps."""
    fig, ax = plt.subplots(figsize=(7, 5))
    n = results["runs"][0]["pareto"][0]["num_samples"]
    for i, r in enumerate(results["runs"]):
        for sampler, marker, ls in (("ddim", "o", "-"), ("ancestral", "s", "--")):
            pts = sorted([q for q in r["pareto"] if q["sampler"] == sampler], key=lambda q: q["steps"])
            x, label = [q["sample_gflops_per_image"] for q in pts], "DDIM eta=0" if sampler == "ddim" else "ancestral"
            if pts:
                _fid(ax, pts, x, f"{r['run']} ({label})", f"C{i}", marker, ls)
            for q, xv in zip(pts, x):
                ax.annotate(str(q["requested_steps"]), (xv, q["fid"]), textcoords="offset points", xytext=(3, 3),
                            fontsize=6)  # fmt: skip
    ax.set_title(f"Quality vs sampling cost, N = {n} per point")
    _finish(ax, results, n, "sampling GFLOPs per image (whole trajectory; labels: sampler steps)")
    return save(fig, path)


def training_curves(results: dict, path: Path) -> Path:
    """FID of the checkpoints against cumulative training GFLOPs and against training seconds."""
    runs = [r for r in results["runs"] if r["checkpoints"]]
    n = runs[0]["checkpoints"][0]["num_samples"] if runs else 0
    ddpm = next((r for r in runs if r["run"] == "ddpm"), None)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, key, xlabel in ((axes[0], "train_gflops_total", "training GFLOPs (student + teacher forward)"),
                            (axes[1], "train_seconds", "training seconds (this machine, saves excluded)")):  # fmt: skip
        for i, r in enumerate(runs):
            pts = sorted(r["checkpoints"], key=lambda q: q["step"])
            _fid(ax, pts, [q[key] for q in pts], r["run"], f"C{i}")
        if ddpm is not None:
            at = next(q[key] for q in ddpm["checkpoints"] if q["step"] == ddpm["train_steps"])
            ax.axvline(at, color="k", ls="--", lw=0.8)
        ax.set_title(f"FID during training, N = {n} per checkpoint (dashed: DDPM's budget)", fontsize=9)
        _finish(ax, results, n, xlabel)
    return save(fig, path)


def sample_grids(runs: list[dict], path: Path, per_side: int = 4) -> Path:
    """The first per_side^2 samples of every model (the same seeds), one panel per model."""
    cols = min(len(runs), 5)
    fig, axes = plt.subplots(-(-len(runs) // cols), cols, figsize=(2.6 * cols, 3.0 * -(-len(runs) // cols)),
                             squeeze=False, layout="constrained")  # fmt: skip
    for ax in axes.flat:
        ax.axis("off")
    for ax, r in zip(axes.flat, runs):
        files = sorted(Path(r["samples_dir"]).glob("[0-9]*.png"))[: per_side * per_side]
        images = torch.stack([torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1) for f in files])
        ax.imshow(grid(images, per_side, pad=1).permute(1, 2, 0), interpolation="nearest")
        ax.set_title(f"{r['run']}\nFID {r['fid']:.4g}", fontsize=9)
    return save(fig, path, tight=False)


def ladder(path: Path, image_size: int, T: int, num_levels: int = 3) -> Path:
    """r(t) over t for the convex-0.5 and equal ladders."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for schedule, label in (("convex", "convex (gamma 0.5)"), ("equal", "equal")):
        resolutions = ResolutionLadder(image_size, num_levels, T, schedule, 0.5).t2res
        ax.step(np.arange(T), resolutions, where="post", label=label)
    ax.set_yscale("log", base=2)
    ax.set_yticks(ResolutionLadder(image_size, num_levels, T).resolutions)
    ax.get_yaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set(xlabel="timestep t", ylabel="resolution r(t) [px]", title=f"SSD ladder, {num_levels} levels, T = {T}")
    ax.legend()
    ax.grid(alpha=0.3)
    return save(fig, path)


def sd_ablation_spectrum(results: dict, path: Path) -> Path | None:
    """Radially averaged power spectrum of each SD variant's samples (and the teacher's) against real test images."""
    by_run, real = {r["run"]: r for r in results["runs"]}, np.array(results["real_radial_power"])
    teacher = teacher_of(by_run)
    shown = [(v, by_run[n]) for v, n in (*SD_ABLATION.items(), (f"teacher ({teacher})", teacher)) if n in by_run]
    if not shown:
        return None
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    f = (np.arange(len(real)) + 0.5) / len(real)
    a.plot(f, real, "k-", lw=2, label="real (test)")
    for i, (variant, r) in enumerate(shown):
        power, ls = np.array(r["radial_power"]), "--" if variant.startswith("teacher") else "-"
        a.plot(f, power, ls, color=f"C{i}", label=f"{variant}: {r['run']}")
        ratio = power / np.maximum(real, np.finfo(float).tiny)
        b.plot(f, ratio, ls, color=f"C{i}", label=f"{variant}, FID {r['fid']:.3g}")
    b.axhline(1, color="k", lw=1)
    for ax, ylabel, title in ((a, "power |FFT2|^2 (radial mean)", "Frequency bias: radial power spectrum"),
                              (b, "samples / real", "ratio to real (below 1: missing power)")):  # fmt: skip
        ax.set(yscale="log", xlabel="radial frequency |k| / k_max", ylabel=ylabel)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save(fig, path)


def all_plots(results: dict, out: Path) -> list[str]:
    made = [pareto(results, out / "fid_vs_sample_gflops.png"), training_curves(results, out / "fid_vs_training.png"),
            sample_grids(results["runs"], out / "samples_side_by_side.png"),
            ladder(out / "ssd_ladder.png", results["preset"]["image_size"], results["preset"]["timesteps"]),
            sd_ablation_spectrum(results, out / "sd_ablation_spectrum.png")]  # fmt: skip
    return [m.name for m in made if m is not None]


def loss_curves(shared: list[tuple[dict, dict]], la: str, lb: str, path: Path) -> Path:
    """compare's plot: the training-loss curves of the runs two results share, A solid, B dashed."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (ra, rb) in enumerate(shared):
        for r, ls, label in ((ra, "-", la), (rb, "--", lb)):
            w, curve = r["train_loss_window"], r["train_loss_curve"]
            x = [w * (k + 0.5) for k in range(len(curve))]
            ax.plot(x, curve, color=f"C{i}", ls=ls, label=f"{r['run']}: {label}")
    ax.set(yscale="log", xlabel="optimisation step", ylabel="training loss (window mean)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save(fig, path)
