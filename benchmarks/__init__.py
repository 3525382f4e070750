"""The benchmarks, run from the checkout: ``python -m benchmarks --help``; suite/, speed/, studies/ (README.md)."""
