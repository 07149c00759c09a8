"""Claim 4's second half: do seeds near K* split into two outcomes? A test of unimodality.

Hartigan's dip statistic is the largest distance between the empirical distribution of the
values (one per seed: final ICL accuracy) and the closest unimodal distribution; its p-value is
taken against the uniform distribution, the unimodal null that gives the largest dips (so the
test is conservative for every other unimodal shape). It is used rather than Sarle's bimodality
coefficient (skewness^2 + 1) / kurtosis because final accuracies pile up against their ceiling
of 1, and skewed unimodal data push that coefficient past its 5/9 cut-off
(tests/test_bimodality.py: a long-tailed sample with its mode at 1 scores 0.69 > 5/9 there,
while the dip test keeps it unimodal).
"""

from __future__ import annotations

from dataclasses import dataclass

import diptest
import numpy as np

from icl_mech.errors import ConfigError

#: Fewest values the dip test's tabulated p-values cover.
MIN_VALUES = 4


@dataclass(frozen=True)
class DipTest:
    """Hartigan's dip test of one sample."""

    #: The dip: sup distance to the closest unimodal distribution function (0 to 0.25).
    dip: float
    #: P(dip >= this | uniform null, same n), interpolated in the tabulated null distribution.
    p_value: float
    n: int

    def bimodal(self, alpha: float = 0.05) -> bool:
        """Unimodality rejected at level ``alpha``."""
        return self.p_value < alpha


def dip_test(values: np.ndarray) -> DipTest:
    """The dip test of ``values`` (NaNs dropped)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if values.size < MIN_VALUES:
        raise ConfigError(f"the dip test needs {MIN_VALUES} or more values, got {values.size}")
    dip, p_value = diptest.diptest(values)
    return DipTest(float(dip), float(p_value), int(values.size))
