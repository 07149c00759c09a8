"""T6 (icl_mech.theory.equalized, icl_mech.analysis.equalized_shift): the equalized-context
threshold ratio against the flow, a hand-computed K* factor, its limits, and the measured shift."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from icl_mech.analysis.equalized_shift import equalized_shift, equalized_shift_verdicts
from icl_mech.analysis.levels import Levels
from icl_mech.theory.equalized import kstar_factor, threshold_ratio
from icl_mech.theory.flow import FlowParameters, integrate_flow


@pytest.mark.parametrize("beta0", [0.05, 0.7, 2.0])
def test_the_threshold_ratio_is_where_the_equalized_flow_runs_away_over_where_the_plain_one_does(beta0):
    level = beta0 + 20  # past it, the integral still needed is about e^-20 of the whole
    times = [
        integrate_flow(lambda t: 0.5, beta0, FlowParameters(N=21, n=1, eta=0.1, equalized=equalized), 1e9, level=level).t_icl
        for equalized in (True, False)
    ]
    assert times[0] / times[1] == pytest.approx(threshold_ratio(beta0, N=21, n=1), rel=1e-6)


def test_equalizing_raises_the_threshold_without_bound_as_beta0_falls_to_zero_and_never_runs_away_below():
    ratios = [threshold_ratio(beta0, N=21) for beta0 in (1.0, 0.3, 0.1, 0.01)]
    assert ratios == sorted(ratios) and ratios[0] > 1 and ratios[-1] > 3
    assert threshold_ratio(0.0, N=21) == math.inf and threshold_ratio(-0.5, N=21) == math.inf
    flow = integrate_flow(lambda t: 0.5, -0.5, FlowParameters(N=21, n=1, eta=0.1, equalized=True), 1e5)
    assert math.isnan(flow.t_icl) and flow.w[-1] < 0 and flow.beta[-1] < -0.5


def test_for_a_large_beta0_only_the_sharper_match_is_left_root_n_minus_one_minus_n_over_n_minus_one():
    # e^-beta0 -> 0: g(beta) -> beta - beta0 and the ratio -> gamma^(-1/2) = sqrt(19 / 20) at N = 21, n = 1
    assert threshold_ratio(30.0, N=21, n=1) == pytest.approx(math.sqrt(19 / 20), rel=1e-9)


def test_k_star_moves_by_the_threshold_ratio_to_the_power_one_over_nu():
    assert kstar_factor(2.0, 0.5) == pytest.approx(4.0)
    assert kstar_factor(1.5, 0.7) == pytest.approx(1.5 ** (1 / 0.7))


def _arm(k_values: list[float], equalized: bool) -> pd.DataFrame:
    """Two seeds per K whose final ICL accuracy climbs from chance to 1 around the middle K."""
    finals = {0: [0.5, 0.55, 0.7, 0.95, 1.0], 1: [0.5, 0.5, 0.8, 0.9, 1.0]}
    return pd.DataFrame([
        {"N": 21, "L": 2, "K": k, "seed": seed, "icl_acc": finals[seed][i], "equalized": equalized, "uncommitted": False}
        for i, k in enumerate(k_values) for seed in finals
    ])


def test_the_measured_shift_is_the_ratio_of_the_arms_k_star_beside_the_prediction_at_the_median_beta0():
    plain = [256.0, 512, 1024, 2048, 4096]
    sweeps = pd.concat([_arm(plain, False), _arm([2 * k for k in plain], True)])  # the same curve at twice the K
    beta0 = np.array([-0.2, 0.3, 0.5, 0.7, 1.0])
    (entry,) = equalized_shift(sweeps, {21: beta0}, (0.5, 0.4, 0.6), Levels()).values()
    assert entry["beta0_median"] == 0.5 and entry["theta_ratio"] == pytest.approx(threshold_ratio(0.5, 21))
    assert entry["kstar_factor"] == pytest.approx(entry["theta_ratio"] ** 2)
    # nu's interval [0.4, 0.6] maps to [ratio^(1/0.6), ratio^(1/0.4)]: the ratio is above 1
    ratio = entry["theta_ratio"]
    assert (entry["kstar_factor_lo"], entry["kstar_factor_hi"]) == pytest.approx((ratio ** (1 / 0.6), ratio ** 2.5))
    measured = entry["measured"]
    assert measured["shift"] == pytest.approx(2, rel=1e-3)
    assert measured["shift_lo"] < 2 < measured["shift_hi"]
    (line,) = equalized_shift_verdicts({21: entry})
    assert line.startswith("T6 N=21: equalized contexts: predicted K* x") and "measured x2.00" in line
