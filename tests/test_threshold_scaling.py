"""The K*(N) slope's bootstrap over seeds within each (N, K), on synthetic sweeps whose power law
K* = a N^s is known: seeds end in ICL with a probability that rises through K*(N)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from icl_mech.analysis.fits import fit_power_law
from icl_mech.analysis.levels import Levels
from icl_mech.analysis.threshold_scaling import bootstrap_slope, resample_within
from icl_mech.analysis.transition import threshold_table

#: The power law the synthetic sweeps follow: K* = PREFACTOR N^SLOPE.
PREFACTOR, SLOPE = 60.0, 1.2
NS = (10, 15, 20, 30, 40, 60)
#: Half-octave grid around each N's K*, as the claim 3b sweeps have it.
OCTAVES = (-1.0, -0.5, 0.0, 0.5, 1.0)


def synthetic_sweep(seeds: int, data_seed: int = 0, width: float = 0.35) -> pd.DataFrame:
    """One row per run: a seed ends in ICL (final ICL accuracy about 0.97) with probability
    sigmoid((ln K - ln K*(N)) / width), else memorizes (about 0.58)."""
    rng = np.random.default_rng(data_seed)
    rows = []
    for n in NS:
        k_star = PREFACTOR * n**SLOPE
        for k in np.round(k_star * 2.0 ** np.array(OCTAVES)):
            p_icl = 1 / (1 + np.exp(-(np.log(k) - np.log(k_star)) / width))
            icl = rng.random(seeds) < p_icl
            accuracy = np.where(icl, 0.97, 0.58) + rng.normal(0, 0.02, seeds)
            rows += [{"N": n, "K": k, "seed": s, "icl_acc": a, "L": 2} for s, a in enumerate(accuracy)]
    return pd.DataFrame(rows)


def test_the_bootstrap_interval_covers_the_slope_the_sweep_was_drawn_from():
    interval = bootstrap_slope(synthetic_sweep(seeds=16))
    assert interval.low < SLOPE < interval.high
    assert interval.high - interval.low < 0.6  # informative: the goal is a half-width of 0.3
    assert interval.draws == 2000 and interval.dropped < 20


def test_the_bootstrap_is_deterministic_for_a_seed_and_moves_with_it():
    runs = synthetic_sweep(seeds=8)
    assert bootstrap_slope(runs, draws=500, seed=3) == bootstrap_slope(runs, draws=500, seed=3)
    assert bootstrap_slope(runs, draws=500, seed=4) != bootstrap_slope(runs, draws=500, seed=3)


def test_more_seeds_per_k_narrow_the_interval():
    few, many = (bootstrap_slope(synthetic_sweep(seeds=seeds, data_seed=1), draws=1000) for seeds in (4, 16))
    assert many.high - many.low < 0.7 * (few.high - few.low)


def test_resampling_keeps_every_cell_its_count_and_draws_only_from_it():
    cells = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 2])
    picks = resample_within(cells, 400, np.random.default_rng(0))
    assert picks.shape == (400, cells.size)
    assert (cells[picks] == cells).all()
    assert len({tuple(row) for row in picks}) > 100  # it resamples: not the runs as they were


def test_a_sweep_whose_seeds_agree_within_each_k_has_no_spread_to_resample():
    """Every seed at a K ends the same way, so resampling within each K leaves every cell's
    mean, every K* and the slope unchanged; resampling across K would mix the two outcomes."""
    rows = []
    for n in NS:
        k_star = PREFACTOR * n**SLOPE
        for k in np.round(k_star * 2.0 ** np.array(OCTAVES)):
            accuracy = 0.97 if k > k_star else 0.58 if k < k_star else 0.8
            rows += [{"N": n, "K": k, "seed": s, "icl_acc": accuracy + 0.001 * s} for s in range(4)]
    interval = bootstrap_slope(pd.DataFrame(rows), draws=200)
    assert interval.high - interval.low < 0.02 and interval.dropped == 0


def test_draws_that_cannot_pin_k_star_at_some_n_are_dropped_and_counted():
    """At N = 20 only K = 400 reaches ICL, in 2 of 4 seeds: a resample with fewer than 2 ICL
    seeds there (5 in 16 draws) leaves no K of that N at or above half way."""
    rows = [{"N": 10, "K": k, "seed": s, "icl_acc": a} for k, a in ((100, 0.55), (200, 0.8), (400, 0.97)) for s in range(4)]
    rows += [{"N": 20, "K": k, "seed": s, "icl_acc": 0.55} for k in (100, 200) for s in range(4)]
    rows += [{"N": 20, "K": 400, "seed": s, "icl_acc": a} for s, a in enumerate((0.97, 0.97, 0.55, 0.55))]
    interval = bootstrap_slope(pd.DataFrame(rows), draws=2000)
    assert interval.dropped / interval.draws == pytest.approx(5 / 16, abs=0.04)
    assert np.isfinite([interval.low, interval.high]).all()


def test_the_point_estimate_lies_inside_its_own_bootstrap_interval():
    runs = synthetic_sweep(seeds=8, data_seed=2)
    thresholds = threshold_table(runs.assign(uncommitted=False), Levels(), ["N"])
    point = fit_power_law(thresholds.N.to_numpy(), thresholds.K_star.to_numpy()).exponent
    interval = bootstrap_slope(runs, draws=1000)
    assert interval.low < point < interval.high
