"""The benchmarks, run from the checkout (not installed): ``python -m benchmarks --help``; see README.md here.

``suite/`` compares DDPM, SSD and SD (train, sample, FID/KID, FLOPs), ``speed/`` times them (CPU A/B against a
revision, step profile, the GPU benchmark), ``studies/`` holds the paper analyses. Each writes to its ``results/``.
"""
