"""K* predicted before training any run near it: the theory's T4 (docs/THEORY.md).

ICL wins when it is learned before the items are memorized. In the theory's terms a seed acquires
ICL at finite K iff its threshold, half its acquisition time at K = infinity (where c1 stays at
1/2), is below the memorization integral I_K: K* is where the median seed's threshold is met,

    2 I_K* = t_ICL(N)   with   I_K = A K^nu   ->   K*(N) = (t_ICL(N) / (2 A))^(1/nu)

I_K is measured on the MLP alone (attention frozen at init): the integral of the network's
residual 1 - p(target) on its IWL set (``iwl_residual``, logged at every evaluation) up to the
memorization runs' common last step, the horizon. t_ICL(N) is measured where nothing can be
memorized (K = infinity, fresh items every sequence). The memorization runs may come from one N:
I_K depends on K only. The interval is a bootstrap: memorization runs are resampled (and A, nu
refitted) together with the K = infinity seeds at each N (t_ICL is their median), and K* is
recomputed per replicate.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from icl_mech.analysis.fits import PowerLawFit, fit_power_law
from icl_mech.analysis.memorization import common_horizon, memorization_curves, memorization_runs, memorized_at
from icl_mech.analysis.plotting import MissingRuns, save, tick_log_values, tick_swept
from icl_mech.analysis.sweep_table import Levels, plain_runs
from icl_mech.analysis.transition import threshold_table
from icl_mech.errors import ConfigError
from icl_mech.theory.predictions import C1_UNMEMORIZED
from icl_mech.theory.residual_columns import IWL_RESIDUAL

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


def memorization_law_at_horizon(table: pd.DataFrame) -> tuple[pd.DataFrame, float, PowerLawFit]:
    """T1 as predict reads it: I_K of every memorization run (frozen attention, finite K) at their
    common last step, from the IWL-set residual, and I_K = A K^nu fitted on them: (runs with K,
    seed and I_K; the horizon; the fit)."""
    memorizing = memorization_runs(table)
    if memorizing.K.nunique() < 2:
        raise MissingRuns(
            "predict needs frozen-attention runs (frozen=attn, finite K) at 2 or more values of K: "
            f"T1's I_K = A K^nu is fitted on them; the sweeps have K={sorted(set(memorizing.K))}"
        )
    curves = memorization_curves(memorizing, IWL_RESIDUAL)
    horizon = common_horizon(curves)
    memorized = memorized_at(memorizing, curves, horizon)
    try:
        fit = fit_power_law(memorized.K.to_numpy(), memorized.I_K.to_numpy())
    except ConfigError as error:
        raise MissingRuns(f"predict: T1's fit of I_K at step {horizon:.0f}: {error}") from None
    return memorized, horizon, fit


def predict_thresholds(
    table: pd.DataFrame, n_values: Sequence[int], n_bootstrap: int = N_BOOTSTRAP, seed: int = 0
) -> pd.DataFrame:
    """One row per N: t_ICL (median over seeds), nu, A and the horizon of T1's I_K = A K^nu, the
    predicted K* and its 95% interval.

    K* is infinite where the median K = infinity run never reached ICL (it never wins).
    """
    memorized, horizon, fit = memorization_law_at_horizon(table)
    log_k, log_i = np.log(memorized.K.to_numpy(float)), np.log(memorized.I_K.to_numpy(float))
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(memorized), size=(n_bootstrap, len(memorized)))
    nu, log_a = _log_line_fits(log_k[picks], log_i[picks])
    rows = []
    for n, times in icl_times(table, n_values).items():
        t_icl = float(np.median(times))
        boot_t = np.median(times[rng.integers(0, len(times), size=(n_bootstrap, len(times)))], axis=1)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # t_ICL = inf: K* = inf
            boot = np.exp((np.log(boot_t * C1_UNMEMORIZED) - log_a) / nu)
            k_star = float(np.exp((np.log(t_icl * C1_UNMEMORIZED) - np.log(fit.prefactor)) / fit.exponent))
        low, high = np.nanpercentile(boot, [2.5, 97.5])
        rows.append({
            "N": n, "kinf_runs": len(times), "t_icl": t_icl, "nu": fit.exponent, "prefactor": fit.prefactor,
            "horizon": horizon, "K_star_predicted": k_star, "K_star_predicted_low": float(low),
            "K_star_predicted_high": float(high),
        })
    return pd.DataFrame(rows)


def prediction_figure(
    table: pd.DataFrame, n_values: Sequence[int], out_dir: Path, levels: Levels = Levels(),
    measured: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """predict.png / .csv: predicted K*(N) with its interval, and beside it, on the same axes,
    K*(N) measured from ``measured`` (a sweep table of finite-K whole-model runs) when given."""
    predicted = predict_thresholds(table, n_values)
    out = predicted
    figure, axis = plt.subplots(figsize=(5.2, 4))
    shown = predicted[np.isfinite(predicted.K_star_predicted)]
    errors = [shown.K_star_predicted - shown.K_star_predicted_low, shown.K_star_predicted_high - shown.K_star_predicted]
    axis.errorbar(shown.N, shown.K_star_predicted, yerr=errors, fmt="s", capsize=3,
                  label=f"predicted by T4 (nu {predicted.nu.iloc[0]:.2f} at step {predicted.horizon.iloc[0]:.0f}, t_ICL at K=inf)")
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
