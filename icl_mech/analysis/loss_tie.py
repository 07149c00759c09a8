"""T7 beside the runs (``icl-mech theory``): after acquisition, does ln(e^L_ICL - 1) fall on a
straight line in the tied integral of the shared residual (``icl_mech.theory.loss_tie``)?

Every finite-K whole-model run logs its ICL and IWL losses at every evaluation. A run counts from
t_a, its first evaluation with ICL accuracy at or above ``levels.outcome`` (the level at which a
run counts as ended in ICL), not from t_ICL: the stopping rule (``stop_icl_acc``) ends a run at
its first evaluation past t_ICL's level, so nothing is logged after it. Runs that never reach
t_a's level, or log fewer than ``MIN_POINTS`` evaluations from it, are skipped. Per N: each run's
own line and R^2, the pooled slope -eta' with an intercept per run and its R^2, and beside them
the R^2 of the same fit against plain time, which says how much the tie explains beyond a clock.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from icl_mech.analysis.levels import Levels
from icl_mech.analysis.sweep_table import first_crossing
from icl_mech.run import load_run
from icl_mech.theory.loss_tie import HOLDS_R2, fit_tie, tie_coordinates, tied_icl_loss

#: Evaluations from t_a a run needs for a line with a residual.
MIN_POINTS = 3
#: Runs drawn against the flow in the figure's second panel, those of the largest K with the
#: longest logs after t_a (the first panel has them all).
FLOW_RUNS = 6


def _after_acquisition(run: str, level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The run's (steps, ICL loss, IWL loss) from t_a on (positive losses only), or None when it
    never reaches ``level`` or logs fewer than ``MIN_POINTS`` evaluations from there."""
    metrics = load_run(run).metrics
    t_a = first_crossing(metrics.step.to_numpy(), metrics.icl_acc.to_numpy(), level)
    after = metrics[(metrics.step >= t_a) & (metrics.icl_loss > 0) & (metrics.iwl_loss > 0)]
    if math.isnan(t_a) or len(after) < MIN_POINTS:
        return None
    return after.step.to_numpy(float), after.icl_loss.to_numpy(float), after.iwl_loss.to_numpy(float)


def loss_tie(sweeps: pd.DataFrame, levels: Levels) -> dict[int, dict[str, Any]]:
    """T7 per N over the finite-K whole-model runs of ``sweeps``: the runs fitted (run, K, seed,
    t_a, points, slope, r2, r2_time, intercept), the pooled eta' = -slope with its r2, r2_time and
    the runs' median r2, the number skipped, and each fitted run's (steps, ICL loss, IWL loss)
    under "curves", for the figure."""
    result = {}
    for n, at_n in sweeps.groupby("N"):
        logs = {run: _after_acquisition(run, levels.outcome) for run in at_n.run}
        fitted = at_n[[logs[run] is not None for run in at_n.run]]
        entry: dict[str, Any] = {"level": levels.outcome, "n_runs": len(fitted), "skipped": len(at_n) - len(fitted)}
        result[int(n)] = entry
        if fitted.empty:
            entry["why"] = f"no run reached ICL accuracy {levels.outcome:g} with {MIN_POINTS} or more evaluations from there"
            continue
        tied = [tie_coordinates(*logs[run]) for run in fitted.run]
        fit = fit_tie(tied)
        clock = fit_tie([(logs[run][0], y) for run, (_, y) in zip(fitted.run, tied)])
        entry.update(eta=-fit.slope, r2=fit.r2, r2_time=clock.r2, median_run_r2=float(np.median(fit.r2s)), runs=[
            {"run": row.run, "K": float(row.K), "seed": int(row.seed), "t_a": float(logs[row.run][0][0]),
             "points": len(logs[row.run][0]), "slope": fit.slopes[i], "r2": fit.r2s[i], "r2_time": clock.r2s[i],
             "intercept": fit.intercepts[i]}
            for i, row in enumerate(fitted.itertuples())
        ], curves={run: logs[run] for run in fitted.run})
    return result


def loss_tie_verdicts(tie: dict[int, dict[str, Any]]) -> list[str]:
    """One line per N: holds when the pooled line has R^2 >= HOLDS_R2 with eta' > 0; partly when
    only the runs' own lines do (each run tied, but with its own eta'); fails otherwise."""
    lines = []
    for n, entry in tie.items():
        if not entry["n_runs"]:
            lines.append(f"T7 N={n}: not measured: {entry['why']} ({entry['skipped']} runs skipped)")
            continue
        holds = entry["eta"] > 0 and entry["r2"] >= HOLDS_R2
        partly = entry["median_run_r2"] >= HOLDS_R2
        slopes = [-run["slope"] for run in entry["runs"]]
        lines.append(
            f"T7 N={n}: ln(e^L_ICL - 1) on the tied integral from ICL accuracy {entry['level']:g}: eta' {entry['eta']:.3g}, "
            f"R^2 {entry['r2']:.2f} pooled over {entry['n_runs']} runs (per run: median R^2 {entry['median_run_r2']:.2f}, "
            f"eta' {min(slopes):.3g} to {max(slopes):.3g}); against plain time R^2 {entry['r2_time']:.2f}: "
            + ("holds" if holds else "partly (each run tied, eta' differs)" if partly else "fails")
        )
    return lines


def loss_tie_figure(tie: dict[int, dict[str, Any]], path: Path) -> None:
    """theory_T7.png: left, every run's (X, Y) with the pooled line; right, the ICL loss of a few
    runs against the flow driven by their own IWL loss and eta', from the pooled line's start."""
    figure, (line, flow) = plt.subplots(1, 2, figsize=(9.5, 3.8))
    shown = sorted(((n, run) for n, entry in tie.items() for run in entry.get("runs", [])),
                   key=lambda pair: (-pair[1]["K"], -pair[1]["points"]))[:FLOW_RUNS]
    for index, (n, entry) in enumerate(tie.items()):
        for run in entry.get("runs", []):
            steps, icl, iwl = entry["curves"][run["run"]]
            x, y = tie_coordinates(steps, icl, iwl)
            line.plot(x, y, "o", ms=2, color=f"C{index}", alpha=0.5, label=f"N={n} runs" if run is entry["runs"][0] else None)
            line.plot(x, run["intercept"] - entry["eta"] * x, "-", lw=0.6, color="k", alpha=0.5,
                      label=f"pooled eta' {entry['eta']:.3g}" if run is entry["runs"][0] else None)
    for drawn, (n, run) in enumerate(shown):
        steps, icl, iwl = tie[n]["curves"][run["run"]]
        colour, start = f"C{drawn % 10}", float(np.log1p(np.exp(run["intercept"])))  # Y = ln(e^L - 1) at X = 0
        flow.plot(steps - steps[0], icl, "o", ms=3, color=colour, label=f"N={n} K={run['K']:g} seed {run['seed']}")
        flow.plot(steps - steps[0], tied_icl_loss(steps, iwl, start, tie[n]["eta"]), "-", color=colour)
    line.set_xlabel("tied integral: int of R(L_ICL, L_IWL) from t_a")
    line.set_ylabel("ln(e^L_ICL - 1)")
    line.set_title("T7: the theory's line has slope -eta'", fontsize=9)
    flow.set_xlabel("steps since t_a")
    flow.set_ylabel("ICL loss: runs (dots), flow (lines)")
    flow.set_yscale("log")
    for axis in (line, flow):
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
