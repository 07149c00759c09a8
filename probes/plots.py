"""PNG plots of probes over training time (matplotlib's object API: no pyplot, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

COLORS = {"icl": "tab:blue", "iwl": "tab:orange"}


def _steps_axis(axes: Axes) -> None:
    # Checkpoints are log-spaced early and even later; symlog shows both (and step 0).
    axes.set_xscale("symlog", linthresh=1)
    axes.set_xlabel("training step")
    axes.grid(alpha=0.3)


def _accuracy_axis(axes: Axes) -> None:
    _steps_axis(axes)
    axes.set_ylim(0, 1.02)
    axes.axhline(0.5, color="gray", lw=0.8, ls=":")
    axes.set_ylabel("accuracy")


def plot_ablation(table: pd.DataFrame, title: str, path: str | Path) -> None:
    """ICL and IWL accuracy over training, intact (solid) and ablated (dashed)."""
    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.subplots()
    for name, color in COLORS.items():
        axes.plot(table.step, table[f"{name}_acc"], color=color, label=f"{name.upper()} intact")
        axes.plot(table.step, table[f"{name}_acc_ablated"], color=color, ls="--", label=f"{name.upper()} ablated")
    _accuracy_axis(axes)
    axes.set_title(title)
    axes.legend()
    figure.savefig(path, dpi=120)


def plot_columns(
    table: pd.DataFrame, panels: Sequence[tuple[str, Sequence[str]]], title: str, path: str | Path
) -> None:
    """One panel per (ylabel, columns) pair, every column a line over training steps."""
    figure = Figure(figsize=(7, 3 * len(panels)), layout="constrained")
    for axes, (ylabel, columns) in zip(figure.subplots(len(panels), squeeze=False)[:, 0], panels):
        for column in columns:
            axes.plot(table.step, table[column], label=column)
        _steps_axis(axes)
        axes.set_ylabel(ylabel)
        axes.legend(fontsize="small")
    figure.suptitle(title)
    figure.savefig(path, dpi=120)
