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
from typing import Any

import numpy as np
import pandas as pd

from icl_mech.analysis.levels import Levels
from icl_mech.analysis.transition import threshold_table
from icl_mech.theory.equalized import kstar_factor, threshold_ratio

#: Copies of the query item in a paired-format context: the query is one of the context's items.
COPIES = 1


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
    """T6 per N of ``beta0`` (the K = infinity seeds' beta0 at each N): the predicted Theta ratio
    and K* factor with nu = (value, low, high), and the measured shift where ``sweeps`` (finite-K
    whole-model runs) has both arms at that N."""
    result = {}
    for n, values in beta0.items():
        median = float(np.median(values))
        theta = threshold_ratio(median, n, COPIES)
        bounds = [kstar_factor(theta, exponent) for exponent in nu[1:]]
        result[n] = {
            "beta0_median": median, "seeds": len(values), "theta_ratio": theta, "nu": nu[0], "nu_low": nu[1],
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
