"""PNG plots of probes over training time (matplotlib's object API: no pyplot, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

COLORS = {"icl": "tab:blue", "iwl": "tab:orange"}
#: A figure's panels: (y label, the table's columns drawn in it).
Panels = Sequence[tuple[str, Sequence[str]]]


def _steps_axis(axes: Axes) -> None:
    # Checkpoints are log-spaced early and even later; symlog shows both (and step 0).
    axes.set_xscale("symlog", linthresh=1)
    axes.set_xlabel("training step")
    axes.grid(alpha=0.3)


def _chance_line(axes: Axes, table: pd.DataFrame) -> None:
    """The accuracy of guessing, 1/L, which a probe's table carries as ``chance``."""
    if "chance" in table:
        axes.axhline(table.chance.iloc[0], color="gray", lw=0.8, ls=":", label="chance")


def _accuracy_axis(axes: Axes, table: pd.DataFrame) -> None:
    _steps_axis(axes)
    axes.set_ylim(0, 1.02)
    _chance_line(axes, table)
    axes.set_ylabel("accuracy")


def plot_ablation(table: pd.DataFrame, title: str, path: str | Path) -> None:
    """ICL and IWL accuracy over training, intact (solid) and ablated (dashed), and chance."""
    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.subplots()
    for name, color in COLORS.items():
        axes.plot(table.step, table[f"{name}_acc"], color=color, label=f"{name.upper()} intact")
        axes.plot(table.step, table[f"{name}_acc_ablated"], color=color, ls="--", label=f"{name.upper()} ablated")
    _accuracy_axis(axes, table)
    axes.set_title(title)
    axes.legend()
    figure.savefig(path, dpi=120)


def plot_columns(table: pd.DataFrame, panels: Panels, title: str, path: str | Path | BinaryIO) -> None:
    """One panel per (ylabel, columns) pair, every column a line over training steps; PNG to
    ``path`` (a file name, or a binary stream such as the HTML report's buffer)."""
    figure = Figure(figsize=(7, 3 * len(panels)), layout="constrained")
    for axes, (ylabel, columns) in zip(figure.subplots(len(panels), squeeze=False)[:, 0], panels):
        for column in columns:
            axes.plot(table.step, table[column], label=column)
        if "accuracy" in ylabel:
            _chance_line(axes, table)
        _steps_axis(axes)
        axes.set_ylabel(ylabel)
        axes.legend(fontsize="small")
    figure.suptitle(title)
    figure.savefig(path, dpi=120)


def _starting(table: pd.DataFrame, prefix: str) -> list[str]:
    return [column for column in table.columns if column.startswith(prefix)]


#: A run's metrics log (``Run.metrics``): accuracy and loss on every evaluation set.
METRICS_PANELS: Panels = [
    ("accuracy", ["train_acc", "icl_acc", "iwl_acc"]),
    ("loss", ["train_loss", "icl_loss", "iwl_loss"]),
]


def probe_panels(table: pd.DataFrame) -> Panels:
    """``probes.over_time.probe_run``'s table: accuracy, attention scores per head, direct logit
    attribution of every component on the ICL and IWL sets."""
    return [
        ("accuracy", ["icl_acc", "iwl_acc"]),
        ("attention score", _starting(table, "match") + _starting(table, "prev")),
        ("DLA toward target, ICL set", _starting(table, "icl_dla_")),
        ("DLA toward target, IWL set", _starting(table, "iwl_dla_")),
    ]


def independence_panels(table: pd.DataFrame) -> Panels:
    """``probes.independence.independence_run``'s table: the cross-ablation accuracies and the
    interaction term over training."""
    return [
        ("ICL accuracy", _starting(table, "icl_acc")),
        ("IWL accuracy", _starting(table, "iwl_acc")),
        ("interaction / |logit|", [column for column in table.columns if column.endswith("interaction")]),
    ]
