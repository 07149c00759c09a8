"""Claim 3, second half: K* against N on log-log axes. If memorization time grows as K^nu and ICL
time does not depend on K, the threshold where they meet moves as K* ~ N^(1/nu): the fitted slope
is compared with 1/nu from the sweep's own memorization runs (else the paper's nu, 0.7)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from icl_mech.analysis.fits import fit_power_law
from icl_mech.analysis.memorization import fit_memorization_exponent, memorization_times
from icl_mech.analysis.plotting import MissingRuns, save, tick_log_values, tick_swept
from icl_mech.analysis.sweep_table import Levels, plain_runs
from icl_mech.analysis.transition import threshold_table


def threshold_scaling_figure(table: pd.DataFrame, out_dir: Path, levels: Levels) -> str:
    """threshold_scaling.png / .csv: K*(N) with its fitted slope beside the predicted 1/nu."""
    runs = plain_runs(table)
    runs = runs[~runs.equalized & (runs.weight_decay_attn == runs.weight_decay_attn.min())]
    thresholds = threshold_table(runs, levels, ["N"])
    fitted = thresholds[np.isfinite(thresholds.K_star)]
    if len(fitted) < 2:
        raise MissingRuns("threshold_scaling needs a K* (3 or more K values) at 2 or more values of N")
    slope = fit_power_law(fitted.N.to_numpy(), fitted.K_star.to_numpy())
    try:
        nu, nu_source = fit_memorization_exponent(memorization_times(table, levels.memorized)).exponent, "measured"
    except MissingRuns:
        nu, nu_source = levels.paper_nu, "paper"
    predicted = 1 / nu
    figure, axis = plt.subplots(figsize=(5.2, 4))
    errors = [fitted.K_star - fitted.K_star_low, fitted.K_star_high - fitted.K_star]
    axis.errorbar(fitted.N, fitted.K_star, yerr=errors, fmt="o", capsize=3, label="K* (95% interval)")
    n = np.geomspace(fitted.N.min(), fitted.N.max(), 50)
    low, high = slope.interval
    axis.plot(n, slope(n), "-", label=f"fit: slope {slope.exponent:.2f} [{low:.2f}, {high:.2f}]")
    anchor = np.exp(np.mean(np.log(fitted.K_star)) - predicted * np.mean(np.log(fitted.N)))
    axis.plot(n, anchor * n**predicted, "--", label=f"1/nu = {predicted:.2f} ({nu_source} nu {nu:.2f})")
    axis.set_xscale("log")
    axis.set_yscale("log")
    tick_swept(axis.xaxis, fitted.N)
    tick_log_values(axis.yaxis)
    axis.set_xlabel("N (tokens per sequence)")
    axis.set_ylabel("K*")
    axis.legend(fontsize=8)
    out = thresholds.assign(slope=slope.exponent, slope_low=low, slope_high=high, nu=nu, nu_source=nu_source, predicted_slope=predicted)
    save(figure, out, out_dir, "threshold_scaling")
    return f"slope {slope.exponent:.2f} [{low:.2f}, {high:.2f}] vs predicted 1/nu = {predicted:.2f} ({nu_source} nu)"
