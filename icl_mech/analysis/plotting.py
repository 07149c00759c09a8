"""Where figures go (PNG, small, for docs, plus the CSV of the numbers drawn), and the ticks
every figure labels its axes with, so each swept value and each K* can be read off the plot."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axis import Axis  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator  # noqa: E402

from icl_mech.errors import ConfigError  # noqa: E402

#: Most labelled ticks on an axis of swept values: a value nearer its labelled neighbour than
#: 1/MAX_TICKS of the axis (K = 1722 beside 1820) is left unlabelled rather than overprinted.
MAX_TICKS = 10


class MissingRuns(ConfigError):
    """The sweep holds no runs of the kind an analysis needs (the message says which)."""


def _number(value: float, _position: object = None) -> str:
    """A tick label as a plain number: 4096, not 2^12 or 4.096e3; 0.5 and 1.5 as such."""
    return f"{value:.0f}" if float(value).is_integer() else f"{value:g}"


def tick_swept(axis: Axis, values: Iterable[float]) -> None:
    """Label every swept value on ``axis`` (log or linear: set the scale first) and nothing else.

    Matplotlib's own ticks label decades on a log axis (one label, "10^3", for K = 256 to 4096)
    and fractions on a linear one (B = 1.2 where only 1, 2, 4 were run); a reader needs the
    values that were run. A single value gets an axis of a factor 2 (or +-1) around it, not the
    decade either side that matplotlib draws around a lone point.
    """
    log = axis.get_scale() != "linear"
    shown = sorted({float(v) for v in values if np.isfinite(v) and (v > 0 or not log)})
    if not shown:
        return
    position = np.log10 if log else float
    span = float(position(shown[-1]) - position(shown[0]))
    kept = [shown[0]]
    for value in shown[1:]:
        if position(value) - position(kept[-1]) >= span / MAX_TICKS:
            kept.append(value)
    axis.set_major_locator(FixedLocator(kept))
    axis.set_major_formatter(FuncFormatter(_number))
    axis.set_minor_locator(NullLocator())
    if len(shown) == 1:
        (value,) = shown
        limits = (value / 2, value * 2) if log else (value - 1, value + 1)
        (axis.axes.set_xlim if axis.axis_name == "x" else axis.axes.set_ylim)(*limits)


def tick_log_values(axis: Axis) -> None:
    """Label a log axis of measured values (K*, steps) at 1, 2 and 5 times each power of ten,
    as plain numbers: an interval narrower than a decade still gets labels to read it by."""
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(_number))
    axis.set_minor_formatter(NullFormatter())


def save(figure: plt.Figure, table: pd.DataFrame, out_dir: Path, name: str) -> list[Path]:
    """Write ``name.png`` and ``name.csv`` into ``out_dir``; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png, csv = out_dir / f"{name}.png", out_dir / f"{name}.csv"
    figure.tight_layout()
    figure.savefig(png, dpi=90)
    plt.close(figure)
    table.to_csv(csv, index=False)
    return [png, csv]
