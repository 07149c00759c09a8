"""The LLC estimator (probes/llc.py) against models whose learning coefficient is known, its
warnings, its weight restrictions, and `icl-mech llc` on the shipped reference runs.

Known answers, for the population loss (every SGLD batch is fresh), with n_beta large enough that
the localization hardly matters:
- logistic regression at its optimum is regular: lambda = d/2;
- y = sum_k a_k b_k x_k at a_k b_k = c_k != 0 has d = 2k weights but only the k products matter
  (each product's hyperbola is flat): lambda = k/2 = d/4;
- y = a^2 x at a = 0 is singular (L - L* = a^4/2): lambda = 1/4 < d/2 = 1/2.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from probes.llc import LLCEstimate, LLCWarning, SGLDSettings, estimate_llc, restricted_parameters

@pytest.fixture(autouse=True)
def one_thread():
    """These models are a few weights: a second thread only waits on the first."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


#: A regular model: the estimate is within 15% of d/2.
REGULAR_TOLERANCE = 0.15
#: The degenerate models: within 15% of their known learning coefficient.
DEGENERATE_TOLERANCE = 0.15


def _logistic(d: int, seed: int = 0) -> tuple[nn.Linear, callable, callable]:
    """A logistic regression with d weights at the population optimum (its teacher's weights)."""
    teacher = torch.randn(d, generator=torch.Generator().manual_seed(seed))
    model = nn.Linear(d, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(teacher)

    def draw(n: int, generator: torch.Generator):
        x = torch.randn(n, d, generator=generator)
        y = (torch.rand(n, generator=generator) < torch.sigmoid(x @ teacher)).float()
        return x, y

    def loss(model: nn.Module, x, y):
        return F.binary_cross_entropy_with_logits(model(x)[:, 0], y)

    return model, loss, draw


class _Products(nn.Module):
    """y = sum_k a_k b_k x_k: each product is what the output sees."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor):
        super().__init__()
        self.a, self.b = nn.Parameter(a.clone()), nn.Parameter(b.clone())

    def forward(self, x):
        return x @ (self.a * self.b)


def _regression(model: nn.Module, teacher, noise: float, d_in: int):
    """Gaussian regression on fresh x ~ N(0, I), y = teacher(x) + noise; squared loss / 2."""

    def draw(n: int, generator: torch.Generator):
        x = torch.randn(n, d_in, generator=generator)
        return x, teacher(x) + noise * torch.randn(n, generator=generator)

    def loss(model: nn.Module, x, y):
        return 0.5 * (model(x) - y).square().mean()

    return model, loss, draw


#: Fast, accurate sampling of small models: n_beta large against the localization, a step size
#: small against n_beta times the curvature, large batches (little minibatch noise).
CALIBRATION = SGLDSettings(lr=3e-4, n_beta=1000.0, localization=1.0, chains=8, draws=800, burn_in=200, batch_size=500)


def test_regular_model_estimate_is_within_15_percent_of_half_its_dimension():
    d = 8
    estimate = estimate_llc(*_logistic(d), CALIBRATION)
    assert estimate.n_params == d and not estimate.warnings
    assert estimate.mean == pytest.approx(d / 2, rel=REGULAR_TOLERANCE)


def test_redundant_products_have_half_the_coefficient_of_their_dimension():
    k = 4
    c = torch.tensor([1.0, -1.0, 1.5, 0.8])
    a = c.abs().sqrt()  # on the minimum set a_k b_k = c_k, where the curvature a^2 + b^2 is least
    model, loss, draw = _regression(_Products(a, c / a), lambda x: x @ c, 0.5, k)
    settings = SGLDSettings(lr=1e-4, n_beta=500.0, localization=1.0, chains=8, draws=600, burn_in=100, batch_size=500)
    estimate = estimate_llc(model, loss, draw, settings)
    assert estimate.n_params == 2 * k
    assert estimate.mean == pytest.approx(k / 2, rel=DEGENERATE_TOLERANCE)
    assert estimate.mean < 0.75 * estimate.n_params / 2


class _Square(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return self.a.square() * x[:, 0]


def test_singular_quartic_model_estimate_is_a_quarter():
    model, loss, draw = _regression(_Square(), lambda x: torch.zeros(len(x)), 0.5, 1)
    settings = SGLDSettings(lr=1e-3, n_beta=1000.0, localization=0.1, chains=8, draws=1500, burn_in=200, batch_size=500)
    estimate = estimate_llc(model, loss, draw, settings)
    assert estimate.mean == pytest.approx(0.25, rel=DEGENERATE_TOLERANCE)
    assert estimate.mean < 0.5 * 0.75


def dataclasses_replace(settings: SGLDSettings, **changes) -> SGLDSettings:
    return SGLDSettings.from_dict(settings.to_dict() | changes)


def test_restricting_a_regular_model_to_some_weights_counts_only_those():
    d = 8
    model, loss, draw = _logistic(d)
    split = nn.Module()
    split.head, split.tail = nn.Parameter(model.weight.data[0, :3].clone()), nn.Parameter(model.weight.data[0, 3:].clone())

    def split_loss(module, x, y):
        return loss(lambda inputs: (inputs @ torch.cat([module.head, module.tail]))[:, None], x, y)

    before = {name: weight.clone() for name, weight in split.named_parameters()}
    estimate = estimate_llc(split, split_loss, draw, dataclasses_replace(CALIBRATION, burn_in=500), ["head"])
    assert estimate.n_params == 3
    assert estimate.mean == pytest.approx(3 / 2, rel=REGULAR_TOLERANCE)  # the 5 others stayed put
    assert all(torch.equal(before[name], weight) for name, weight in split.named_parameters())


def test_a_step_size_too_large_warns_that_chains_diverged():
    settings = dataclasses_replace(CALIBRATION, lr=1.0, draws=40, burn_in=10, batch_size=100)
    with pytest.warns(LLCWarning, match="diverged"):
        estimate = estimate_llc(*_logistic(8), settings)
    assert any("diverged" in message for message in estimate.warnings)


def test_weights_away_from_a_minimum_warn_of_a_negative_estimate():
    model, loss, draw = _logistic(8)
    with torch.no_grad():
        model.weight.zero_()  # far from the teacher: SGLD goes downhill
    with pytest.warns(LLCWarning, match="negative"):
        estimate = estimate_llc(model, loss, draw, dataclasses_replace(CALIBRATION, draws=300, burn_in=50))
    assert estimate.mean < 0


def test_a_trace_still_rising_warns_that_it_has_not_flattened():
    # A step size 30 times smaller: the chains need ~10^3 steps to spread, and get 400.
    settings = dataclasses_replace(CALIBRATION, lr=1e-5, draws=400, burn_in=0)
    with pytest.warns(LLCWarning, match="not flattened"):
        estimate_llc(*_logistic(8), settings)


def test_a_converged_estimate_has_no_warnings_and_settings_round_trip():
    estimate = estimate_llc(*_logistic(4), dataclasses_replace(CALIBRATION, draws=500, burn_in=500))
    assert isinstance(estimate, LLCEstimate) and estimate.warnings == ()
    assert SGLDSettings.from_dict(estimate.settings.to_dict()) == estimate.settings
    assert estimate.excess.shape == (8, 1000) and math.isfinite(estimate.std)
