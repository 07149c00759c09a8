"""T6: equalized contexts weaken the drive on the in-context parameters, so K* moves up.

In the reduced model the in-context part of the logit is w sum_j p_j l_j, and what drives w is
the label signal it reads, l_q sum_j p_j l_j, averaged over contexts. With p_j = e^(beta s_j) / Z
(n copies of the query item, s = 1; N - 1 - n other tokens, s = 0):

- plain contexts: the other tokens' labels are independent of the query's, so on average
  l_q sum_j p_j l_j = n e^beta / Z, about n e^beta / N;
- equalized contexts: each label fills (N - 1) / L of the context, the query's copies included,
  so with L = 2 the other tokens hold exactly n fewer of the query's label than of the other:
  l_q sum_j p_j l_j = n (e^beta - 1) / Z. At uniform attention (beta = 0) the context says
  nothing about the query's label; in a plain context the copies alone tilt it.

beta's drive is w times the signal's derivative in beta: n e^beta (N - 1 - n) / Z^2 plain against
n e^beta (N - 1) / Z^2 equalized, gamma = (N - 1) / (N - 1 - n) times larger. In the integrated
time s = (eta n / N) I_K the equalized flow is dw/ds = e^beta - 1, dbeta/ds = gamma w e^beta; from
w(0) = 0, gamma w^2 / 2 = g(beta) = beta - beta0 + e^-beta - e^-beta0, and beta runs away at

    s*_eq = (2 gamma)^(-1/2) int_beta0^inf e^-beta g(beta)^(-1/2) dbeta

against the plain flow's s* = sqrt(pi / 2) e^-beta0. For beta0 <= 0 the equalized flow never runs
away (w starts downward and beta follows it down), so the ratio is infinite.

Theta, the memorization integral ICL needs, is s* N / (eta n), so their ratio is the factor by
which equalized contexts raise Theta, and with K* ~ Theta^(1/nu) (T1, T2) K* moves by that ratio
to the power 1/nu.
"""

from __future__ import annotations

import math

from scipy.integrate import quad


def threshold_ratio(beta0: float, N: int, n: int = 1) -> float:
    """Theta_equalized / Theta_plain for a seed with initial match sharpness ``beta0`` at context
    length ``N`` with ``n`` copies of the query item: the ratio of the two flows' run-away points
    (module docstring). Infinite for beta0 <= 0."""
    if beta0 <= 0:
        return math.inf
    gamma = (N - 1) / (N - 1 - n)
    lead = math.exp(-beta0)

    def integrand(u: float) -> float:
        # beta = beta0 + u^2 takes the 1/sqrt singularity at beta0 out: g = u^2 + e^-beta0 (e^-u^2 - 1)
        g = u * u + lead * math.expm1(-u * u)
        if u == 0:  # g ~ u^2 (1 - e^-beta0) there
            return 2 * lead / math.sqrt(1 - lead)
        return 2 * u * lead * math.exp(-u * u) / math.sqrt(g)

    integral, _ = quad(integrand, 0, math.inf, epsabs=0, epsrel=1e-12, limit=200)
    return integral / (math.sqrt(gamma * math.pi) * lead)


def kstar_factor(theta_ratio: float, nu: float) -> float:
    """How many times K* moves when Theta moves by ``theta_ratio``: K* ~ Theta^(1/nu)."""
    return theta_ratio ** (1 / nu)
