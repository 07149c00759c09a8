"""Claim 3: the memorization scaling law. With attention frozen at initialization the MLP alone
must memorize the K item-label pairs; the time to do so grows as K^nu (the paper: nu ~ 0.7).

Memorization is measured on the IWL set (the query item is absent from the context), so nothing
read from context can help; the time is the step where IWL accuracy first reaches ``levels.memorized``,
interpolated between evaluations.

The theory (docs/THEORY.md) reads memorization as an integral instead: I_K(t), the integral of a
logged residual (c1, or the IWL-set residual; ``icl_mech.theory.residual``) up to a horizon.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from icl_mech.analysis.fits import PowerLawFit, fit_power_law
from icl_mech.analysis.plotting import MissingRuns, save, tick_log_values, tick_swept
from icl_mech.analysis.sweep_table import Levels, first_crossing
from icl_mech.run import load_run
from icl_mech.theory.residual import memorization_integral


def memorization_runs(table: pd.DataFrame) -> pd.DataFrame:
    """Runs with attention frozen (the MLP memorizes alone) and finite K."""
    return table[(table.frozen == "attn") & np.isfinite(table.K)]


def memorization_times(table: pd.DataFrame, level: float) -> pd.DataFrame:
    """One row per frozen-attention run: K, seed, and t_mem (NaN when it never memorized)."""
    rows = []
    for row in memorization_runs(table).itertuples():
        metrics = load_run(row.run).metrics
        t_mem = first_crossing(metrics.step.to_numpy(), metrics.iwl_acc.to_numpy(), level, interpolate=True)
        rows.append({"run": row.run, "K": row.K, "seed": row.seed, "N": row.N, "t_mem": t_mem, "final_iwl_acc": row.iwl_acc})
    return pd.DataFrame(rows, columns=["run", "K", "seed", "N", "t_mem", "final_iwl_acc"])


def memorization_curves(memorizing: pd.DataFrame, residual: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each memorization run's (steps, I_K at those steps): the integral of its logged
    ``residual`` column (``c1`` or ``iwl_residual``)."""
    curves = {}
    for row in memorizing.itertuples():
        metrics = load_run(row.run).metrics
        if residual not in metrics or metrics[residual].isna().any():
            raise MissingRuns(
                f"{row.run} has no {residual} in its metrics (it was trained before {residual} was logged at every "
                "evaluation of a finite-K run): train it again with this version, e.g. icl-mech sweep --grid K=... --set frozen=attn"
            )
        steps = metrics.step.to_numpy(float)
        curves[row.run] = steps, memorization_integral(steps, metrics[residual].to_numpy(float))
    return curves


def common_horizon(curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> float:
    """The last step every memorization run logged (``memorization_curves``): the horizon up to
    which each run's I_K is measured, not extrapolated."""
    return float(min(steps[-1] for steps, _ in curves.values()))


def memorized_at(memorizing: pd.DataFrame, curves: dict, horizon: float) -> pd.DataFrame:
    """I_K at ``horizon`` for every memorization run (``memorization_curves``)."""
    return pd.DataFrame({
        "run": memorizing.run.to_numpy(), "K": memorizing.K.to_numpy(float), "seed": memorizing.seed.to_numpy(),
        "I_K": [float(np.interp(horizon, *curves[run])) for run in memorizing.run],
    })


def fit_memorization_exponent(times: pd.DataFrame) -> PowerLawFit:
    """nu from t_mem ~ K^nu over the runs that memorized (t_mem > 0: not already at step 0)."""
    reached = times[times.t_mem > 0]
    if reached.K.nunique() < 2:
        raise MissingRuns(
            "memorization needs frozen-attention runs (frozen=attn) that reach the memorized IWL accuracy "
            "after step 0 at 2 or more values of K"
        )
    return fit_power_law(reached.K.to_numpy(), reached.t_mem.to_numpy())


def memorization_figure(table: pd.DataFrame, out_dir: Path, levels: Levels) -> str:
    """memorization.png / .csv: IWL curves of the MLP alone, and t_mem against K with nu."""
    times = memorization_times(table, levels.memorized)
    fit = fit_memorization_exponent(times)
    figure, (curves, scaling) = plt.subplots(1, 2, figsize=(9, 3.8))
    colors = {k: plt.cm.viridis(i / max(times.K.nunique() - 1, 1)) for i, k in enumerate(sorted(times.K.unique()))}
    for row in times.sort_values(["K", "seed"]).itertuples():
        metrics = load_run(row.run).metrics
        curves.plot(metrics.step, metrics.iwl_acc, color=colors[row.K], lw=1, label=f"K={row.K:.0f}" if row.seed == times.seed.min() else None)
    curves.axhline(levels.memorized, color="gray", ls=":")
    curves.set_xlabel("step")
    curves.set_ylabel("IWL accuracy (attention frozen)")
    curves.legend(fontsize=7)
    reached = times[times.t_mem > 0]
    scaling.loglog(reached.K, reached.t_mem, "o", color="C0", alpha=0.7, label="runs")
    k = np.geomspace(reached.K.min(), reached.K.max(), 50)
    low, high = fit.interval
    scaling.loglog(k, fit(k), "-", color="C1", label=f"nu = {fit.exponent:.2f} [{low:.2f}, {high:.2f}]")
    tick_swept(scaling.xaxis, reached.K)
    tick_log_values(scaling.yaxis)
    scaling.set_xlabel("K")
    scaling.set_ylabel(f"steps to IWL accuracy {levels.memorized}")
    scaling.legend(fontsize=8)
    table_out = times.assign(nu=fit.exponent, nu_low=low, nu_high=high, nu_sd=fit.exponent_sd)
    save(figure, table_out, out_dir, "memorization")
    never = int(times.t_mem.isna().sum())
    return f"nu = {fit.exponent:.3f} (95% [{low:.3f}, {high:.3f}]) from {len(reached)} runs" + (
        f"; {never} runs never memorized" if never else ""
    )
