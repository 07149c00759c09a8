"""T6 beside the runs (``icl-mech theory``): the factor by which equalized contexts move K*,
predicted from the flow (``icl_mech.theory.equalized``) and, where a K sweep has both arms at one
N, measured as the ratio of the two arms' fitted K* (``threshold_table``, as claim 5 reads them).

The prediction takes the median seed: Theta grows with falling beta0 in both flows, so the median
Theta over seeds is the median beta0's, and T4's K* is where the median seed's Theta is reached.
Its interval is nu's (T1's fit) mapped through K* ~ Theta^(1/nu); the measured shift's interval is
the two K* intervals' extremes (low: equalized low over plain high).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from icl_mech.analysis.levels import Levels
from icl_mech.analysis.transition import threshold_table
from icl_mech.theory.equalized import kstar_factor, threshold_ratio

#: Copies of the query item in a paired-format context: the query is one of the context's items.
COPIES = 1
#: beta0 range of the figure's predicted curve (the ratio is unbounded as beta0 falls to 0).
CURVE_BETA0 = (0.05, 2.0)


def _measured_shift(sweep: pd.DataFrame, levels: Levels) -> dict[str, Any] | None:
    """K* of each arm and their ratio, or None without both arms (or without a K* in each)."""
    if sweep.equalized.nunique() < 2:
        return None
    arms = threshold_table(sweep, levels, ["equalized"]).set_index("equalized")
    plain, equalized = arms.loc[False], arms.loc[True]
    if not (math.isfinite(plain.K_star) and math.isfinite(equalized.K_star)):
        return {"why": f"K* plain: {plain.K_star_bound or plain.K_star_why or 'not fitted'}; "
                       f"equalized: {equalized.K_star_bound or equalized.K_star_why or 'not fitted'}"}
    return {
        "kstar_plain": plain.K_star, "kstar_plain_lo": plain.K_star_low, "kstar_plain_hi": plain.K_star_high,
        "kstar_equalized": equalized.K_star, "kstar_equalized_lo": equalized.K_star_low,
        "kstar_equalized_hi": equalized.K_star_high, "shift": equalized.K_star / plain.K_star,
        "shift_lo": equalized.K_star_low / plain.K_star_high, "shift_hi": equalized.K_star_high / plain.K_star_low,
    }


def equalized_shift(
    sweeps: pd.DataFrame, beta0: dict[int, np.ndarray], nu: tuple[float, float, float], levels: Levels
) -> dict[int, dict[str, Any]]:
    """T6 per N of ``beta0`` (the K = infinity seeds' beta0 at each N): those beta0, the predicted
    Theta ratio and K* factor at their median with nu = (value, low, high), and the measured shift
    where ``sweeps`` (finite-K whole-model runs) has both arms at that N."""
    result = {}
    for n, values in beta0.items():
        median = float(np.median(values))
        theta = threshold_ratio(median, n, COPIES)
        bounds = [kstar_factor(theta, exponent) for exponent in nu[1:]]
        result[n] = {
            "beta0": [float(value) for value in values], "beta0_median": median, "seeds": len(values), "theta_ratio": theta, "nu": nu[0], "nu_low": nu[1],
            "nu_high": nu[2], "kstar_factor": kstar_factor(theta, nu[0]), "kstar_factor_lo": min(bounds),
            "kstar_factor_hi": max(bounds), "measured": _measured_shift(sweeps[sweeps.N == n], levels),
        }
    return result


def _factor(value: float, low: float, high: float) -> str:
    if not math.isfinite(value):
        return "unbounded"
    return f"x{value:.3g} [{low:.3g}, {high:.3g}]"  # .3g: a small nu can make the high end huge


def equalized_shift_verdicts(shift: dict[int, dict[str, Any]]) -> list[str]:
    """One line per N: holds when the predicted and measured intervals overlap."""
    lines = []
    for n, entry in shift.items():
        predicted = (f"predicted K* {_factor(entry['kstar_factor'], entry['kstar_factor_lo'], entry['kstar_factor_hi'])} "
                     f"(Theta x{entry['theta_ratio']:.2f} at the median beta0 {entry['beta0_median']:.2f} of "
                     f"{entry['seeds']} K=inf seeds, nu {entry['nu']:.2f} [{entry['nu_low']:.2f}, {entry['nu_high']:.2f}])")
        if not math.isfinite(entry["theta_ratio"]):
            predicted = (f"predicted K* unbounded (the median beta0 {entry['beta0_median']:.2f} of {entry['seeds']} K=inf "
                         "seeds is <= 0: the equalized flow does not run away)")
        measured, head = entry["measured"], f"T6 N={n}: equalized contexts: {predicted}; measured"
        if measured is None:
            lines.append(f"{head}: no K sweep with equalized=false and true at this N")
        elif "why" in measured:
            lines.append(f"{head}: no shift ({measured['why']})")
        else:
            low, high = max(entry["kstar_factor_lo"], measured["shift_lo"]), min(entry["kstar_factor_hi"], measured["shift_hi"])
            overlap = math.isfinite(entry["kstar_factor"]) and low <= high
            lines.append(
                f"{head} x{measured['shift']:.2f} [{measured['shift_lo']:.2f}, {measured['shift_hi']:.2f}] "
                f"(K* {measured['kstar_plain']:.0f} plain, {measured['kstar_equalized']:.0f} equalized): "
                + ("holds (intervals overlap)" if overlap else "fails")
            )
    return lines


def equalized_shift_figure(shift: dict[int, dict[str, Any]], path: Path) -> None:
    """theory_T6.png: the predicted K* factor against beta0 (nu's interval shaded), each N's seeds
    as ticks along the bottom and its median as a dotted line, and the measured shift with its
    interval where there is one."""
    figure, axis = plt.subplots(figsize=(5.5, 3.8))
    grid = np.linspace(*CURVE_BETA0, 80)
    for index, (n, entry) in enumerate(shift.items()):
        colour, ratios = f"C{index}", np.array([threshold_ratio(beta0, n, COPIES) for beta0 in grid])
        axis.plot(grid, kstar_factor(ratios, entry["nu"]), color=colour, label=f"N={n} predicted, nu {entry['nu']:.2f}")
        ends = [kstar_factor(ratios, exponent) for exponent in (entry["nu_low"], entry["nu_high"])]
        axis.fill_between(grid, np.minimum(*ends), np.maximum(*ends), color=colour, alpha=0.15)
        axis.plot(entry["beta0"], np.full(len(entry["beta0"]), 1.0), "|", color=colour, ms=12)
        axis.axvline(entry["beta0_median"], color=colour, ls=":", lw=1)
        measured = entry["measured"]
        if measured and "shift" in measured:
            axis.axhline(measured["shift"], color=colour, ls="--", lw=1, label=f"N={n} measured x{measured['shift']:.2f}")
            axis.axhspan(measured["shift_lo"], measured["shift_hi"], color=colour, alpha=0.1)
    axis.set_yscale("log")
    axis.set_ylim(0.9, 20)
    axis.set_xlabel("beta0 (ticks: K = infinity seeds; dotted: their median)")
    axis.set_ylabel("K* equalized / K* plain")
    axis.set_title("T6: no run-away for beta0 <= 0 in the equalized flow", fontsize=9)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
