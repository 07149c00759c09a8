"""The theory's predictions that need no fitted constant: T3 and T4 (docs/THEORY.md).

- T3: at K = infinity nothing is memorized, c1 stays at 1/2, and ICL is acquired once I = t/2
  reaches the threshold Theta ~ N e^-beta0: t_ICL ~ N e^-beta0, so ln t_ICL falls with slope -1
  in the seed's beta0.
- T4: a seed acquires ICL by time t at finite K iff its threshold is below I_K(t), and its
  threshold is half its K = infinity acquisition time. So with F_inf the distribution over seeds
  of t_ICL at K = infinity (same N, same optimizer), P_ICL(K, t) = F_inf(2 I_K(t)), and K* is
  where that crosses 1/2: 2 I_K* = the median K = infinity t_ICL.

K = infinity seeds that never reached ICL are censored at their run's end: they count as "not
by then" at every I, so past the K = infinity runs' horizon F_inf is a lower bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from jaxtyping import Float, Int
from scipy import stats

from icl_mech.errors import ConfigError

#: c1 at K = infinity with two labels: nothing is memorized, so the MLP's logit stays at its
#: initial value, about 0, and sigmoid(-l * 0) = 1/2.
C1_UNMEMORIZED = 0.5


@dataclass(frozen=True)
class Interval:
    """An estimate with its 95% interval and the number of values behind it."""

    value: float
    low: float
    high: float
    n: int


def _censored(t_icl: np.ndarray) -> np.ndarray:
    """t_ICL with runs that never reached ICL (NaN) as infinity, sorted."""
    t_icl = np.asarray(t_icl, dtype=float)
    return np.sort(np.where(np.isnan(t_icl), np.inf, t_icl))


def acquisition_probability(
    t_icl_inf: Float[np.ndarray, " seeds"], memorized: Float[np.ndarray, " points"], level: float = 0.95
) -> tuple[Float[np.ndarray, " points"], Float[np.ndarray, " points"], Float[np.ndarray, " points"]]:
    """T4's P_ICL = F_inf(I_K / c1_inf) at each memorization integral I_K in ``memorized``, as the
    empirical CDF of the K = infinity acquisition times ``t_icl_inf`` (NaN: never reached), with
    its Clopper-Pearson interval (exact binomial, over the K = infinity seeds): (p, low, high)."""
    times = _censored(t_icl_inf)
    n = times.size
    reached = np.searchsorted(times, np.asarray(memorized, dtype=float) / C1_UNMEMORIZED, side="right")
    return (reached / n, *clopper_pearson(reached, n, level))


def clopper_pearson(
    successes: Int[np.ndarray, " points"] | int, trials: Int[np.ndarray, " points"] | int, level: float = 0.95
) -> tuple[Float[np.ndarray, " points"], Float[np.ndarray, " points"]]:
    """The exact (Clopper-Pearson) binomial interval of ``successes`` out of ``trials``, elementwise:
    (low, high), 0 and 1 at the ends."""
    successes, trials = np.asarray(successes), np.asarray(trials)
    tail = (1 - level) / 2
    with np.errstate(invalid="ignore"):
        low = np.where(successes > 0, stats.beta.ppf(tail, successes, trials - successes + 1), 0.0)
        high = np.where(successes < trials, stats.beta.ppf(1 - tail, successes + 1, trials - successes), 1.0)
    return low, high


def median_interval_ranks(n: int, level: float = 0.95) -> tuple[int, int] | None:
    """1-based ranks (r, n + 1 - r) of the order statistics that bracket the median with at least
    ``level`` confidence (distribution-free: the count below the median is Binomial(n, 1/2)), or
    None when n is too small for any."""
    r = int(stats.binom.ppf((1 - level) / 2, n, 0.5))
    return (r, n + 1 - r) if r >= 1 else None


def predicted_threshold(
    t_icl_inf: Float[np.ndarray, " seeds"], prefactor: float, exponent: float, level: float = 0.95
) -> Interval:
    """T4's K*: where P_ICL = F_inf(2 I_K) crosses 1/2 with I_K = prefactor K^exponent (T1 at the
    horizon the prediction is for), so K* = (median t_ICL / (2 prefactor))^(1/exponent). The
    interval maps the median's order-statistic interval through the same formula; it leaves out
    the uncertainty of the power law (docs/THEORY.md). Infinite when most seeds never reached ICL."""
    times = _censored(t_icl_inf)
    n = times.size

    def k_star(t: float) -> float:
        return (t * C1_UNMEMORIZED / prefactor) ** (1 / exponent) if math.isfinite(t) else math.inf

    median = float(np.median(times))
    ranks = median_interval_ranks(n, level)
    low, high = (k_star(times[ranks[0] - 1]), k_star(times[ranks[1] - 1])) if ranks else (0.0, math.inf)
    return Interval(k_star(median), low, high, n)


def log_time_slope(
    beta0: Float[np.ndarray, " seeds"], t_icl: Float[np.ndarray, " seeds"], level: float = 0.95
) -> Interval:
    """T3's slope of ln t_ICL on beta0 (least squares) with its ``level`` t-interval, over the seeds
    that reached ICL (T3 predicts -1). Seeds that never reached it are left out, which can only
    flatten the slope: the slowest seeds, those with the smallest beta0, are the ones missing."""
    beta0, t_icl = np.asarray(beta0, dtype=float), np.asarray(t_icl, dtype=float)
    kept = np.isfinite(t_icl) & (t_icl > 0) & np.isfinite(beta0)
    if kept.sum() < 3 or np.ptp(beta0[kept]) == 0:
        raise ConfigError(
            f"the slope of ln t_ICL on beta0 needs 3 or more seeds that reached ICL with different beta0, got {int(kept.sum())}"
        )
    fit = stats.linregress(beta0[kept], np.log(t_icl[kept]))
    half = stats.t.ppf((1 + level) / 2, kept.sum() - 2) * fit.stderr
    return Interval(float(fit.slope), float(fit.slope - half), float(fit.slope + half), int(kept.sum()))
