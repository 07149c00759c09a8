"""Claim 4: when ICL is acquired. t_ICL (first step with ICL accuracy >= 0.95) across seeds is
long-tailed, and near K* seeds split into two outcomes: ICL or memorization."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from icl_mech.analysis.bimodality import MIN_VALUES, dip_test
from icl_mech.analysis.plotting import MissingRuns, save, tick_swept
from icl_mech.analysis.sweep_table import Levels, condition_columns, condition_label, plain_runs


def icl_time_table(table: pd.DataFrame, levels: Levels) -> pd.DataFrame:
    """Per condition and K: seeds, how many ended in ICL (final ICL accuracy >= levels.outcome),
    and t_ICL's median, 90th percentile and max over the seeds that reached it (tail = p90 /
    median). ``bimodal``: the seeds split both ways; ``dip`` and ``dip_p``: Hartigan's dip test of
    the final ICL accuracies (4 or more seeds; a small ``dip_p`` rejects one mode)."""
    by = [*condition_columns(table), "K"]
    rows = []
    for key, runs in table.groupby(by, sort=True):
        values = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        times = runs.t_icl.dropna()
        icl = int((runs.icl_acc >= levels.outcome).sum())
        median = float(times.median()) if len(times) else np.nan
        p90 = float(np.percentile(times, 90)) if len(times) else np.nan
        dip = dip_test(runs.icl_acc.to_numpy()) if len(runs) >= MIN_VALUES else None
        rows.append({
            **values,
            "condition": condition_label({k: v for k, v in values.items() if k != "K"}),
            "seeds": len(runs),
            "icl_outcomes": icl,
            "memorizing_outcomes": len(runs) - icl,
            "bimodal": 0 < icl < len(runs),
            "t_icl_median": median,
            "t_icl_p90": p90,
            "t_icl_max": float(times.max()) if len(times) else np.nan,
            "tail_ratio": p90 / median if median > 0 else np.nan,
            "dip": dip.dip if dip else np.nan,
            "dip_p": dip.p_value if dip else np.nan,
        })
    return pd.DataFrame(rows)


def icl_time_figure(table: pd.DataFrame, out_dir: Path, levels: Levels) -> str:
    """icl_time.png / .csv: histogram of t_ICL per K, and each seed's final ICL accuracy against K."""
    runs = plain_runs(table)
    runs = runs[np.isfinite(runs.K)]
    if runs.t_icl.notna().sum() < 2:
        raise MissingRuns(f"icl_time needs 2 or more whole-model runs that reach ICL accuracy {levels.icl}")
    summary = icl_time_table(runs, levels)
    figure, (histogram, outcomes) = plt.subplots(1, 2, figsize=(9.5, 3.8))
    reached = runs.dropna(subset=["t_icl"])
    ks = sorted(reached.K.unique())
    bins = np.linspace(0, max(reached.t_icl.max(), 1) * 1.05, 21)
    histogram.hist([reached[reached.K == k].t_icl for k in ks], bins=bins, stacked=True, label=[f"K={k:.0f}" for k in ks])
    histogram.axvline(reached.t_icl.median(), color="k", ls="--", lw=1, label=f"median {reached.t_icl.median():.0f}")
    histogram.set_xlabel(f"t_ICL (first step with ICL accuracy >= {levels.icl})")
    histogram.set_ylabel("runs")
    histogram.legend(fontsize=7)
    jitter = np.random.default_rng(0).uniform(0.92, 1.08, len(runs))
    outcomes.scatter(runs.K * jitter, runs.icl_acc, c=np.where(runs.icl_acc >= levels.outcome, "C2", "C3"), s=14)
    outcomes.axhline(levels.outcome, color="gray", ls=":")
    outcomes.set_xscale("log")
    tick_swept(outcomes.xaxis, runs.K)
    outcomes.set_xlabel("K")
    outcomes.set_ylabel("final ICL accuracy (one dot per seed)")
    save(figure, summary, out_dir, "icl_time")
    split = summary[summary.bimodal]
    dips = summary.dropna(subset=["dip"])
    return (
        f"t_ICL median {reached.t_icl.median():.0f}, p90 {np.percentile(reached.t_icl, 90):.0f}, "
        f"max {reached.t_icl.max():.0f} over {len(reached)} runs; bimodal at K="
        + (", ".join(f"{k:.0f}" for k in split.K) or "none")
        + "".join(f"; dip test K={d.K:.0f}: dip {d.dip:.3f}, p {d.dip_p:.3f} ({d.seeds} seeds)" for d in dips.itertuples())
    )
