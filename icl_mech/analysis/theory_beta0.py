"""beta0's check for ``icl-mech theory``: each K = infinity seed's step-0 reading beside the beta0
of the reduced flow fitted to its early checkpoints (``icl_mech.theory.early_flow``).

T3 reads beta0 at step 0 alone; if the flow describes how the match sharpness then grows, the
beta0 it is fitted to from the later checkpoints agrees with that reading seed by seed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from icl_mech.errors import ConfigError
from icl_mech.run import load_run
from icl_mech.theory.early_flow import early_gaps, fit_early_flow

#: What the check adds to each K = infinity run of theory.json's ``runs``.
RUN_COLUMNS = ("beta0_fit", "flow_drive", "flow_rms", "flow_span")


def early_flow_fits(infinite: pd.DataFrame) -> pd.DataFrame:
    """``RUN_COLUMNS`` for every K = infinity run (NaN where too few checkpoints precede the jump)."""
    rows = []
    for run in infinite.run:
        try:
            fit = fit_early_flow(*early_gaps(load_run(run)))
            rows.append((run, fit.beta0, fit.drive, fit.rms, fit.span))
        except ConfigError:
            rows.append((run, *[math.nan] * len(RUN_COLUMNS)))
    return pd.DataFrame(rows, columns=["run", *RUN_COLUMNS])


def beta0_agreement(seeds: pd.DataFrame, level: float = 0.95) -> dict[str, Any]:
    """Over one N's K = infinity seeds (``beta0`` and ``RUN_COLUMNS``): the correlation of the
    fitted with the measured beta0, their mean difference (fitted - measured) with its t-interval,
    and the fits' median rms beside the median span of the gaps they fitted."""
    measured, fitted = seeds.beta0.to_numpy(float), seeds.beta0_fit.to_numpy(float)
    kept = np.isfinite(measured) & np.isfinite(fitted)
    n = int(kept.sum())
    summary: dict[str, Any] = {"n": n, "not_fitted": int((~kept).sum()), "r": None, "difference": None,
                               "difference_low": None, "difference_high": None, "median_rms": None, "median_span": None}
    if n < 3:
        return summary
    difference = fitted[kept] - measured[kept]
    half = stats.t.ppf((1 + level) / 2, n - 1) * difference.std(ddof=1) / math.sqrt(n)
    mean = float(difference.mean())
    summary.update(r=float(stats.pearsonr(measured[kept], fitted[kept]).statistic), difference=mean,
                   difference_low=mean - half, difference_high=mean + half,
                   median_rms=float(seeds.flow_rms[kept].median()), median_span=float(seeds.flow_span[kept].median()))
    return summary


def beta0_verdict(n: int, check: dict[str, Any]) -> str:
    """The check's line: agreement, or why there is none."""
    head = f"beta0 N={n}: flow fitted after step 0 vs the step-0 reading"
    if check["r"] is None:
        return f"{head}: {check['n']} seeds fitted, too few to compare"
    return (f"{head}, {check['n']} seeds: r = {check['r']:.2f}, difference {check['difference']:+.2f} "
            f"[{check['difference_low']:+.2f}, {check['difference_high']:+.2f}]; fit rms {check['median_rms']:.2f} "
            f"over gaps spanning {check['median_span']:.2f} (medians)"
            + (f"; {check['not_fitted']} seeds jumped before 3 checkpoints" if check["not_fitted"] else ""))
