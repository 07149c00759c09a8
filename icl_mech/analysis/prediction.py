"""K* predicted before training any run near it, from the paper's kinetic argument.

ICL wins when it is learned before the items are memorized. The time to memorize K items, I_K,
is measured on the MLP alone (attention frozen at init: ``memorization_times``) and fitted as
I_K = A K^nu; the time to learn ICL at context length N, t_ICL(N), is measured where nothing can
be memorized (K = infinity, fresh items every sequence). The threshold is where they meet:

    A K*^nu = t_ICL(N)   ->   K*(N) = (t_ICL(N) / A)^(1/nu)

The memorization runs may come from one N: the argument takes I_K to depend on K only. The
interval is a bootstrap: memorization runs are resampled (and A, nu refitted) together with the
K = infinity seeds at each N (t_ICL is their median), and K* is recomputed per replicate.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from icl_mech.analysis.memorization import fit_memorization_exponent, memorization_times
from icl_mech.analysis.plotting import MissingRuns, save, tick_log_values, tick_swept
from icl_mech.analysis.sweep_table import Levels, plain_runs
from icl_mech.analysis.transition import threshold_table

#: Bootstrap replicates behind the predicted interval.
N_BOOTSTRAP = 2000


def _log_line_fits(log_x: np.ndarray, log_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares slope and intercept of each row of ``log_y`` on the same row of ``log_x``."""
    x_mean, y_mean = log_x.mean(1, keepdims=True), log_y.mean(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):  # a replicate with one K has no slope
        slope = ((log_x - x_mean) * (log_y - y_mean)).sum(1) / ((log_x - x_mean) ** 2).sum(1)
    return slope, y_mean[:, 0] - slope * x_mean[:, 0]


def icl_times(table: pd.DataFrame, n_values: Sequence[int]) -> dict[int, np.ndarray]:
    """t_ICL of every K = infinity whole-model run at each N (inf for a run that never got there)."""
    runs = plain_runs(table)
    runs = runs[np.isinf(runs.K)]
    times = {}
    for n in n_values:
        at_n = runs[runs.N == n]
        if at_n.empty:
            raise MissingRuns(f"predict needs K=inf whole-model runs at N={n}; the sweeps have them at N={sorted(set(runs.N))}")
        times[n] = at_n.t_icl.fillna(np.inf).to_numpy(dtype=float)
    return times


def predict_thresholds(
    table: pd.DataFrame, n_values: Sequence[int], levels: Levels = Levels(), n_bootstrap: int = N_BOOTSTRAP, seed: int = 0
) -> pd.DataFrame:
    """One row per N: t_ICL (median over seeds), nu, A, the predicted K* and its 95% interval.

    K* is infinite where the median K = infinity run never reached ICL (it never wins).
    """
    memorization = memorization_times(table, levels.memorized)
    fit = fit_memorization_exponent(memorization)
    reached = memorization[memorization.t_mem > 0]
    log_k, log_t = np.log(reached.K.to_numpy(float)), np.log(reached.t_mem.to_numpy(float))
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(reached), size=(n_bootstrap, len(reached)))
    nu, log_a = _log_line_fits(log_k[picks], log_t[picks])
    rows = []
    for n, times in icl_times(table, n_values).items():
        t_icl = float(np.median(times))
        boot_t = np.median(times[rng.integers(0, len(times), size=(n_bootstrap, len(times)))], axis=1)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            boot = np.exp((np.log(boot_t) - log_a) / nu)
            k_star = float(np.exp((np.log(t_icl) - np.log(fit.prefactor)) / fit.exponent))
        low, high = np.nanpercentile(boot, [2.5, 97.5])
        rows.append({
            "N": n, "kinf_runs": len(times), "t_icl": t_icl, "nu": fit.exponent, "prefactor": fit.prefactor,
            "K_star_predicted": k_star, "K_star_predicted_low": float(low), "K_star_predicted_high": float(high),
        })
    return pd.DataFrame(rows)


def prediction_figure(
    table: pd.DataFrame, n_values: Sequence[int], out_dir: Path, levels: Levels = Levels(),
    measured: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """predict.png / .csv: predicted K*(N) with its interval, and beside it, on the same axes,
    K*(N) measured from ``measured`` (a sweep table of finite-K whole-model runs) when given."""
    predicted = predict_thresholds(table, n_values, levels)
    out = predicted
    figure, axis = plt.subplots(figsize=(5.2, 4))
    shown = predicted[np.isfinite(predicted.K_star_predicted)]
    errors = [shown.K_star_predicted - shown.K_star_predicted_low, shown.K_star_predicted_high - shown.K_star_predicted]
    axis.errorbar(shown.N, shown.K_star_predicted, yerr=errors, fmt="s", capsize=3,
                  label=f"predicted (nu {predicted.nu.iloc[0]:.2f}, t_ICL at K=inf)")
    if measured is not None:
        runs = plain_runs(measured)
        thresholds = threshold_table(runs[np.isfinite(runs.K)], levels, ["N"])
        found = thresholds[np.isfinite(thresholds.K_star)]
        errors = [found.K_star - found.K_star_low, found.K_star_high - found.K_star]
        axis.errorbar(found.N * 1.03, found.K_star, yerr=errors, fmt="o", capsize=3, label="measured (sigmoid fit)")
        out = predicted.merge(thresholds[["N", "K_star", "K_star_low", "K_star_high", "K_star_bound"]], on="N", how="outer")
    axis.set_xscale("log")
    axis.set_yscale("log")
    tick_swept(axis.xaxis, predicted.N)
    tick_log_values(axis.yaxis)
    axis.set_xlabel("N (tokens per sequence)")
    axis.set_ylabel("K*")
    axis.legend(fontsize=8)
    save(figure, out, out_dir, "predict")
    return out
