"""The fits behind K*, nu and the K*(N) slope recover known values from synthetic data."""

from __future__ import annotations

import numpy as np
import pytest

from icl_mech import ConfigError
from icl_mech.analysis.fits import fit_log_thresholds, fit_power_law, fit_threshold, sigmoid_in_log
from icl_mech.analysis.sweep_table import first_crossing
from icl_mech.analysis.transience import fade_step


def test_sigmoid_fit_recovers_a_known_threshold_with_an_interval_covering_it():
    rng = np.random.default_rng(1)
    k = np.repeat(2.0 ** np.arange(6, 15), 5)
    seeds = np.tile(np.arange(5), 9)
    accuracy = sigmoid_in_log(k, np.log(3000.0), 0.5) + rng.normal(0, 0.03, k.size)
    fit = fit_threshold(k, accuracy, seeds, n_bootstrap=50)
    assert fit.k_star == pytest.approx(3000, rel=0.1)
    assert fit.interval[0] < 3000 < fit.interval[1]
    assert fit.interval[1] / fit.interval[0] < 1.5  # informative, not the whole axis
    assert fit.width == pytest.approx(0.5, rel=0.25)


def test_sigmoid_fit_of_a_step_puts_the_threshold_between_the_bracketing_k():
    k = np.repeat([256.0, 512, 1024, 2048, 4096], 2)
    accuracy = np.where(k >= 2048, 0.96, 0.52)
    fit = fit_threshold(k, accuracy, np.tile([0, 1], 5), n_bootstrap=50)
    assert 1024 < fit.k_star < 2048


def test_thresholds_fitted_to_many_sweeps_at_once_are_each_sweeps_own_fit():
    """Each row's fit from its K's mean accuracies is the per-run fit of ``fit_threshold``: a
    graded transition, a step (width at its bound) and sweeps all on one side of K*."""
    ks = np.array([256.0, 512, 1024, 2048, 4096])
    rng = np.random.default_rng(3)
    p_icl = np.array([0.1, 0.2, 0.5, 0.8, 0.9])
    graded = [np.where(rng.random((5, 8)) < p_icl[:, None], 0.97, 0.57).mean(1) for _ in range(3)]
    rows = np.array([*graded, [0.52, 0.52, 0.52, 0.96, 0.96], [0.55] * 5, [0.97] * 5])
    batched = fit_log_thresholds(ks, rows, np.full(5, 8.0))
    for row, log_k_star in zip(rows, batched):
        single = fit_threshold(np.repeat(ks, 8), np.repeat(row, 8))
        assert np.exp(log_k_star) == pytest.approx(single.k_star, rel=1e-4)


def test_threshold_fit_needs_three_values_of_k():
    with pytest.raises(ConfigError, match="3 or more values of K"):
        fit_threshold(np.array([64.0, 64, 128]), np.array([0.5, 0.5, 0.9]))


def test_power_law_fit_recovers_a_known_exponent_with_an_interval_covering_it():
    rng = np.random.default_rng(2)
    k = np.repeat([128.0, 256, 512, 1024, 2048, 4096], 4)
    time = 5.0 * k**0.7 * np.exp(rng.normal(0, 0.08, k.size))
    fit = fit_power_law(k, time)
    assert fit.exponent == pytest.approx(0.7, abs=0.05)
    assert fit.interval[0] < 0.7 < fit.interval[1]
    assert fit.prefactor == pytest.approx(5.0, rel=0.5)


def test_power_law_through_two_points_is_exact_with_an_unbounded_interval():
    fit = fit_power_law(np.array([10.0, 20.0]), np.array([100.0, 100.0 * 2**1.43]))
    assert fit.exponent == pytest.approx(1.43)
    assert fit.interval == (-np.inf, np.inf)


def test_first_crossing_interpolates_between_evaluations_only_when_asked():
    steps, values = np.array([0, 100, 200]), np.array([0.5, 0.7, 0.9])
    assert first_crossing(steps, values, 0.8) == 200
    assert first_crossing(steps, values, 0.8, interpolate=True) == pytest.approx(150)
    assert np.isnan(first_crossing(steps, values, 0.95))


def test_fade_step_is_the_first_drop_below_the_level_after_the_peak():
    steps = np.arange(0, 800, 100)
    icl = np.array([0.5, 0.6, 0.97, 0.9, 0.8, 0.7, 0.6, 0.8])
    assert fade_step(steps, icl, 0.75) == (200, 0.97, 500.0)
    peak_step, peak, faded = fade_step(steps, np.full(8, 0.6), 0.75)
    assert np.isnan(faded)
