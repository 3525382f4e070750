"""The benchmarks, run from the checkout: ``python -m benchmarks --help``; suite/, speed/, studies/ (README.md)."""

from pathlib import Path

OUTPUTS = Path(__file__).parents[1] / "outputs" / "benchmark"  # a user's runs (git-ignored); results/: committed ones
