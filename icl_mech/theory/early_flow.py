"""beta0 checked against the flow: the reduced flow fitted to a K = infinity run's early steps.

At K = infinity nothing is memorized, c1 stays at 1/2, and from w(0) = 0 the flow
(``icl_mech.theory.flow``) has a closed form: beta - beta0 = w^2 / 2 and dw/dt = D c1 e^beta with
D = eta n / N, so

    beta(t) = beta0 + erfinv(t / t_run)^2,    t_run = sqrt(pi / 2) e^-beta0 / (D c1),

which runs away at t_run. Fitting it to the score gap the network shows at its checkpoints before
ICL arrives (``icl_mech.theory.beta0.match_sharpness``), leaving out step 0, gives a beta0 that
owes nothing to the step-0 reading: the two agree when the flow describes how the run's match
sharpness grows, and the fitted D says how the gap's units relate to the flow's (D = eta n / N
when the gap is the flow's beta).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from jaxtyping import Float
from scipy.optimize import curve_fit
from scipy.special import erfinv

from icl_mech.errors import ConfigError
from icl_mech.run import Run
from icl_mech.theory.beta0 import SEQUENCES, match_sharpness
from icl_mech.theory.predictions import C1_UNMEMORIZED

#: Checkpoints the fit needs: two parameters, and at least one degree of freedom left to judge it.
MIN_POINTS = 3


@dataclass(frozen=True)
class EarlyFlowFit:
    """The closed-form K = infinity flow fitted to a run's early match sharpness."""

    beta0: float
    #: D = eta n / N, in the gap's units.
    drive: float
    #: When the fitted flow runs away (beta -> infinity).
    t_run: float
    #: Root mean square of gap - fitted beta over the fitted checkpoints.
    rms: float
    #: How far the fitted gaps range (max - min), the scale to read ``rms`` against.
    span: float
    #: Checkpoints fitted.
    n: int


def flow_beta(
    t: Float[np.ndarray, " time"], beta0: float, t_run: float
) -> Float[np.ndarray, " time"]:
    """beta(t) = beta0 + erfinv(t / t_run)^2: the flow at c1 = 1/2 from w(0) = 0."""
    return beta0 + erfinv(np.asarray(t, dtype=float) / t_run) ** 2


def fit_early_flow(steps: Float[np.ndarray, " points"], gaps: Float[np.ndarray, " points"]) -> EarlyFlowFit:
    """Least squares of ``gaps`` on ``flow_beta`` over (beta0, t_run), t_run past the last step.
    The caller chooses the steps: after step 0 and before the jump (the flow is written for the
    approach to it, and beyond it the network's gap saturates while beta diverges)."""
    steps, gaps = np.asarray(steps, dtype=float), np.asarray(gaps, dtype=float)
    if steps.size < MIN_POINTS or (steps <= 0).any():
        raise ConfigError(f"the early-flow fit needs {MIN_POINTS} or more checkpoints after step 0, got steps {steps.tolist()}")
    last = steps.max()

    def curve(t: np.ndarray, beta0: float, log_excess: float) -> np.ndarray:
        return flow_beta(t, beta0, last * (1 + math.exp(log_excess)))

    start = [float(gaps[0]), 0.0]
    (beta0, log_excess), _ = curve_fit(curve, steps, gaps, p0=start, bounds=([-50.0, -12.0], [50.0, 12.0]), maxfev=20000)
    t_run = float(last * (1 + math.exp(log_excess)))
    residual = gaps - flow_beta(steps, beta0, t_run)
    drive = float(math.sqrt(math.pi / 2) * math.exp(-beta0) / (C1_UNMEMORIZED * t_run))
    return EarlyFlowFit(float(beta0), drive, t_run, float(np.sqrt(np.mean(residual**2))), float(np.ptp(gaps)), int(steps.size))


def early_gaps(run: Run, sequences: int = SEQUENCES) -> tuple[Float[np.ndarray, " points"], Float[np.ndarray, " points"]]:
    """What ``fit_early_flow`` reads from a K = infinity run: the score gap (``match_sharpness``, on
    the ICL set as for beta0) at each checkpoint after step 0 and before the gap first reaches
    ln N, the level where the flow's jump is read (``icl_mech.theory.flow``): (steps, gaps)."""
    if run.config.task.K is not None:
        raise ConfigError(f"{run.path}: the early-flow fit reads K = infinity runs (c1 = 1/2), not K = {run.config.task.K}")
    icl, level = run.eval_sets()["icl"][:sequences], math.log(run.config.task.N)
    steps, gaps = [], []
    for step in run.steps[1:]:
        gap = match_sharpness(run.model(step), icl)
        if gap >= level:
            break
        steps.append(step)
        gaps.append(gap)
    return np.array(steps, dtype=float), np.array(gaps)
