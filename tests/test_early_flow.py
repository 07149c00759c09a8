"""The K = infinity flow's closed form, and its fit to a run's early match sharpness (beta0's check)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from icl_mech.errors import ConfigError
from icl_mech.theory.early_flow import fit_early_flow, flow_beta
from icl_mech.theory.flow import FlowParameters, integrate_flow


@pytest.mark.parametrize("beta0", [-0.5, 0.0, 0.7])
def test_the_closed_form_is_the_integrated_flow_at_c1_one_half(beta0):
    params = FlowParameters(N=20, n=2, eta=0.01)
    t_run = math.sqrt(math.pi / 2) * math.exp(-beta0) / (params.drive * 0.5)
    flow = integrate_flow(lambda t: 0.5, beta0, params, t_end=0.9 * t_run, level=50.0)
    np.testing.assert_allclose(flow_beta(flow.t, beta0, t_run), flow.beta, atol=1e-6)


def test_the_fit_recovers_beta0_and_the_drive_from_checkpoints_after_step_0():
    beta0, t_run = 0.3, 2500.0
    steps = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 1500, 2000])
    fit = fit_early_flow(steps, flow_beta(steps, beta0, t_run))
    assert fit.beta0 == pytest.approx(beta0, abs=1e-6) and fit.t_run == pytest.approx(t_run, rel=1e-5)
    assert fit.drive == pytest.approx(math.sqrt(math.pi / 2) * math.exp(-beta0) / (0.5 * t_run), rel=1e-5)
    assert fit.rms < 1e-6 and fit.n == steps.size and fit.span == pytest.approx(np.ptp(flow_beta(steps, beta0, t_run)))


def test_a_gap_that_grows_linearly_is_fitted_worse_than_the_flows_own_curve():
    """Under steps of a fixed size (Adam) the gap climbs about linearly: the flow's erfinv^2 shape
    cannot follow it, and the fit's rms says so."""
    steps = np.linspace(50, 2000, 40)
    own = fit_early_flow(steps, flow_beta(steps, 0.2, 2400.0))
    linear = fit_early_flow(steps, 0.2 + 0.002 * steps)
    assert linear.rms > 100 * max(own.rms, 1e-9) and linear.rms > 0.01


def test_the_fit_refuses_too_few_checkpoints_or_step_0():
    with pytest.raises(ConfigError, match="3 or more checkpoints after step 0"):
        fit_early_flow(np.array([0.0, 10.0, 20.0]), np.array([0.1, 0.2, 0.3]))
    with pytest.raises(ConfigError, match="3 or more checkpoints after step 0"):
        fit_early_flow(np.array([10.0, 20.0]), np.array([0.1, 0.2]))
