"""The reduced flow past acquisition, with weight decay: T5, transience (docs/THEORY.md).

``integrate_flow`` stops at acquisition: its rates take the copies' share of the attention as
n e^beta / N and the drive as the MLP's residual c1 alone, both right while e^beta << N, and with
them beta diverges in finite time, so the flow has no state after ICL to fade from. Here the
same (beta, w) move under the rates those two approximations come from:

- the copies' share is the whole softmax, s = n e^beta / (n e^beta + N - 1 - n), and the
  in-context logit g = w s (the other context labels cancel on average);
- the drive is the whole query's residual, sigmoid(-(m + g)), with m the in-weights margin that
  leaves c1 = sigmoid(-m): r = c1 / (c1 + (1 - c1) e^g) (every item at the mean margin, a
  mean-field reading);

      d beta / dt = eta r w s (1 - s) - lambda beta,    d w / dt = eta r s - lambda w.

For e^beta << N these are ``integrate_flow``'s (with N - 1 - n in place of N); after
acquisition the context's own logit saturates the drive, so with lambda = 0 beta and w grow
slowly for ever and ICL stays, and with lambda > 0 they settle where drive and decay balance.
Once the MLP has memorized (c1 -> 0) the drive stops: beta and w decay as e^(-lambda t), so
beta falls back through ln N (ICL fades) ln(beta_m / ln N) / lambda after memorization, where
beta_m is where it stood: the fade comes as 1 / lambda, and never at lambda = 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from scipy.integrate import solve_ivp
from scipy.optimize import brentq

from icl_mech.errors import ConfigError
from icl_mech.theory.flow import FlowParameters, FlowPath, Residual, residual_function

#: The drives (eta) ``fit_drive`` searches between: far slower and far faster than any run.
DRIVE_BRACKET = (1e-6, 1e3)


@dataclass(frozen=True)
class FadingTrajectory(FlowPath):
    """The saturating flow's solution at the times asked for; its in-context logit is g = w s(beta),
    the copies' share of the attention times the readout, and t_ICL the first rise through the level."""

    #: When beta first fell back through the level after t_ICL (NaN when it did not by the end).
    t_fade: float


def copies_share(beta: np.ndarray | float, params: FlowParameters) -> np.ndarray | float:
    """s(beta): the attention on the query's n copies when each scores beta above the other N - 1 - n."""
    copies = params.n * np.exp(beta)
    return copies / (copies + params.N - 1 - params.n)


def integrate_fading_flow(
    c1: Residual,
    beta0: float,
    params: FlowParameters,
    t_end: float,
    *,
    w0: float = 0.0,
    level: float | None = None,
    t_eval: np.ndarray | None = None,
    rtol: float = 1e-9,
    atol: float = 1e-11,
) -> FadingTrajectory:
    """Integrate the saturating flow from (``beta0``, ``w0``) to ``t_end``; t_ICL and t_fade are
    where beta crosses ``level`` (default ln N, as ``integrate_flow``'s jump) up, then down."""
    drive, decay, residual = params.eta, params.weight_decay, residual_function(c1)
    level = math.log(params.N) if level is None else level

    def rates(t: float, state: np.ndarray) -> list[float]:
        beta, w = state
        share, c = copies_share(beta, params), residual(t)
        push = drive * c / (c + (1 - c) * math.exp(w * share))
        return [push * w * share * (1 - share) - decay * beta, push * share - decay * w]

    def crossing(direction: float) -> Callable[[float, np.ndarray], float]:
        def event(t: float, state: np.ndarray) -> float:
            return state[0] - level

        event.direction = direction
        return event

    solution = solve_ivp(
        rates, (0.0, t_end), [beta0, w0], method="DOP853", events=[crossing(1.0), crossing(-1.0)], t_eval=t_eval,
        rtol=rtol, atol=atol,
    )
    if solution.status < 0:
        raise ValueError(f"the saturating flow could not be integrated to t = {t_end}: {solution.message}")
    ups, downs = solution.t_events
    t_icl = float(ups[0]) if ups.size else math.nan
    after = downs[downs > t_icl] if ups.size else downs[:0]
    beta, w = solution.y
    return FadingTrajectory(
        solution.t, beta, w, w * copies_share(beta, params), t_icl, float(after[0]) if after.size else math.nan
    )


def fit_drive(c1: Residual, beta0: float, params: FlowParameters, t_icl: float, t_end: float) -> float:
    """The drive eta with which the saturating flow, driven by ``c1`` from ``beta0`` under
    ``params`` (its eta ignored), reaches ICL at ``t_icl``: the flow's one free scale."""
    if not (math.isfinite(t_icl) and 0 < t_icl <= t_end):
        raise ConfigError(f"the flow's drive is fitted on a run that reached ICL, got t_ICL = {t_icl}")

    def miss(log_eta: float) -> float:
        flow = integrate_fading_flow(c1, beta0, replace(params, eta=math.exp(log_eta)), t_end)
        reached = flow.t_icl if math.isfinite(flow.t_icl) else 2 * t_end  # not by the end: later than any t_ICL
        return math.log(reached) - math.log(t_icl)

    low, high = (math.log(eta) for eta in DRIVE_BRACKET)
    if miss(low) <= 0 or miss(high) >= 0:
        raise ConfigError(f"no drive in {DRIVE_BRACKET} puts the flow's t_ICL at {t_icl}")
    return math.exp(brentq(miss, low, high, xtol=1e-6))
