"""Claim 6: with attention weight decay raised, ICL is acquired and later fades while IWL keeps
improving. The fade step is the first evaluation after ICL's peak where ICL accuracy is below
``levels.faded`` (only for runs whose peak reached it)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from icl_mech.analysis.plotting import MissingRuns, save
from icl_mech.analysis.sweep_table import Levels, plain_runs
from icl_mech.run import load_run


def fade_step(steps: np.ndarray, icl_acc: np.ndarray, level: float) -> tuple[int, float, float]:
    """(peak step, peak ICL accuracy, first step after the peak below ``level``, NaN if none)."""
    peak = int(np.argmax(icl_acc))
    if icl_acc[peak] < level:
        return int(steps[peak]), float(icl_acc[peak]), float("nan")
    after = np.flatnonzero(icl_acc[peak:] < level)
    return int(steps[peak]), float(icl_acc[peak]), float(steps[peak + after[0]]) if after.size else float("nan")


def transience_figure(table: pd.DataFrame, out_dir: Path, levels: Levels) -> str:
    """transience.png / .csv: ICL and IWL over training for runs with weight_decay_attn > 0."""
    runs = plain_runs(table)
    runs = runs[runs.weight_decay_attn > 0]
    if runs.empty:
        raise MissingRuns("transience needs whole-model runs with weight_decay_attn > 0")
    figure, axis = plt.subplots(figsize=(6.4, 4))
    rows = []
    for index, row in enumerate(runs.itertuples()):
        metrics = load_run(row.run).metrics
        peak_step, peak, faded = fade_step(metrics.step.to_numpy(), metrics.icl_acc.to_numpy(), levels.faded)
        label = f"K={row.K:.0f} wd_attn={row.weight_decay_attn:g} seed={row.seed}"
        axis.plot(metrics.step, metrics.icl_acc, "-", color=f"C{index}", label=f"ICL {label}")
        axis.plot(metrics.step, metrics.iwl_acc, "--", color=f"C{index}", alpha=0.6)
        if np.isfinite(faded):
            axis.axvline(faded, color=f"C{index}", ls=":", lw=1)
        rows.append({
            "run": row.run, "K": row.K, "N": row.N, "seed": row.seed, "weight_decay_attn": row.weight_decay_attn,
            "peak_step": peak_step, "peak_icl_acc": peak, "fade_step": faded,
            "final_icl_acc": row.icl_acc, "final_iwl_acc": row.iwl_acc, "final_step": row.final_step,
        })
    axis.axhline(levels.faded, color="gray", ls=":")
    axis.set_xlabel("step")
    axis.set_ylabel("accuracy (ICL solid, IWL dashed)")
    axis.legend(fontsize=6)
    summary = pd.DataFrame(rows)
    save(figure, summary, out_dir, "transience")
    faded = summary.dropna(subset=["fade_step"])
    return f"{len(faded)} of {len(summary)} runs: ICL peaked then fell below {levels.faded}" + (
        f" (fade steps {', '.join(f'{s:.0f}' for s in faded.fade_step)})" if len(faded) else ""
    )
