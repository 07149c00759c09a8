"""Claim 3, second half: K* against N on log-log axes. If memorization time grows as K^nu and ICL
time does not depend on K, the threshold where they meet moves as K* ~ N^(1/nu): the fitted slope
is compared with 1/nu from the sweep's own memorization runs (else the paper's nu, 0.7).

The slope's interval is a bootstrap over seeds within each (N, K): with a few K per N and a few
seeds per K, the t-interval over a handful of K* values says little about how much the seeds
behind each K* move it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from jaxtyping import Float, Int

from icl_mech.analysis.fits import PERFECT, fit_log_thresholds, fit_power_law
from icl_mech.analysis.memorization import fit_memorization_exponent, memorization_times
from icl_mech.analysis.plotting import MissingRuns, save, tick_log_values, tick_swept
from icl_mech.analysis.prediction import memorization_law_at_horizon
from icl_mech.analysis.sweep_table import Levels, plain_runs
from icl_mech.analysis.transition import chance_level, threshold_table

#: Resampled sweeps behind the slope's bootstrap interval.
DRAWS = 2000


@dataclass(frozen=True)
class SlopeBootstrap:
    """The percentile 95% interval of the K*(N) slope over resampled seeds."""

    low: float
    high: float
    #: Resampled sweeps drawn.
    draws: int
    #: Draws left out because at some N the resampled runs did not pin K* (see ``bootstrap_slope``).
    dropped: int


def resample_within(cells: Int[np.ndarray, " run"], draws: int, rng: np.random.Generator) -> Int[np.ndarray, "draw run"]:
    """Row indices of ``draws`` resamples: each run is replaced by a run drawn with replacement
    from its own cell, so every cell keeps its count and holds only its own runs."""
    picks = np.empty((draws, cells.size), dtype=int)
    for cell in np.unique(cells):
        members = np.flatnonzero(cells == cell)
        picks[:, members] = members[rng.integers(0, members.size, size=(draws, members.size))]
    return picks


def bootstrap_slope(runs: pd.DataFrame, draws: int = DRAWS, seed: int = 0) -> SlopeBootstrap:
    """Resample ``runs`` (N, K, icl_acc; one row per run, at the N the slope is fitted over)
    within each (N, K), refit K* at every N and the slope of ln K* on ln N, ``draws`` times.

    A draw whose runs at some N do not pin K* the way ``threshold_table`` requires (a K with mean
    final ICL accuracy below half way from chance to perfect and one at or above it, and the
    fitted K* inside the swept K) has no slope: it is dropped and counted, not refitted without
    that N, so every slope is over the same N as the point estimate's.
    """
    cells = runs.groupby(["N", "K"], sort=True).ngroup().to_numpy()
    counts = runs.groupby(["N", "K"], sort=True).size()
    resampled = runs.icl_acc.to_numpy(float)[resample_within(cells, draws, np.random.default_rng(seed))]
    means = np.stack([resampled[:, cells == cell].mean(axis=1) for cell in range(len(counts))], axis=1)
    low = chance_level(runs)
    half_way = (low + PERFECT) / 2
    n_values = counts.index.get_level_values("N").to_numpy(float)
    log_k_star, pinned = [], np.ones(draws, dtype=bool)
    for n in np.unique(n_values):
        at_n = n_values == n
        k = counts.index.get_level_values("K").to_numpy(float)[at_n]
        fitted = fit_log_thresholds(k, means[:, at_n], counts.to_numpy(float)[at_n], low)
        reached = means[:, at_n] >= half_way
        pinned &= reached.any(axis=1) & ~reached.all(axis=1) & (np.log(k.min()) <= fitted) & (fitted <= np.log(k.max()))
        log_k_star.append(fitted)
    log_n = np.log(np.unique(n_values))
    centred = log_n - log_n.mean()
    slopes = (np.stack(log_k_star, axis=1)[pinned] @ centred) / (centred @ centred)
    interval = np.percentile(slopes, [2.5, 97.5]) if slopes.size else (np.nan, np.nan)
    return SlopeBootstrap(float(interval[0]), float(interval[1]), draws, int(draws - pinned.sum()))


def memorization_exponents(table: pd.DataFrame, levels: Levels) -> dict[str, float]:
    """nu by where it comes from, as ``table`` allows: T1 (the law I_K = A K^nu that ``icl-mech
    predict`` reads, I_K the integral of the IWL-set residual the memorization runs log), the
    t_mem fit (steps to the memorized IWL accuracy), and the paper's nu only when neither is
    measured."""
    nus = {}
    try:
        nus["T1"] = memorization_law_at_horizon(table)[2].exponent
    except MissingRuns:
        pass
    try:
        nus["t_mem"] = fit_memorization_exponent(memorization_times(table, levels.memorized)).exponent
    except MissingRuns:
        pass
    return nus or {"paper": levels.paper_nu}


def threshold_scaling_figure(table: pd.DataFrame, out_dir: Path, levels: Levels) -> str:
    """threshold_scaling.png / .csv: K*(N) with its fitted slope beside the predicted 1/nu."""
    runs = plain_runs(table)
    runs = runs[~runs.equalized & (runs.weight_decay_attn == runs.weight_decay_attn.min())]
    thresholds = threshold_table(runs, levels, ["N"])
    fitted = thresholds[np.isfinite(thresholds.K_star)]
    if len(fitted) < 2:
        raise MissingRuns("threshold_scaling needs a K* (3 or more K values) at 2 or more values of N")
    slope = fit_power_law(fitted.N.to_numpy(), fitted.K_star.to_numpy())
    boot = bootstrap_slope(runs[runs.N.isin(fitted.N) & np.isfinite(runs.K)])
    nus = memorization_exponents(table, levels)
    figure, axis = plt.subplots(figsize=(5.2, 4))
    errors = [fitted.K_star - fitted.K_star_low, fitted.K_star_high - fitted.K_star]
    axis.errorbar(fitted.N, fitted.K_star, yerr=errors, fmt="o", capsize=3, label="K* (95% interval)")
    n = np.geomspace(fitted.N.min(), fitted.N.max(), 50)
    low, high = slope.interval
    axis.plot(n, slope(n), "-", label=f"fit: slope {slope.exponent:.2f}, bootstrap [{boot.low:.2f}, {boot.high:.2f}], "
              f"t [{low:.2f}, {high:.2f}]")
    for style, (source, nu) in zip(("--", ":", "-."), nus.items()):
        anchor = np.exp(np.mean(np.log(fitted.K_star)) - np.mean(np.log(fitted.N)) / nu)
        axis.plot(n, anchor * n ** (1 / nu), style, label=f"1/nu = {1 / nu:.2f} ({source} nu {nu:.2f})")
    axis.set_xscale("log")
    axis.set_yscale("log")
    tick_swept(axis.xaxis, fitted.N)
    tick_log_values(axis.yaxis)
    axis.set_xlabel("N (tokens per sequence)")
    axis.set_ylabel("K*")
    axis.legend(fontsize=7)
    source, nu = next(iter(nus.items()))
    out = thresholds.assign(
        slope=slope.exponent, slope_boot_low=boot.low, slope_boot_high=boot.high, boot_draws=boot.draws,
        boot_dropped=boot.dropped, slope_low=low, slope_high=high, nu=nu, nu_source=source, predicted_slope=1 / nu,
        nu_T1=nus.get("T1", np.nan), nu_t_mem=nus.get("t_mem", np.nan),
    )
    save(figure, out, out_dir, "threshold_scaling")
    predicted = ", ".join(f"{1 / nu:.2f} ({source} nu {nu:.2f})" for source, nu in nus.items())
    return (f"slope {slope.exponent:.2f}, 95% bootstrap over seeds within each K [{boot.low:.2f}, {boot.high:.2f}] "
            f"({boot.draws} draws, {boot.dropped} dropped: K* not pinned at some N), t-interval [{low:.2f}, {high:.2f}] "
            f"over {len(fitted)} N; vs predicted 1/nu = {predicted}")
