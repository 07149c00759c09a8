"""PNG plots of probes over training time (matplotlib's object API: no pyplot, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

COLORS = {"icl": "tab:blue", "iwl": "tab:orange", "icl_swap": "tab:cyan", "iwl_iid": "tab:red"}
#: A figure's panels: (y label, the table's columns drawn in it).
Panels = Sequence[tuple[str, Sequence[str]]]


def _points(n_points: int) -> dict:
    """Markers on a line of few points: one or two checkpoints draw no visible line."""
    return {"marker": "o", "markersize": 4} if n_points <= 30 else {}


def _sets(table: pd.DataFrame) -> dict[str, str]:
    """The evaluation sets whose accuracy ``table`` has (Reddy's only in runs with them) -> colour."""
    return {name: color for name, color in COLORS.items() if f"{name}_acc" in table}


def _steps_axis(axes: Axes) -> None:
    # Checkpoints are log-spaced early and even later; symlog shows both (and step 0).
    axes.set_xscale("symlog", linthresh=1)
    axes.set_xlim(left=0)  # a horizontal line (chance) would otherwise pull the axis below step 0
    axes.set_xlabel("training step")
    axes.grid(alpha=0.3)


def _chance_line(axes: Axes, table: pd.DataFrame) -> None:
    """The accuracy of guessing, 1/L, which a probe's table carries as ``chance``, and the IWL
    sets' baselines where it carries them (``icl_mech.baselines``), in their set's colour: the
    label prior dashed, copying where the query's class is in the context (else the prior label)
    dash-dotted."""
    if "chance" in table:
        axes.axhline(table.chance.iloc[0], color="gray", lw=0.8, ls=":", label="chance")
    for name, color in _sets(table).items():
        for baseline, style in (("label_prior", "--"), ("copy_else_prior", "-.")):
            copies = baseline != "copy_else_prior" or table.get(f"{name}_copy_if_present", pd.Series([0])).iloc[0] > 0
            if f"{name}_{baseline}" in table and copies:
                level = table[f"{name}_{baseline}"].iloc[0]
                axes.axhline(level, color=color, lw=0.8, ls=style, label=f"{name} {baseline.replace('_', ' ')}")


def _accuracy_axis(axes: Axes, table: pd.DataFrame) -> None:
    _steps_axis(axes)
    axes.set_ylim(0, 1.02)
    _chance_line(axes, table)
    axes.set_ylabel("accuracy")


def plot_ablation(table: pd.DataFrame, title: str, path: str | Path) -> None:
    """ICL and IWL accuracy over training, intact (solid) and ablated (dashed), and chance."""
    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.subplots()
    for name, color in _sets(table).items():
        points = _points(len(table))
        axes.plot(table.step, table[f"{name}_acc"], color=color, label=f"{name.upper()} intact", **points)
        axes.plot(
            table.step, table[f"{name}_acc_ablated"], color=color, ls="--", label=f"{name.upper()} ablated", **points
        )
    _accuracy_axis(axes, table)
    axes.set_title(title)
    axes.legend()
    figure.savefig(path, dpi=120)


def plot_columns(table: pd.DataFrame, panels: Panels, title: str, path: str | Path | BinaryIO) -> Figure:
    """One panel per (ylabel, columns) pair, every column a line over training steps; PNG to
    ``path`` (a file name, or a binary stream such as the HTML report's buffer). Returns the figure."""
    figure = Figure(figsize=(7, 3 * len(panels)), layout="constrained")
    for axes, (ylabel, columns) in zip(figure.subplots(len(panels), squeeze=False)[:, 0], panels):
        for column in columns:
            axes.plot(table.step, table[column], label=column, **_points(len(table)))
        if "accuracy" in ylabel:
            _chance_line(axes, table)
        _steps_axis(axes)
        axes.set_ylabel(ylabel)
        axes.legend(fontsize="small")
    figure.suptitle(title)
    figure.savefig(path, dpi=120)
    return figure


def _starting(table: pd.DataFrame, prefix: str) -> list[str]:
    return [column for column in table.columns if column.startswith(prefix)]


#: A run's metrics log (``Run.metrics``): accuracy and loss on every evaluation set.
METRICS_PANELS: Panels = [
    ("accuracy", ["train_acc", "icl_acc", "iwl_acc"]),
    ("loss", ["train_loss", "icl_loss", "iwl_loss"]),
]


def probe_panels(table: pd.DataFrame) -> Panels:
    """``probes.over_time.probe_run``'s table: accuracy, attention scores per head, direct logit
    attribution of every component on the ICL and IWL sets; for an interleaved run also its
    two-layer circuit's scores and Reddy's three nested logits fitted to it."""
    circuit = [
        column for prefix in ("induction_L", "label_previous_token_L", "label_attention_L")
        for column in _starting(table, prefix)
    ]
    interleaved: Panels = [
        ("interleaved circuit score", circuit),
        ("nested logits: match (beta), readout (xi)", ["nl_match", "nl_readout"]),
        ("P(right label), nested logits and network", ["nl_model_target_prob", "nl_network_target_prob"]),
    ] if circuit else []
    return [
        ("accuracy", [f"{name}_acc" for name in _sets(table)] + _starting(table, "context_label")),
        ("attention score", _starting(table, "match") + _starting(table, "prev")),
        *interleaved,
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


#: Line colours of the LLC's weight restrictions.
RESTRICTION_COLORS = {"full": "black", "attn": "tab:blue", "mlp": "tab:orange"}


def plot_llc(table: pd.DataFrame, metrics: pd.DataFrame, title: str, path: str | Path | BinaryIO) -> None:
    """``probes.llc.llc_run``'s table over training: ICL and IWL accuracy (the run's metrics
    log), then for each data set the LLC of every weight restriction, mean and spread over chains."""
    data = list(dict.fromkeys(table["data"]))
    figure = Figure(figsize=(7, 3 * (1 + len(data))), layout="constrained")
    panels = figure.subplots(1 + len(data), squeeze=False, sharex=True)[:, 0]
    for name, color in _sets(metrics).items():
        panels[0].plot(metrics.step, metrics[f"{name}_acc"], color=color, label=f"{name.upper()} acc", **_points(len(metrics)))
    _accuracy_axis(panels[0], metrics)
    panels[0].legend(fontsize="small")
    for axes, name in zip(panels[1:], data):
        for restriction, rows in table[table["data"] == name].groupby("restriction", sort=False):
            color = RESTRICTION_COLORS.get(restriction)
            axes.plot(rows.step, rows.llc_mean, color=color, label=restriction, **_points(len(rows)))
            axes.fill_between(rows.step, rows.llc_mean - rows.llc_std, rows.llc_mean + rows.llc_std, color=color, alpha=0.2)
        _steps_axis(axes)
        axes.axhline(0, color="gray", lw=0.8, ls=":")
        axes.set_ylabel(f"LLC on {name} data")
        axes.legend(fontsize="small", title="weights (mean +- sd over chains)", title_fontsize="small")
    figure.suptitle(title)
    figure.savefig(path, dpi=120)


def plot_llc_traces(traces: Sequence[dict], burn_in: int, title: str, path: str | Path | BinaryIO) -> None:
    """Every chain's trace of n_beta (L(w_t) - L(w*)) over its SGLD steps (``llc_record``'s
    traces), one panel per (weight restriction, data), one colour per checkpoint (dark: early);
    the dotted line ends the burn-in."""
    keys = list(dict.fromkeys((trace["restriction"], trace["data"]) for trace in traces))
    steps = sorted({trace["step"] for trace in traces})
    colors = colormaps["viridis"](np.linspace(0, 0.9, len(steps)))
    figure = Figure(figsize=(7, 2.5 * len(keys)), layout="constrained")
    for axes, (restriction, data) in zip(figure.subplots(len(keys), squeeze=False)[:, 0], keys):
        for trace in traces:
            if (trace["restriction"], trace["data"]) != (restriction, data):
                continue
            color = colors[steps.index(trace["step"])]
            for chain, excess in enumerate(trace["excess"]):
                axes.plot(excess, color=color, lw=0.6, alpha=0.7, label=f"step {trace['step']}" if chain == 0 else None)
        axes.axvline(burn_in, color="gray", ls=":")
        axes.set_ylabel(f"{restriction}, {data}")
        axes.grid(alpha=0.3)
        if len(steps) <= 8:
            axes.legend(fontsize="x-small", ncol=2)
    figure.supxlabel("SGLD step")
    figure.suptitle(f"{title}\nchain traces of n_beta (L(w_t) - L(w*))")
    figure.savefig(path, dpi=120)


def plot_trajectories(trajectories, path: str | Path | BinaryIO) -> None:
    """``probes.trajectory.trajectory_pca``: each run's path through its checkpoints in PC1-PC2
    (every checkpoint marked, coloured by ICL - IWL accuracy; a square at the first, a star at
    the last), and the variance each component holds."""
    points = trajectories.points
    figure = Figure(figsize=(11, 5), layout="constrained")
    paths, shares = figure.subplots(1, 2, width_ratios=[2, 1])
    second = "pc2" if "pc2" in points else "pc1"
    for run, rows in points.groupby("run", sort=False):
        paths.plot(rows.pc1, rows[second], color="gray", lw=0.8, zorder=1)
        paths.annotate(run, (rows.pc1.iloc[-1], rows[second].iloc[-1]), fontsize="small", xytext=(4, 4), textcoords="offset points")
        paths.scatter(rows.pc1.iloc[:1], rows[second].iloc[:1], marker="s", s=60, facecolors="none", edgecolors="black", zorder=3)
        paths.scatter(rows.pc1.iloc[-1:], rows[second].iloc[-1:], marker="*", s=140, facecolors="none", edgecolors="black", zorder=3)
    marks = paths.scatter(points.pc1, points[second], c=points.icl_minus_iwl, cmap="coolwarm", vmin=-1, vmax=1, s=18, zorder=2)
    figure.colorbar(marks, ax=paths, label="ICL - IWL accuracy")
    shares_pct = [100 * share for share in trajectories.explained]
    paths.set_xlabel(f"PC1 ({shares_pct[0]:.0f}% of the variance)")
    paths.set_ylabel(f"PC2 ({shares_pct[1]:.0f}%)" if len(shares_pct) > 1 else "PC1")
    paths.set_title("query logits on one probe set: square first checkpoint, star last")
    paths.grid(alpha=0.3)
    names = [f"PC{i + 1}" for i in range(len(shares_pct))]
    bars = shares.bar(names, shares_pct, color=["tab:red" if i + 1 == trajectories.separating else "tab:gray" for i in range(len(names))])
    for bar, r in zip(bars, trajectories.correlation):
        shares.annotate(f"r={r:+.2f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", fontsize="small")
    shares.set_ylabel("% of variance")
    shares.set_title("r: correlation with ICL - IWL accuracy\n(red: the separating axis)", fontsize="small")
    figure.savefig(path, dpi=120)
