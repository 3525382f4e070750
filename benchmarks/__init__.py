"""Benchmarks: DDPM vs Scale Space Diffusion vs Spectral Diffusion on Fashion-MNIST 32x32.

    python -m benchmarks --preset quick      # train, sample, FID/KID, FLOPs, speed (~20 min on 2 CPU cores)
    python -m benchmarks scaling             # FLOPs of the paper-sized networks, no training
    python -m benchmarks hierarchy           # signal-dominated pixels over t vs the ladder

Files: ``presets.py`` (what each preset trains and samples), ``runs.py`` (one model: build,
train, sample, speed), ``quality.py`` (classifier and FID/KID), ``suite.py`` (the preset run),
``report.py`` and ``plots.py`` (results.json, results.md, PNG plots), ``scaling.py`` and
``hierarchy.py`` (the paper analyses). ``exact_vs_lanczos.py`` times the exact transition noise
against the authors' Lanczos approximation (``python -m benchmarks.exact_vs_lanczos``).
"""
