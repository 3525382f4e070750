"""The Spectral Diffusion ablation alone: plain slim net, +gating, +spectral loss, full SD (same width and steps).

    python -m benchmarks.sd_ablation [--preset quick] [--teacher <ddpm checkpoint>] [other suite options]

The ablation is part of every preset (runs sd_nogate, sd_plain, sd_nogate_distilled, sd_distilled); this runs just
those four and their teacher: the suite's own ``ddpm`` run, or ``--teacher`` (then used via ``--ckpt ddpm=...``).
FID with intervals and the frequency-bias plot (``sd_ablation_spectrum.png``) are in the preset's results.
"""

from __future__ import annotations

import sys

from .__main__ import main as suite_main
from .runs import SD_ABLATION


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--teacher" in argv:
        i = argv.index("--teacher")
        argv[i : i + 2] = ["--ckpt", f"ddpm={argv[i + 1]}"]
    suite_main([*argv, "--only", "ddpm", *SD_ABLATION.values()])


if __name__ == "__main__":
    main()
