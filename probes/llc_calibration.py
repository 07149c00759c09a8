"""Models whose learning coefficient is known, to check an LLC estimator and its SGLD settings
(tests/test_llc.py; ``python -m benchmarks.llc_calibration`` draws docs/figures/llc_calibration.png).

Each is (model at a minimum of the population loss, loss, draw of fresh samples, known lambda):
- ``logistic(d)``: logistic regression at its teacher's weights, regular: lambda = d/2;
- ``products(c)``: y = sum_k a_k b_k x_k at a_k b_k = c_k != 0: 2k weights, but only the k
  products matter: lambda = k/2 = d/4;
- ``square()``: y = a^2 x at a = 0, where L - L* = a^4 / 2: lambda = 1/4 < d/2 = 1/2.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Known(NamedTuple):
    model: nn.Module
    loss: Callable[..., Tensor]
    draw: Callable[[int, torch.Generator], tuple[Tensor, ...]]
    #: The learning coefficient lambda.
    llc: float


def logistic(d: int, seed: int = 0) -> Known:
    teacher = torch.randn(d, generator=torch.Generator().manual_seed(seed))
    model = nn.Linear(d, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(teacher)

    def draw(n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        x = torch.randn(n, d, generator=generator)
        return x, (torch.rand(n, generator=generator) < torch.sigmoid(x @ teacher)).float()

    def loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(model(x)[:, 0], y)

    return Known(model, loss, draw, d / 2)


class _Products(nn.Module):
    def __init__(self, a: Tensor, b: Tensor):
        super().__init__()
        self.a, self.b = nn.Parameter(a.clone()), nn.Parameter(b.clone())

    def forward(self, x: Tensor) -> Tensor:
        return x @ (self.a * self.b)


class _Square(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        return self.a.square() * x[:, 0]


def _regression(model: nn.Module, teacher: Callable[[Tensor], Tensor], d_in: int, llc: float, noise: float = 0.5) -> Known:
    """Gaussian regression on fresh x ~ N(0, I), y = teacher(x) + noise; loss: squared error / 2."""

    def draw(n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        x = torch.randn(n, d_in, generator=generator)
        return x, teacher(x) + noise * torch.randn(n, generator=generator)

    def loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return 0.5 * (model(x) - y).square().mean()

    return Known(model, loss, draw, llc)


def products(c: Tensor = torch.tensor([1.0, -1.0, 1.5, 0.8])) -> Known:
    a = c.abs().sqrt()  # on the minimum set a_k b_k = c_k, where the curvature a^2 + b^2 is least
    return _regression(_Products(a, c / a), lambda x: x @ c, len(c), len(c) / 2)


def square() -> Known:
    return _regression(_Square(), lambda x: torch.zeros(len(x)), 1, 0.25)
