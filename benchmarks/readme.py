"""Rewrite README.md's benchmark table from a results.md: the text between ``<!-- benchmark-table -->`` and
``<!-- /benchmark-table -->`` in the README becomes the same block of the results file, with one line naming it.

    python -m benchmarks readme [--results benchmarks/results/standard/results.md] [--readme README.md]
"""

from __future__ import annotations

import re
from pathlib import Path

from .report import TABLE_END, TABLE_START

_BLOCK = re.compile(re.escape(TABLE_START) + r"\n(.*?)" + re.escape(TABLE_END), re.S)


def table_block(results_md: str) -> str:
    m = _BLOCK.search(results_md)
    if m is None:
        raise SystemExit(f"error: no {TABLE_START} ... {TABLE_END} block in the results file")
    return m.group(1).strip("\n")


def update_readme(results: Path, readme: Path) -> str:
    """Replace the README's table block with the one in ``results``; returns a one-line summary."""
    block = table_block(Path(results).read_text())
    text = Path(readme).read_text()
    if _BLOCK.search(text) is None:
        raise SystemExit(f"error: {readme} has no {TABLE_START} ... {TABLE_END} markers to write between")
    try:
        source = Path(results).resolve().relative_to(Path(readme).resolve().parent)
    except ValueError:
        source = Path(results)
    new = f"{TABLE_START}\n<!-- generated from {source} by `python -m benchmarks readme`; do not edit -->\n{block}\n{TABLE_END}"
    Path(readme).write_text(_BLOCK.sub(lambda _: new, text, count=1))
    return f"Wrote the table of {source} into {readme}"
