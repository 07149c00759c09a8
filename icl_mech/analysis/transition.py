"""Claim 1 (and 5): final ICL and IWL accuracy against K, a sigmoid in log K, and K* per condition.

A condition is a setting of the fields that vary across the sweep other than K and seed (N,
equalized contexts, ...), so one sweep over K x N x equalized gives one curve and one K* each.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from icl_mech.analysis.fits import CHANCE, PERFECT, fit_threshold
from icl_mech.analysis.plotting import MissingRuns, save, tick_swept
from icl_mech.analysis.sweep_table import Levels, condition_columns, condition_label, plain_runs
from icl_mech.errors import ConfigError
from icl_mech.readout import chance


def chance_level(runs: pd.DataFrame) -> float:
    """ICL accuracy's floor for ``runs`` of one condition (L varies only across conditions)."""
    return chance(int(runs.L.iloc[0])) if "L" in runs and len(runs) else CHANCE


def threshold_table(table: pd.DataFrame, levels: Levels, by: list[str] | None = None) -> pd.DataFrame:
    """One row per condition: K*, its 95% interval, the K values bracketing it (largest K whose
    mean final ICL accuracy is below ``levels.outcome``, smallest at or above it), and run counts
    (``uncommitted``: runs the stopping rule did not end before their step budget).

    ``table`` is ``load_sweeps``' table of whole-model runs; conditions are ``by`` (default: the
    fields that vary besides K and seed). Conditions with fewer than 3 finite K get no fit (NaN).
    K* is only reported inside the swept K: where no K's mean final ICL accuracy reached half way
    from chance to perfect (the sigmoid's midpoint, which K* marks), every K's did, or the fit puts
    its midpoint outside the grid anyway, K* and its interval are NaN, ``K_star_bound`` says what
    the runs show instead (``"> 128"``: above the largest K swept; ``"< 32"``: below the smallest;
    empty where K* is fitted) and ``K_star_why`` why.
    """
    by = condition_columns(table) if by is None else by
    groups = table.groupby(by, sort=True) if by else [((), table)]
    rows = []
    for key, runs in groups:
        values = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        runs = runs[np.isfinite(runs.K)]
        mean_icl = runs.groupby("K").icl_acc.mean()
        below, above = mean_icl[mean_icl < levels.outcome].index, mean_icl[mean_icl >= levels.outcome].index
        row = {
            **values,
            "condition": condition_label(values),
            "runs": len(runs),
            "seeds": runs.seed.nunique(),
            "uncommitted": int(runs.uncommitted.sum()),
            "K_below": below.max() if below.size else np.nan,
            "K_above": above.min() if above.size else np.nan,
        }
        row.update(K_star=np.nan, K_star_low=np.nan, K_star_high=np.nan, log_K_star_sd=np.nan, width=np.nan,
                   K_star_bound="", K_star_why="")
        # K* is where the sigmoid is half way from chance to perfect: a K "reached ICL" past that
        low = chance_level(runs)
        half_way = (low + PERFECT) / 2
        reached = f"mean final ICL >= {half_way:g}, half way from chance to 1"
        if runs.empty:
            pass
        elif not (mean_icl >= half_way).any():
            row.update(K_star_bound=f"> {runs.K.max():g}", K_star_why=f"no K reached ICL ({reached})")
        elif (mean_icl >= half_way).all():
            row.update(K_star_bound=f"< {runs.K.min():g}", K_star_why=f"every K reached ICL ({reached})")
        else:
            try:
                fit = fit_threshold(runs.K.to_numpy(), runs.icl_acc.to_numpy(), runs.seed.to_numpy(), low=low)
            except (ConfigError, RuntimeError):  # too few K, or curve_fit found no optimum
                fit = None
            if fit is not None and not runs.K.min() <= fit.k_star <= runs.K.max():
                side = f"> {runs.K.max():g}" if fit.k_star > runs.K.max() else f"< {runs.K.min():g}"
                row.update(K_star_bound=side, K_star_why=f"the fit's midpoint ({fit.k_star:.0f}) lies outside the swept K")
            elif fit is not None:
                row.update(K_star=fit.k_star, K_star_low=fit.interval[0], K_star_high=fit.interval[1],
                           log_K_star_sd=fit.log_k_star_sd, width=fit.width)
        rows.append(row)
    return pd.DataFrame(rows)


def plot_transition(table: pd.DataFrame, thresholds: pd.DataFrame, by: list[str], title: str) -> plt.Figure:
    """ICL (solid) and IWL (dashed) accuracy against K per condition, seeds as dots, K* shaded."""
    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    for index, threshold in enumerate(thresholds.itertuples()):
        color = f"C{index}"
        runs = table
        for field in by:
            runs = runs[runs[field] == getattr(threshold, field)]
        means = runs.groupby("K")[["icl_acc", "iwl_acc"]].mean()
        bound = f" (K* {threshold.K_star_bound})" if threshold.K_star_bound else ""
        axis.plot(means.index, means.icl_acc, "-o", color=color, label=f"ICL {threshold.condition}{bound}")
        axis.plot(means.index, means.iwl_acc, "--s", color=color, alpha=0.6, label=f"IWL {threshold.condition}")
        axis.scatter(runs.K, runs.icl_acc, color=color, s=10, alpha=0.4)
        if np.isfinite(threshold.K_star):
            axis.axvline(threshold.K_star, color=color, lw=1)
            axis.axvspan(threshold.K_star_low, threshold.K_star_high, color=color, alpha=0.12)
    axis.set_xscale("log")
    tick_swept(axis.xaxis, table.K)
    axis.set_xlabel("K (training items)")
    axis.set_ylabel("final accuracy")
    axis.set_ylim(0.4, 1.02)
    axis.set_title(title)
    axis.legend(fontsize=7)
    return figure


def _describe(thresholds: pd.DataFrame) -> str:
    def one(t) -> str:
        if np.isfinite(t.K_star):
            return f"{t.condition}: K*={t.K_star:.0f} [{t.K_star_low:.0f}, {t.K_star_high:.0f}]"
        if t.K_star_bound:
            return f"{t.condition}: {t.K_star_why}, so K* {t.K_star_bound} (outside the swept K)"
        return f"{t.condition}: no fit (needs 3+ K)"

    return "; ".join(one(t) for t in thresholds.itertuples())


def transition_figure(table: pd.DataFrame, out_dir: Path, levels: Levels) -> str:
    """transition.png / .csv: the K* fit of every condition of whole-model runs."""
    runs = plain_runs(table)
    if runs.K.nunique() < 3:
        raise MissingRuns("transition needs whole-model runs at 3 or more values of K")
    by = condition_columns(runs)
    thresholds = threshold_table(runs, levels, by)
    save(plot_transition(runs, thresholds, by, "memorization -> ICL transition"), thresholds, out_dir, "transition")
    return _describe(thresholds)


def equalized_figure(table: pd.DataFrame, out_dir: Path, levels: Levels) -> str:
    """equalized.png / .csv (claim 5): the transition with equalized-label contexts against plain."""
    runs = plain_runs(table)
    shared = set(runs[runs.equalized].N) & set(runs[~runs.equalized].N)
    runs = runs[runs.N.isin(shared)]
    if runs.empty or runs.K.nunique() < 3:
        raise MissingRuns("equalized needs runs with equalized=true and false at one N and 3 or more K")
    by = list(dict.fromkeys(["equalized", *condition_columns(runs)]))
    thresholds = threshold_table(runs, levels, by)
    save(plot_transition(runs, thresholds, by, "equalized-label contexts vs plain"), thresholds, out_dir, "equalized")
    return _describe(thresholds)
