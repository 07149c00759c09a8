"""Reddy (2024)'s phase diagrams: final ICL and IWL accuracy over one or two data parameters.

Reddy shows which of the two abilities the data select by sweeping burstiness B, the number of
classes K, within-class variation epsilon and the Zipf exponent alpha, and reading both
accuracies at the end of training. Here the axes are whatever the sweeps vary besides seed (so
one sweep over B x K gives one diagram, one over zipf_alpha a curve); each point is the mean
over its seeds. ICL is read on novel classes (and, where the runs have it, with swapped labels),
IWL on classes drawn at random where the runs have that set (``TaskConfig.reddy_eval_sets``),
else on contexts that lack the query's class, beside what that set gives without memorizing
any class (``icl_mech.baselines``): the label prior, and copying where the query's class is in
the context with the label prior elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from icl_mech.analysis.plotting import MissingRuns, save, tick_swept
from icl_mech.analysis.sweep_table import Levels, condition_columns, condition_label, plain_runs
from icl_mech.baselines import set_baselines
from icl_mech.readout import chance
from icl_mech.run import Run

#: Accuracy both abilities must reach at a point for it to count as coexistence.
COEXISTENCE = 0.5


def phase_fields(table: pd.DataFrame) -> list[str]:
    """The fields a phase diagram is drawn over: those varying besides seed, K last (the x axis)."""
    varying_k = ["K"] if table.K.nunique() > 1 else []
    return condition_columns(table) + varying_k


def ability_columns(table: pd.DataFrame) -> dict[str, str]:
    """Table column -> what it measures: ICL on novel classes, ICL with swapped labels (if every
    run has it) and IWL (on random classes if every run has that set)."""
    columns = {"icl_acc": "ICL (novel classes)"}
    if table.icl_swap_acc.notna().all():
        columns["icl_swap_acc"] = "ICL (swapped labels)"
    if table.iwl_iid_acc.notna().all():
        columns["iwl_iid_acc"] = "IWL (random classes)"
    else:
        columns["iwl_acc"] = "IWL (query's class absent)"
    return columns


#: The IWL baselines a phase diagram draws (``icl_mech.baselines``).
PHASE_BASELINES = ("label_prior", "copy_else_prior")


def iwl_column(columns: dict[str, str]) -> str:
    """The IWL accuracy column among ``ability_columns`` (the last)."""
    return list(columns)[-1]


def with_baselines(runs: pd.DataFrame, iwl: str) -> pd.DataFrame:
    """``runs`` with ``PHASE_BASELINES`` of the set behind the ``iwl`` accuracy column, as
    ``{set}_{baseline}`` columns, from each run's regenerated evaluation sets (unless it has them)."""
    name = iwl.removesuffix("_acc")
    columns = [f"{name}_{baseline}" for baseline in PHASE_BASELINES]
    if set(columns) <= set(runs):
        return runs
    values = []
    for path in runs.run:
        run = Run(path)
        levels = set_baselines(run.config.task, run.pool, run.eval_sets()[name])
        values.append([levels[baseline] for baseline in PHASE_BASELINES])
    return runs.assign(**dict(zip(columns, np.array(values).T)))


def phase_table(table: pd.DataFrame, fields: list[str]) -> pd.DataFrame:
    """One row per point of ``fields``: run count, and each ability's mean and standard deviation
    over the point's seeds, the IWL set's baselines' too."""
    abilities = ability_columns(table)
    name = iwl_column(abilities).removesuffix("_acc")
    columns = list(abilities) + [f"{name}_{baseline}" for baseline in PHASE_BASELINES]
    grouped = table.groupby(fields, sort=True)[columns]
    points = grouped.mean().add_suffix("_mean").join(grouped.std(ddof=0).add_suffix("_sd"))
    points.insert(0, "runs", grouped.size())
    return points.reset_index()


def _tick(value: float) -> str:
    return "inf" if value == np.inf else f"{value:g}"


def _heatmaps(points: pd.DataFrame, fields: list[str], columns: dict[str, str]) -> plt.Figure:
    """One panel per ability: x the last field, y the first, each cell its mean accuracy; IWL's
    cells also what copying or the label prior gives there without memory (in brackets)."""
    y_field, x_field = fields
    figure, axes = plt.subplots(  # the last, narrow column holds the colour bar
        1, len(columns) + 1, figsize=(3.6 * len(columns) + 0.8, 3.4), width_ratios=[1] * len(columns) + [0.06]
    )
    iwl = iwl_column(columns)
    baseline = points.pivot(index=y_field, columns=x_field, values=f"{iwl.removesuffix('_acc')}_copy_else_prior_mean")
    for axis, (column, title) in zip(axes, columns.items()):
        grid = points.pivot(index=y_field, columns=x_field, values=f"{column}_mean")
        image = axis.imshow(grid.to_numpy(), origin="lower", vmin=0, vmax=1, cmap="viridis", aspect="auto")
        for (row, col), value in np.ndenumerate(grid.to_numpy()):
            text = f"{value:.2f}\n({baseline.to_numpy()[row, col]:.2f})" if column == iwl else f"{value:.2f}"
            axis.text(col, row, text, ha="center", va="center", fontsize=7,
                      color="white" if value < 0.6 else "black")
        if column == iwl:
            title += "\n(in brackets: copy, else label prior)"
        axis.set_xticks(range(grid.shape[1]), [_tick(v) for v in grid.columns], fontsize=7)
        axis.set_yticks(range(grid.shape[0]), [_tick(v) for v in grid.index], fontsize=7)
        axis.set_xlabel(x_field)
        axis.set_ylabel(y_field)
        axis.set_title(title, fontsize=9)
    figure.colorbar(image, cax=axes[-1], label="final accuracy (mean over seeds)")
    return figure


def _curves(runs: pd.DataFrame, points: pd.DataFrame, field: str, columns: dict[str, str], level: float) -> plt.Figure:
    """Each ability's mean over the field's values (line), every run's value (dots), and chance."""
    figure, axis = plt.subplots(figsize=(6.4, 4))
    for index, (column, title) in enumerate(columns.items()):
        axis.plot(points[field], points[f"{column}_mean"], "-o", color=f"C{index}", label=title)
        axis.plot(runs[field], runs[column], ".", color=f"C{index}", alpha=0.5)
    axis.axhline(level, color="gray", ls=":", label="chance")
    name, color = iwl_column(columns).removesuffix("_acc"), f"C{len(columns) - 1}"
    axis.plot(points[field], points[f"{name}_label_prior_mean"], "--", color=color, lw=1, label="IWL set: label prior")
    axis.plot(points[field], points[f"{name}_copy_else_prior_mean"], "-.", color=color, lw=1,
              label="IWL set: copy, else label prior")
    if field == "K":
        axis.set_xscale("log", base=2)
    tick_swept(axis.xaxis, points[field])
    axis.set_ylim(0, 1.02)
    axis.set_xlabel(field)
    axis.set_ylabel("final accuracy")
    axis.legend(fontsize=7)
    return figure


def phase_summary(points: pd.DataFrame, fields: list[str], columns: dict[str, str]) -> str:
    """Which ability each point selects (by mean accuracy), and where both reach ``COEXISTENCE``."""
    icl, iwl = f"{next(iter(columns))}_mean", f"{iwl_column(columns)}_mean"
    icl_wins, total = int((points[icl] > points[iwl]).sum()), len(points)
    both = points[(points[icl] >= COEXISTENCE) & (points[iwl] >= COEXISTENCE)]
    where = "; ".join(condition_label({f: _tick(row[f]) for f in fields}) for _, row in both.iterrows())
    return (
        f"{total} points over {' x '.join(fields)}: ICL above IWL at {icl_wins} of {total} points, "
        f"IWL above ICL at {total - icl_wins} of {total}; both >= {COEXISTENCE} at {len(both)} of {total}"
        + (f" ({where})" if where else "")
    )


def _range(values: pd.Series, unit: str) -> str:
    """``2000 steps``, or ``800-2000 steps`` where the runs differ (``unit`` singular)."""
    low, high = int(values.min()), int(values.max())
    return f"{low} {unit}" if low == high == 1 else f"{low} {unit}s" if low == high else f"{low}-{high} {unit}s"


def phase_title(runs: pd.DataFrame, points: pd.DataFrame) -> str:
    """What each point of a phase diagram is: the step its runs ended at and how many seeds."""
    return f"final accuracy after {_range(runs.final_step, 'step')}, mean over {_range(points.runs, 'seed')} per point"


def phase_figure(table: pd.DataFrame, out_dir: Path, levels: Levels) -> str:
    """phase.png / .csv: a heatmap per ability over two swept fields, or curves over one."""
    runs = plain_runs(table)
    fields = phase_fields(runs)
    if not 1 <= len(fields) <= 2:
        raise MissingRuns(
            f"phase needs whole-model runs that vary one or two fields besides seed; these vary {fields or 'none'}"
        )
    columns = ability_columns(runs)
    runs = with_baselines(runs, iwl_column(columns))
    points = phase_table(runs, fields)
    if len(fields) == 2:
        figure = _heatmaps(points, fields, columns)
    else:
        figure = _curves(runs, points, fields[0], columns, chance(int(runs.L.iloc[0])))
    figure.suptitle(phase_title(runs, points), fontsize=9)
    save(figure, points, out_dir, "phase")
    return phase_summary(points, fields, columns)
