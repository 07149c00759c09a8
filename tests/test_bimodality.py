"""The dip test on samples whose modality is known by construction."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from icl_mech import ConfigError
from icl_mech.analysis.bimodality import dip_test


def _piled_against_one(rng: np.random.Generator) -> np.ndarray:
    """64 accuracies with one mode at the ceiling of 1 and a long tail below it."""
    return 1 - rng.beta(0.5, 5, 64) / 2


def test_two_separated_modes_of_64_seeds_are_called_bimodal():
    rng = np.random.default_rng(0)
    # Like 64 seeds at K*: half end in memorization (ICL ~0.55), half in ICL (~0.97).
    values = np.r_[rng.normal(0.55, 0.03, 32), rng.normal(0.97, 0.02, 32)]
    result = dip_test(values)
    assert result.n == 64 and result.bimodal(alpha=0.01)


@pytest.mark.parametrize("sample", ["normal", "skewed"])
def test_unimodal_samples_are_not_called_bimodal(sample):
    rng = np.random.default_rng(1)
    values = rng.normal(0.75, 0.05, 64) if sample == "normal" else _piled_against_one(rng)
    assert not dip_test(values).bimodal()


def test_skewed_unimodal_data_fool_sarles_coefficient_but_not_the_dip():
    # Why the dip test (icl_mech/analysis/bimodality.py): accuracies piled against a ceiling.
    values = _piled_against_one(np.random.default_rng(1))
    n = values.size
    skew, kurt = stats.skew(values, bias=False), stats.kurtosis(values, bias=False)
    sarle = (skew**2 + 1) / (kurt + 3 * (n - 1) ** 2 / ((n - 2) * (n - 3)))
    assert sarle > 5 / 9
    assert dip_test(values).p_value > 0.2


def test_the_dip_test_needs_four_values():
    with pytest.raises(ConfigError, match="4 or more values"):
        dip_test(np.array([0.5, 0.9, np.nan, 0.7]))
