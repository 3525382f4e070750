"""PNG plots (matplotlib, Agg backend): FID vs sampling GFLOPs, samples side by side, the SSD ladder."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from scale_space_diffusion.diffusion.ladder import ResolutionLadder  # noqa: E402


def fid_vs_gflops(runs: list[dict], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for i, r in enumerate(runs):
        ax.scatter(r["sample_gflops_per_image"], r["fid"], s=40)
        ax.annotate(r["run"], (r["sample_gflops_per_image"], r["fid"]), textcoords="offset points",
                    xytext=(5, 4 if i % 2 else -10), fontsize=8)  # alternate sides: close points stay readable
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 5)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("sampling GFLOPs per image (whole trajectory)")
    ax.set_ylabel(runs[0]["feature_extractor"] if runs else "FID")
    low = " (low-sample)" if runs and runs[0]["low_sample"] else ""
    ax.set_title(f"Quality vs sampling cost, N = {runs[0]['num_samples'] if runs else 0}{low}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _first_images(samples_dir: str, n: int) -> np.ndarray:
    files = sorted(Path(samples_dir).glob("[0-9]*.png"))[:n]
    return np.stack([np.array(Image.open(f).convert("L")) for f in files])


def sample_grids(runs: list[dict], path: Path, per_side: int = 4) -> Path:
    """The first per_side^2 samples of every model (the same seeds), one panel per model."""
    n = max(len(runs), 1)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 3.1), squeeze=False, layout="constrained")
    for ax, r in zip(axes[0], runs):
        imgs = _first_images(r["samples_dir"], per_side * per_side)
        k, (h, w) = len(imgs), imgs.shape[1:]
        canvas = np.full((per_side * (h + 1), per_side * (w + 1)), 255, np.uint8)
        for i in range(k):
            y, x = divmod(i, per_side)
            canvas[y * (h + 1) : y * (h + 1) + h, x * (w + 1) : x * (w + 1) + w] = imgs[i]
        ax.imshow(canvas, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(f"{r['run']}\nFID {r['fid']:.4g}", fontsize=9)
        ax.axis("off")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


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
    ax.set_xlabel("timestep t")
    ax.set_ylabel("resolution r(t) [px]")
    ax.set_title(f"SSD resolution ladder, {num_levels} levels, T = {T}")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def all_plots(results: dict, out: Path) -> list[str]:
    runs, p = results["runs"], results["preset"]
    made = [fid_vs_gflops(runs, out / "fid_vs_sample_gflops.png"), sample_grids(runs, out / "samples_side_by_side.png"),
            ladder(out / "ssd_ladder.png", p["image_size"], 3, p["timesteps"])]  # fmt: skip
    return [m.name for m in made]
