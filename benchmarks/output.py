"""What every part writes: markdown tables and cells, a result as JSON + markdown, figures (matplotlib, Agg)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["cell", "plt", "save_figure", "save_result", "table"]


def cell(x, spec: str = ".3g", missing: str = "-") -> str:
    """``x`` formatted by the format spec ``spec``; ``missing`` for None."""
    return missing if x is None else format(x, spec)


def table(header: list[str], rows: list[list]) -> str:
    """A markdown table, one line per row, ending in a newline."""
    return "\n".join("| " + " | ".join(map(str, row)) + " |" for row in [header, ["---"] * len(header), *rows]) + "\n"


def save_result(folder: Path, stem: str, res: dict, text: str) -> None:
    """Write ``stem``.json and ``stem``.md (``text``) into ``folder``, and print the markdown."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.json").write_text(json.dumps(res, indent=1))
    (folder / f"{stem}.md").write_text(text)
    print(text)


def save_figure(fig, path: Path, tight: bool = True) -> Path:
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
