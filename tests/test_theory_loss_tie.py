"""T7 (icl_mech.theory.loss_tie): the ICL-IWL loss tie on synthetic trajectories, one built from
the relation with a known eta' and one that breaks it."""

from __future__ import annotations

import numpy as np
import pytest

from icl_mech.theory.loss_tie import HOLDS_R2, fit_tie, shared_residual, tie_coordinates, tied_icl_loss

ETA = 0.02
STEPS = np.linspace(0.0, 3000.0, 3001)


def tied_losses(zeta0: float, amplitude: float, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """(L_ICL, L_IWL) on STEPS with zeta = zeta0 + amplitude ln(1 + t / tau), and the IWL loss
    chosen so that the shared residual is exactly d zeta / dt / eta: the relation holds."""
    zeta = zeta0 + amplitude * np.log1p(STEPS / tau)
    residual = amplitude / (tau + STEPS) / ETA
    q = residual * np.exp(zeta) / (1 - residual)  # R = q / (q + e^zeta)
    return np.log1p(np.exp(-zeta)), np.log1p(q)


def test_the_residual_is_the_product_of_the_losses_when_both_are_small():
    assert shared_residual(np.array([1e-4]), np.array([2e-4]))[0] == pytest.approx(2e-8, rel=1e-3)


def test_a_trajectory_built_from_the_relation_gives_back_its_eta_on_a_straight_line():
    curves = [tie_coordinates(STEPS, *tied_losses(zeta0, amplitude, tau)) for zeta0, amplitude, tau in
              [(0.5, 1.0, 200.0), (1.5, 0.6, 500.0), (0.0, 1.2, 300.0)]]
    fit = fit_tie(curves)
    assert fit.slope == pytest.approx(-ETA, rel=1e-6)
    assert fit.slopes == pytest.approx([-ETA] * 3, rel=1e-6)
    assert fit.r2 == pytest.approx(1, abs=1e-9) and min(fit.r2s) >= HOLDS_R2
    # the same curves are not straight in plain time: the tie, not the clock, makes the line
    time_fit = fit_tie([(STEPS, y) for _, y in curves])
    assert time_fit.r2 < 0.95


def test_an_icl_loss_that_rises_while_the_residual_pushes_it_down_breaks_the_relation():
    icl_loss, iwl_loss = tied_losses(0.5, 1.0, 200.0)
    broken = icl_loss * (1 + 0.8 * np.sin(STEPS / 300))
    fit = fit_tie([tie_coordinates(STEPS, broken, iwl_loss)])
    assert fit.r2 < HOLDS_R2


def test_the_flow_driven_by_the_logged_iwl_loss_reproduces_the_icl_loss_it_was_built_from():
    icl_loss, iwl_loss = tied_losses(0.5, 1.0, 200.0)
    predicted = tied_icl_loss(STEPS[::10], iwl_loss[::10], icl_loss[0], ETA)
    assert predicted == pytest.approx(icl_loss[::10], rel=1e-3)
