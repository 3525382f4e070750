"""``python -m benchmarks hierarchy``: how much of x_t is still signal, next to the SSD ladder.

Definitions (real Fashion-MNIST test images x0 in [-1, 1], linear betas, T = 1000):
- **signal-dominated pixels (DDPM)**: the fraction of pixels with |a_t x0| > sigma_t, i.e. where the
  clean signal's magnitude exceeds the noise's standard deviation in x_t = a_t x0 + sigma_t eps.
- **signal-dominated pixels (SSD)**: the same in SSD's x_t = a_t R_{1:t} x0 + sigma_t eps at r(t)
  (3-level convex ladder): |a_t R_{1:t} x0| > sigma_t over the r(t)^2 pixels.
- **signal-dominated frequencies**: the fraction of orthonormal 2-D DFT coefficients of x0 with
  a_t |X0(k)| > sigma_t (white noise has expected power sigma_t^2 in every coefficient). It is
  the quantity the ladder's relative information compares with: a resolution r keeps about
  r^2/R^2 of the R^2 coefficients (the lowest frequencies).
- **relative information of a ladder level**: r(t)^2 / R^2 (1, 1/4, 1/16 for 32/16/8 px).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from scale_space_diffusion.data import ImageDataModule
from scale_space_diffusion.diffusion.degradation import Resize
from scale_space_diffusion.diffusion.ladder import ResolutionLadder
from scale_space_diffusion.diffusion.schedule import NoiseSchedule

from ..output import plt, save_figure as save, table

T, LEVELS, SIZE = 1000, 3, 32


def curves(x0: torch.Tensor) -> dict[str, list[float]]:
    """x0 float (N, 1, R, R) in [-1, 1] -> per-t fractions (lists of length T)."""
    sched, R = NoiseSchedule.make("linear", T), x0.shape[-1]
    a, sigma = sched.abar.sqrt().float()[:, None, None], (1 - sched.abar).sqrt().float()[:, None, None]
    ladders = {s: ResolutionLadder(R, LEVELS, T, s, 0.5) for s in ("convex", "equal")}
    res = torch.tensor([ladders["convex"].res(t) for t in range(T)])
    down = {r: Resize("bilinear").down(x0.double(), r).abs().float().flatten(1) for r in ladders["convex"].resolutions}
    ssd = torch.empty(T)
    for r, amp in down.items():  # the t at resolution r
        ssd[res == r] = (a[res == r] * amp > sigma[res == r]).float().mean((1, 2))
    amp_freq = torch.fft.fft2(x0.double(), norm="ortho").abs().float().flatten(1)
    out = {"t": list(range(T)), "pixels_ddpm": (a * x0.abs().flatten(1) > sigma).float().mean((1, 2)).tolist(),
           "pixels_ssd_convex": ssd.tolist(), "frequencies": (a * amp_freq > sigma).float().mean((1, 2)).tolist()}
    return out | {f"ladder_{s}": [(lad.res(t) / R) ** 2 for t in range(T)] for s, lad in ladders.items()}


def crossing(values: list[float], level: float) -> int | None:
    """First t at which a (decreasing) curve drops below ``level``."""
    return next((t for t, v in enumerate(values) if v < level), None)


def markdown(c: dict, n: int) -> str:
    keys = ["pixels_ddpm", "pixels_ssd_convex", "frequencies", "ladder_convex", "ladder_equal"]
    lines = ["# Signal-dominated pixels over t vs the SSD ladder\n", __doc__.split("\n\n", 1)[1].strip(),
             f"\nAveraged over {n} real test images ({SIZE}x{SIZE}); ladders: {LEVELS} levels "
             f"{SIZE}/{SIZE // 2}/{SIZE // 4}.\n",
             table(["t", *keys], [[t, *(f"{c[k][t]:.3f}" for k in keys)] for t in [*range(0, T, 100), T - 1]])]
    levels = [((r / SIZE) ** 2, r) for r in (SIZE // 2, SIZE // 4)]  # ladder values equal frac on its level
    lines.append(table(["level", "r^2/R^2", "signal-dominated frequencies fall below it at t",
                        "convex ladder reaches it at t", "equal ladder at t"],
                       [[f"{r}px", f"{frac:.4g}", crossing(c["frequencies"], frac),
                         *(crossing(c[k], frac * 1.0001) for k in ("ladder_convex", "ladder_equal"))]
                        for frac, r in levels]))  # fmt: skip
    return "\n".join(lines)


def plot(c: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
    for key, label in (("pixels_ddpm", "signal-dominated pixels, DDPM x_t"),
                       ("pixels_ssd_convex", "signal-dominated pixels, SSD x_t (convex, 3L)"),
                       ("frequencies", "signal-dominated frequencies (DFT of x0)")):  # fmt: skip
        ax.plot(c["t"], c[key], label=label)
    for schedule, style in (("convex", "k--"), ("equal", "k:")):
        ax.step(c["t"], c[f"ladder_{schedule}"], style, where="post", label=f"r(t)^2/R^2, {schedule} ladder")
    ax.set(yscale="log", ylim=(1e-3, 1.05), xlabel="timestep t", ylabel="fraction")
    ax.set_title("How much of x_t is signal, vs the information each ladder level keeps", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    save(fig, path, tight=False)


def run_hierarchy(out: Path, data: ImageDataModule, num_images: int = 1000) -> dict:
    x0 = data.reference_images("test", max_samples=num_images).float() / 127.5 - 1
    c = curves(x0)
    out.mkdir(parents=True, exist_ok=True)
    (out / "hierarchy.json").write_text(json.dumps({"num_images": len(x0), **c}))
    (out / "hierarchy.md").write_text(markdown(c, len(x0)))
    plot(c, out / "hierarchy.png")
    print((out / "hierarchy.md").read_text())
    return c
