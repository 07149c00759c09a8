"""The reduced flow of the in-context parameters, driven by the MLP's residual.

Our reconstruction of the paper's reduced model (docs/THEORY.md): the query's logit is
z = phi(x_q) + w sum_j p_j l_j with p_j = softmax_j(beta s_j), s_j about 1 on the n copies of the
query item in the context and about 0 on the other items. Before ICL is acquired the in-context
parameters feel the loss only through the part the MLP has not explained, c1(t), and under
gradient flow with learning rate eta and weight decay lambda

    d beta / dt = eta n w c1 e^beta / N - lambda beta,    d w / dt = eta n c1 e^beta / N - lambda w.

Both grow with e^beta, so beta runs away in finite time: ICL switches on abruptly. The
integration stops there, at the event where beta crosses a level (ln N by default: a copy's
attention weight e^beta / (e^beta + N) reaches order one), which is t_ICL. The memorization
integral I_K(t) = int_0^t c1 rides along as a third variable, so each point of the trajectory
carries the I_K that drove it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from jaxtyping import Float
from scipy.integrate import solve_ivp

#: c1 as a function of time, or as a logged series (steps, values), read linearly between steps
#: and held at its end values outside them (so its integral is the trapezoid rule's).
Residual = Callable[[float], float] | tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class FlowParameters:
    """The constants of the reduced flow."""

    #: Context length N (tokens per sequence, the query included).
    N: int
    #: Copies of the query item in the context.
    n: int = 1
    #: Learning rate eta (time is in optimizer steps, so eta is the step size).
    eta: float = 1.0
    #: Weight decay lambda on beta and w.
    weight_decay: float = 0.0
    #: Whether the readout w learns (False holds it at its initial value: the closed form
    #: e^-beta0 - e^-beta = (eta n w / N) I_K).
    train_readout: bool = True
    #: Equalized contexts (T6): every label fills the same share of the context, so the other
    #: tokens hold n fewer of the query's label than of the other; w's push is e^beta - 1 in place
    #: of e^beta and beta's is (N - 1) / (N - 1 - n) times larger (``icl_mech.theory.equalized``).
    equalized: bool = False

    @property
    def drive(self) -> float:
        """eta n / N: how strongly one unit of residual moves the in-context parameters."""
        return self.eta * self.n / self.N


@dataclass(frozen=True)
class FlowPath:
    """What every flow returns: (beta, w) and the in-context logit at the times the solver stepped
    to, and when beta crossed the ICL level."""

    t: Float[np.ndarray, " time"]
    beta: Float[np.ndarray, " time"]
    w: Float[np.ndarray, " time"]
    #: The in-context logit toward the query's label, w n e^beta / (n e^beta + N - 1 - n): the
    #: copies' share of the attention (the other context labels cancel on average) times w;
    #: w n (e^beta - 1) / (n e^beta + N - 1 - n) in equalized contexts.
    in_context_logit: Float[np.ndarray, " time"]
    #: When beta crossed the jump level (NaN when it did not before the end).
    t_icl: float


@dataclass(frozen=True)
class Trajectory(FlowPath):
    """The reduced flow's path (and at the jump, if any)."""

    #: I_K(t) = int_0^t c1: the memorization integral that drove the flow to time t.
    memorized: Float[np.ndarray, " time"]


def residual_function(c1: Residual) -> Callable[[float], float]:
    """``c1`` as a function of time (a logged series is interpolated linearly)."""
    if callable(c1):
        return c1
    steps, values = (np.asarray(part, dtype=float) for part in c1)
    return lambda t: float(np.interp(t, steps, values))


def integrate_flow(
    c1: Residual,
    beta0: float,
    params: FlowParameters,
    t_end: float,
    *,
    w0: float = 0.0,
    level: float | None = None,
    rtol: float = 1e-10,
    atol: float = 1e-12,
) -> Trajectory:
    """Integrate the reduced flow from (``beta0``, ``w0``) until ``t_end`` or until beta crosses
    ``level`` (default ln N), whichever comes first, with scipy's ``solve_ivp`` (an event stops
    it at the crossing: past it beta diverges in finite time)."""
    drive, decay, residual = params.drive, params.weight_decay, residual_function(c1)
    level = math.log(params.N) if level is None else level
    others = params.N - 1 - params.n
    # equalized: the other tokens' labels lean n tokens against the query's (T6)
    lean, sharpen = (1.0, (params.N - 1) / others) if params.equalized else (0.0, 1.0)

    def rates(t: float, state: np.ndarray) -> list[float]:
        beta, w, _ = state
        push = drive * residual(t)
        readout = push * (math.exp(beta) - lean) - decay * w if params.train_readout else 0.0
        return [push * sharpen * math.exp(beta) * w - decay * beta, readout, residual(t)]

    def jump(t: float, state: np.ndarray) -> float:
        return state[0] - level

    jump.terminal, jump.direction = True, 1.0
    solution = solve_ivp(rates, (0.0, t_end), [beta0, w0, 0.0], method="DOP853", events=jump, rtol=rtol, atol=atol)
    if solution.status < 0:  # the step size fell below float precision in t: a level past where the run-away can be resolved
        raise ValueError(f"the reduced flow could not be integrated to beta = {level}: {solution.message}")
    t, (beta, w, memorized) = solution.t, solution.y
    t_icl = float(solution.t_events[0][0]) if solution.t_events[0].size else float("nan")
    share = params.n * np.exp(beta)
    return Trajectory(t, beta, w, w * (share - params.n * lean) / (share + others), t_icl, memorized)
