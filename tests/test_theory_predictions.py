"""T3 and T4 (icl_mech.theory.predictions) on synthetic seeds whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from icl_mech.errors import ConfigError
from icl_mech.theory.predictions import acquisition_probability, log_time_slope, predicted_threshold


def test_p_icl_is_the_share_of_infinite_k_seeds_done_by_twice_the_memorization_integral():
    t_inf = np.array([100.0, 200, 300, 400, 500, 600, 700, 800, np.nan, np.nan])  # two never got there
    p, low, high = acquisition_probability(t_inf, np.array([0.0, 50, 149, 150, 1e9]))
    assert p.tolist() == [0.0, 0.1, 0.2, 0.3, 0.8]
    assert np.all(low <= p) and np.all(p <= high)
    # Clopper-Pearson at 0 of 10: [0, 1 - 0.025^(1/10)]
    assert (low[0], high[0]) == (0.0, pytest.approx(1 - 0.025 ** 0.1))


def test_predicted_k_star_puts_twice_the_power_law_integral_at_the_median_infinite_k_time():
    rng = np.random.default_rng(0)
    t_inf = np.sort(rng.lognormal(math.log(2000), 0.5, size=31))
    prefactor, exponent = 3.0, 0.7
    k_star = predicted_threshold(t_inf, prefactor, exponent)
    assert 2 * prefactor * k_star.value**exponent == pytest.approx(t_inf[15])
    p, _, _ = acquisition_probability(t_inf, prefactor * np.array([k_star.value * 0.999, k_star.value * 1.001]) ** exponent)
    assert p[0] < 0.5 <= p[1]
    # the median's distribution-free interval at n = 31: the 10th and 22nd order statistics
    assert 2 * prefactor * k_star.low**exponent == pytest.approx(t_inf[9])
    assert 2 * prefactor * k_star.high**exponent == pytest.approx(t_inf[21])
    assert k_star.n == 31


def test_k_star_is_infinite_when_most_infinite_k_seeds_never_acquired_icl():
    k_star = predicted_threshold(np.array([100.0, np.nan, np.nan, np.nan, np.nan]), 1.0, 0.7)
    assert k_star.value == math.inf and k_star.high == math.inf


def test_the_slope_interval_covers_the_true_slope_about_95_times_in_100():
    rng = np.random.default_rng(1)
    covered = []
    for _ in range(400):
        beta0 = rng.normal(0, 0.5, size=32)
        t_icl = 500 * np.exp(-beta0 + rng.normal(0, 0.3, size=32))
        fit = log_time_slope(beta0, t_icl)
        covered.append(fit.low <= -1 <= fit.high)
    assert 0.92 <= np.mean(covered) <= 0.98


def test_the_slope_of_an_exact_exponential_is_minus_one_with_no_width():
    beta0 = np.array([-0.5, 0.0, 0.3, 0.8, np.nan])
    fit = log_time_slope(beta0, 40 * np.exp(-beta0))
    assert (fit.value, fit.low, fit.high, fit.n) == (pytest.approx(-1), pytest.approx(-1), pytest.approx(-1), 4)


def test_the_slope_needs_three_seeds_that_reached_icl():
    with pytest.raises(ConfigError, match="needs 3 or more seeds that reached ICL"):
        log_time_slope(np.array([0.1, 0.2, 0.3]), np.array([10.0, np.nan, 30.0]))
