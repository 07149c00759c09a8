"""Curve fits behind the paper's numbers: a sigmoid in log K (the threshold K*) and a power law
(the memorization exponent nu, and the slope of K* against N), each with its uncertainty."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from jaxtyping import Float
from scipy import stats
from scipy.optimize import curve_fit
from scipy.special import expit

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


#: The width a threshold fit starts from, and the bounds of its width (units of ln K).
START_WIDTH, WIDTH_BOUNDS = 0.3, (0.02, 5.0)
#: How far past the swept ln K a fitted ln K* may go (then it is reported as outside the grid).
LOG_K_MARGIN = 3.0


def _start(log_k: np.ndarray, accuracy: np.ndarray, low: float) -> np.ndarray:
    """The ln K* a fit starts from: the smallest ln K at or above the sigmoid's midpoint (the
    largest ln K where none is), along the last axis."""
    above = np.where(accuracy >= (low + PERFECT) / 2, log_k, np.inf).min(axis=-1)
    return np.where(np.isfinite(above), above, log_k.max())


def _fit_log_threshold(k: np.ndarray, accuracy: np.ndarray, low: float) -> tuple[np.ndarray, np.ndarray]:
    log_k = np.log(k)
    bounds = ([log_k.min() - LOG_K_MARGIN, WIDTH_BOUNDS[0]], [log_k.max() + LOG_K_MARGIN, WIDTH_BOUNDS[1]])
    def curve(k: np.ndarray, log_k_star: float, width: float) -> np.ndarray:
        return sigmoid_in_log(k, log_k_star, width, low)

    return curve_fit(curve, k, accuracy, p0=[float(_start(log_k, accuracy, low)), START_WIDTH], bounds=bounds, maxfev=10000)


def fit_log_thresholds(
    k: Float[np.ndarray, " cell"],
    means: Float[np.ndarray, "draw cell"],
    counts: Float[np.ndarray, " cell"],
    low: float = CHANCE,
    iterations: int = 200,
) -> Float[np.ndarray, " draw"]:
    """ln K* of ``sigmoid_in_log`` fitted to every row of ``means`` at once, for bootstraps that
    refit thousands of resampled sweeps.

    A row holds the mean accuracy of each K's runs (``counts`` of them). Least squares over the
    runs and over their means weighted by the counts differ by a constant (each cell's spread
    about its mean), so each row's fit is ``fit_threshold``'s on those runs, from the same start
    and within the same bounds; it is found by Levenberg-Marquardt steps taken on all rows
    together (two parameters: each step solves a 2x2 system in closed form).
    """
    log_k, counts = np.log(np.asarray(k, dtype=float)), np.asarray(counts, dtype=float)
    lower = np.array([log_k.min() - LOG_K_MARGIN, WIDTH_BOUNDS[0]])
    upper = np.array([log_k.max() + LOG_K_MARGIN, WIDTH_BOUNDS[1]])
    rise = PERFECT - low

    def cost(theta: np.ndarray) -> np.ndarray:
        fitted = low + rise * expit((log_k - theta[:, :1]) / theta[:, 1:])
        return ((means - fitted) ** 2 * counts).sum(axis=1)

    theta = np.stack([_start(log_k, means, low), np.full(len(means), START_WIDTH)], axis=1)
    current, damping = cost(theta), np.full(len(means), 1e-3)
    for _ in range(iterations):
        log_k_star, width = theta[:, :1], theta[:, 1:]
        z = (log_k - log_k_star) / width
        slope = rise * expit(z) * expit(-z)  # d fitted / d z
        residual = means - low - rise * expit(z)
        d_centre, d_width = -slope / width, -slope * z / width  # d fitted / d ln K*, d width
        a, b, d = ((d_centre**2) * counts).sum(1), (d_centre * d_width * counts).sum(1), ((d_width**2) * counts).sum(1)
        g_centre, g_width = (d_centre * residual * counts).sum(1), (d_width * residual * counts).sum(1)
        a, d = a * (1 + damping) + 1e-12, d * (1 + damping) + 1e-12
        determinant = a * d - b * b
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.stack([(d * g_centre - b * g_width) / determinant, (a * g_width - b * g_centre) / determinant], axis=1)
        trial = np.clip(theta + step, lower, upper)
        trial_cost = cost(np.nan_to_num(trial, nan=1.0))
        better = np.isfinite(trial).all(axis=1) & (trial_cost < current)
        theta = np.where(better[:, None], trial, theta)
        current = np.where(better, trial_cost, current)
        damping = np.where(better, damping / 3, np.minimum(damping * 3, 1e12))
    return theta[:, 0]


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
