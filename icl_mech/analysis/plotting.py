"""Where figures go: PNG (small, for docs) plus the CSV of the numbers drawn."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from icl_mech.errors import ConfigError  # noqa: E402


class MissingRuns(ConfigError):
    """The sweep holds no runs of the kind an analysis needs (the message says which)."""


def save(figure: plt.Figure, table: pd.DataFrame, out_dir: Path, name: str) -> list[Path]:
    """Write ``name.png`` and ``name.csv`` into ``out_dir``; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for axis in figure.axes:  # label decades only: minor labels of short log axes overlap
        for scale, ticks in ((axis.get_xscale(), axis.xaxis), (axis.get_yscale(), axis.yaxis)):
            if scale == "log":
                ticks.set_minor_formatter(plt.NullFormatter())
    png, csv = out_dir / f"{name}.png", out_dir / f"{name}.csv"
    figure.tight_layout()
    figure.savefig(png, dpi=90)
    plt.close(figure)
    table.to_csv(csv, index=False)
    return [png, csv]
