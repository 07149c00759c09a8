"""Curve fits behind the paper's numbers: a sigmoid in log K (the threshold K*) and a power law
(the memorization exponent nu, and the slope of K* against N), each with its uncertainty."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.optimize import curve_fit

from icl_mech.errors import ConfigError
from icl_mech.readout import chance

#: The sigmoid's default floor (chance with two labels) and its ceiling: ICL accuracy goes from
#: chance (1/L, ``icl_mech.readout.chance``) to perfect.
CHANCE, PERFECT = chance(2), 1.0


def sigmoid_in_log(k: np.ndarray, log_k_star: float, width: float, low: float = CHANCE, high: float = PERFECT) -> np.ndarray:
    """``low`` for K << K*, ``high`` for K >> K*, half way at K*; ``width`` in units of ln K."""
    return low + (high - low) / (1.0 + np.exp(-(np.log(k) - log_k_star) / width))


@dataclass(frozen=True)
class ThresholdFit:
    """K* from a sigmoid fit of accuracy against log K."""

    #: The fitted threshold (accuracy half way between chance and perfect).
    k_star: float
    #: Standard deviation of ln K* from the fit's covariance (inf when the data do not pin it).
    log_k_star_sd: float
    #: Width of the transition in units of ln K.
    width: float
    #: 95% interval of K*: from the covariance, widened to the bootstrap over seeds when given.
    interval: tuple[float, float]


def _fit_log_threshold(k: np.ndarray, accuracy: np.ndarray, low: float) -> tuple[np.ndarray, np.ndarray]:
    log_k = np.log(k)
    midpoint = (low + PERFECT) / 2
    above = log_k[accuracy >= midpoint]
    start = above.min() if above.size else log_k.max()
    bounds = ([log_k.min() - 3.0, 0.02], [log_k.max() + 3.0, 5.0])
    def curve(k: np.ndarray, log_k_star: float, width: float) -> np.ndarray:
        return sigmoid_in_log(k, log_k_star, width, low)

    return curve_fit(curve, k, accuracy, p0=[start, 0.3], bounds=bounds, maxfev=10000)


def fit_threshold(
    k: np.ndarray,
    accuracy: np.ndarray,
    groups: np.ndarray | None = None,
    n_bootstrap: int = 200,
    seed: int = 0,
    low: float = CHANCE,
) -> ThresholdFit:
    """Fit ``accuracy`` (one value per run) against ``k`` with ``sigmoid_in_log`` from ``low``
    (chance, 1/L) to perfect.

    The 95% interval is the covariance's, widened to cover the bootstrap interval when
    ``groups`` (each run's seed) are given: seeds are resampled with replacement, keeping all of
    a seed's runs together. Neither can see below the grid's spacing in K; read K* together with
    the K values that bracket it.
    """
    k, accuracy = np.asarray(k, dtype=float), np.asarray(accuracy, dtype=float)
    if np.unique(k).size < 3:
        raise ConfigError(f"a threshold fit needs runs at 3 or more values of K, got {sorted(set(k))}")
    (log_k_star, width), covariance = _fit_log_threshold(k, accuracy, low)
    sd = float(np.sqrt(covariance[0, 0])) if np.isfinite(covariance[0, 0]) else float("inf")
    with np.errstate(over="ignore"):  # an unpinned K* has an infinite interval
        interval = (float(np.exp(log_k_star - 1.96 * sd)), float(np.exp(log_k_star + 1.96 * sd)))
    if groups is not None and np.unique(groups).size > 1:
        rng = np.random.default_rng(seed)
        labels = np.unique(groups)
        estimates = []
        for _ in range(n_bootstrap):
            chosen = rng.choice(labels, size=labels.size)
            rows = np.concatenate([np.flatnonzero(groups == label) for label in chosen])
            if np.unique(k[rows]).size >= 3:
                estimates.append(_fit_log_threshold(k[rows], accuracy[rows], low)[0][0])
        low, high = np.exp(np.percentile(estimates, [2.5, 97.5]))
        interval = (min(interval[0], float(low)), max(interval[1], float(high)))
    return ThresholdFit(float(np.exp(log_k_star)), sd, float(width), interval)


@dataclass(frozen=True)
class PowerLawFit:
    """y = prefactor * x ** exponent, fitted as a line in log-log."""

    exponent: float
    prefactor: float
    #: Standard error of the exponent.
    exponent_sd: float
    #: 95% interval of the exponent (Student t on the residual degrees of freedom).
    interval: tuple[float, float]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.prefactor * np.asarray(x, dtype=float) ** self.exponent


def fit_power_law(x: np.ndarray, y: np.ndarray) -> PowerLawFit:
    """Least squares of ln y on ln x. Two points give the exponent with an infinite interval."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if np.unique(x).size < 2 or (x <= 0).any() or (y <= 0).any():
        raise ConfigError(f"a power-law fit needs positive points at 2 or more x values, got x={x.tolist()}")
    if x.size == 2:
        slope = float(np.diff(np.log(y))[0] / np.diff(np.log(x))[0])
        prefactor = float(y[0] / x[0] ** slope)
        return PowerLawFit(slope, prefactor, float("inf"), (float("-inf"), float("inf")))
    line = lambda log_x, slope, intercept: slope * log_x + intercept  # noqa: E731
    (slope, intercept), covariance = curve_fit(line, np.log(x), np.log(y))
    sd = float(np.sqrt(covariance[0, 0])) if np.isfinite(covariance[0, 0]) else float("inf")
    half = stats.t.ppf(0.975, df=x.size - 2) * sd
    return PowerLawFit(float(slope), float(np.exp(intercept)), sd, (float(slope - half), float(slope + half)))
