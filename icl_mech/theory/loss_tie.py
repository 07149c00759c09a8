"""T7: after acquisition the ICL and IWL losses are tied by the residual both sub-circuits share.

Our derivation for the reduced model (docs/THEORY.md, T7). Once ICL is acquired the copies take
the attention (e^beta >> N), so the in-context logit is zeta = w, and what moves it is w's
gradient, the training batch's mean residual: on a training sequence (a trained item k, its copy
in the context) the margin is u_k + zeta, with u_k = l_k phi(x_k) the MLP's, so under gradient flow

    d zeta / dt = eta' < sigmoid(-(u_k + zeta)) >_k.

The two evaluation sets read the two margins apart: ICL sequences (fresh items, phi about 0) have
loss L_ICL = ln(1 + e^-zeta), IWL sequences (trained items, no copy in the context, so the
context adds nothing on average) have L_IWL = < ln(1 + e^-u_k) >. Taking every item's u at the
value that gives L_IWL (one margin for all, the mean-field step), e^-zeta = e^L_ICL - 1,
e^-u = e^L_IWL - 1, and the residual both sub-circuits feel is R = P / (1 + P) with
P = (e^L_ICL - 1)(e^L_IWL - 1). So

    ln(e^L_ICL(t) - 1) = ln(e^L_ICL(t_a) - 1) - eta' int_{t_a}^t R(L_ICL, L_IWL) ds,

a straight line of slope -eta' in the tied integral X(t) = int R ds. For small losses
ln(e^L - 1) -> ln L and R -> L_ICL L_IWL, which is the paper's form: ln L_ICL = ln L_ICL(t_a)
- eta' int L_IWL dtau in the rescaled time dtau = L_ICL dt.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from jaxtyping import Float
from scipy.integrate import solve_ivp

#: A tie fit whose R^2 reaches this counts as holding (T7's verdict).
HOLDS_R2 = 0.9


def log_icl_excess(icl_loss: Float[np.ndarray, " evals"]) -> Float[np.ndarray, " evals"]:
    """ln(e^L_ICL - 1) = -zeta, the in-context margin that gives the ICL loss (ln L_ICL for small L)."""
    return np.log(np.expm1(np.asarray(icl_loss, dtype=float)))


def shared_residual(
    icl_loss: Float[np.ndarray, " evals"], iwl_loss: Float[np.ndarray, " evals"]
) -> Float[np.ndarray, " evals"]:
    """R = P / (1 + P), P = (e^L_ICL - 1)(e^L_IWL - 1): sigmoid(-(u + zeta)), the training
    residual that drives zeta (L_ICL L_IWL for small losses)."""
    p = np.expm1(np.asarray(icl_loss, dtype=float)) * np.expm1(np.asarray(iwl_loss, dtype=float))
    return p / (1 + p)


def tie_coordinates(
    steps: Float[np.ndarray, " evals"], icl_loss: Float[np.ndarray, " evals"], iwl_loss: Float[np.ndarray, " evals"]
) -> tuple[Float[np.ndarray, " evals"], Float[np.ndarray, " evals"]]:
    """(X, Y) at each logged step from the first one (t_a): X the trapezoid integral of the shared
    residual since t_a, Y = ln(e^L_ICL - 1). T7 says Y = Y(t_a) - eta' X."""
    steps, residual = np.asarray(steps, dtype=float), shared_residual(icl_loss, iwl_loss)
    tied = np.concatenate([[0.0], np.cumsum(np.diff(steps) * (residual[1:] + residual[:-1]) / 2)])
    return tied, log_icl_excess(icl_loss)


@dataclass(frozen=True)
class TieFit:
    """Straight lines Y = intercept_r + slope X through curves r: one slope per curve, or one
    shared (pooled) slope with an intercept per curve."""

    #: The pooled slope, -eta'.
    slope: float
    #: R^2 of the pooled fit, within curves (1 - residual / variation of Y about each curve's mean).
    r2: float
    #: Each curve's own least-squares slope and R^2.
    slopes: list[float]
    r2s: list[float]
    #: Each curve's intercept under the pooled slope.
    intercepts: list[float]


def fit_tie(curves: list[tuple[np.ndarray, np.ndarray]]) -> TieFit:
    """Least squares through ``curves`` [(X, Y), ...], each with 3 or more points and X varying."""
    curves = [(np.asarray(x, dtype=float), np.asarray(y, dtype=float)) for x, y in curves]
    centred = [(x - x.mean(), y - y.mean()) for x, y in curves]
    slopes = [float(dx @ dy / (dx @ dx)) for dx, dy in centred]
    r2s = [float((dx @ dy) ** 2 / ((dx @ dx) * (dy @ dy))) if dy @ dy > 0 else 1.0 for dx, dy in centred]
    slope = float(sum(dx @ dy for dx, dy in centred) / sum(dx @ dx for dx, _ in centred))
    residual = sum(float(((dy - slope * dx) ** 2).sum()) for dx, dy in centred)
    variation = sum(float(dy @ dy) for _, dy in centred)
    intercepts = [float(y.mean() - slope * x.mean()) for x, y in curves]
    return TieFit(slope, 1 - residual / variation if variation > 0 else 1.0, slopes, r2s, intercepts)


def tied_icl_loss(
    steps: Float[np.ndarray, " evals"], iwl_loss: Float[np.ndarray, " evals"], icl_loss_at_start: float, eta: float
) -> Float[np.ndarray, " evals"]:
    """The ICL loss the relation predicts at ``steps`` from the logged IWL loss, starting from
    ``icl_loss_at_start`` at steps[0]: d zeta / dt = eta q / (q + e^zeta), q = e^L_IWL - 1 read
    linearly between steps, and L_ICL = ln(1 + e^-zeta) (integrated with ``solve_ivp``)."""
    steps = np.asarray(steps, dtype=float)
    excess = np.expm1(np.asarray(iwl_loss, dtype=float))

    def rate(t: float, zeta: np.ndarray) -> list[float]:
        q = float(np.interp(t, steps, excess))
        return [eta * q / (q + np.exp(zeta[0]))]

    zeta0 = -float(log_icl_excess(np.array([icl_loss_at_start]))[0])
    solution = solve_ivp(rate, (steps[0], steps[-1]), [zeta0], t_eval=steps, rtol=1e-8, atol=1e-10)
    return np.log1p(np.exp(-solution.y[0]))
