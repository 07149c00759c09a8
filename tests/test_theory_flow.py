"""The reduced flow (icl_mech.theory.flow) against its closed forms, to 1e-6."""

from __future__ import annotations

import math

import numpy as np
import pytest

from icl_mech.theory.flow import FlowParameters, integrate_flow

TAU = 300.0


def decaying_residual(t: float) -> float:
    """c1 = e^(-t/tau) / 2: starts at 1/2 and falls as items are memorized."""
    return 0.5 * math.exp(-t / TAU)


def decaying_integral(t: np.ndarray) -> np.ndarray:
    return 0.5 * TAU * (1 - np.exp(-t / TAU))


def test_with_the_readout_fixed_e_minus_beta_falls_by_the_drive_times_the_memorization_integral():
    params = FlowParameters(N=20, n=3, eta=0.05, train_readout=False)
    beta0, w0 = -1.0, 0.7
    flow = integrate_flow(decaying_residual, beta0, params, t_end=2000.0, w0=w0)
    assert np.allclose(flow.memorized, decaying_integral(flow.t), rtol=0, atol=1e-6)
    assert np.allclose(flow.w, w0)
    predicted = np.exp(-beta0) - params.drive * w0 * decaying_integral(flow.t)
    assert np.allclose(np.exp(-flow.beta), predicted, rtol=0, atol=1e-6)
    assert len(flow.t) > 10


def test_from_a_zero_readout_beta_rises_by_half_the_readout_squared():
    params = FlowParameters(N=20, n=2, eta=0.2)
    flow = integrate_flow(decaying_residual, 0.3, params, t_end=5000.0)
    assert flow.w[-1] > 1  # the readout grew: the relation is tested away from zero
    assert np.allclose(flow.beta - 0.3, flow.w**2 / 2, rtol=0, atol=1e-6)


@pytest.mark.parametrize("beta0", [-2.0, 0.0, 1.5])
def test_beta_runs_away_once_the_drive_times_the_integral_reaches_root_half_pi_e_minus_beta0(beta0):
    params = FlowParameters(N=40, n=1, eta=0.1)
    level = beta0 + 20  # past it, the integral still needed is about e^-20 of the whole
    flow = integrate_flow(lambda t: 0.5, beta0, params, t_end=1e7, level=level)
    jump = math.sqrt(math.pi / 2) * math.exp(-beta0)
    assert params.drive * 0.5 * flow.t_icl == pytest.approx(jump, rel=1e-6)
    assert flow.t[-1] == pytest.approx(flow.t_icl)


def test_a_logged_residual_is_read_linearly_between_steps():
    steps = np.linspace(0, 2000, 41)
    values = 0.5 * np.exp(-steps / TAU)
    params = FlowParameters(N=20, n=2, eta=0.05)
    logged = integrate_flow((steps, values), 0.0, params, t_end=2000.0)
    trapezoid = np.concatenate([[0], np.cumsum(np.diff(steps) * (values[1:] + values[:-1]) / 2)])
    assert logged.memorized[-1] == pytest.approx(trapezoid[-1], rel=1e-6)


def test_weight_decay_stops_the_jump_that_the_same_flow_makes_without_it():
    params = FlowParameters(N=20, n=2, eta=0.05)
    free = integrate_flow(lambda t: 0.5, -1.0, params, t_end=5000.0)
    decayed = integrate_flow(lambda t: 0.5, -1.0, FlowParameters(N=20, n=2, eta=0.05, weight_decay=0.05), t_end=5000.0)
    assert free.t_icl < 5000 and free.beta[-1] == pytest.approx(math.log(20))
    assert math.isnan(decayed.t_icl) and decayed.beta[-1] < 0.1
    assert free.in_context_logit[-1] > 0.5 * free.w[-1] * 2 / 21
