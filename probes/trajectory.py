"""Several runs' development as paths in one space: the query logits of every checkpoint on one
fixed probe set, projected on their joint principal components (Carroll et al. 2025 do this for
in-context linear regression, where the generalizing and the memorizing solution lie on one axis).

A checkpoint is the vector of its query logits on the probe set (every run's ICL sequences, whose
items are new to every run, and its IWL sequences, the runs taken in the order of their paths, so
that the result does not depend on the order they are given in); every checkpoint of every run is
a row of one matrix, centred and decomposed (SVD). Each row's own ICL and IWL accuracy (on its run's
evaluation sets) says which component follows the turn from memorizing to ICL: the one most
correlated with the difference ICL - IWL accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from icl_mech.errors import ConfigError
from icl_mech.model import query_logits
from icl_mech.run import Run
from icl_mech.sampler import Batch
from icl_mech.trainer import evaluate

#: Principal components kept.
COMPONENTS = 5
#: Fewer checkpoints than this (over all runs) have no direction to name: one is a point, two a
#: line that is its own first component.
MIN_CHECKPOINTS = 3


@dataclass(frozen=True)
class Trajectories:
    """The runs' checkpoints in their joint principal components."""

    #: One row per checkpoint: run, step, icl_acc, iwl_acc, icl_minus_iwl, pc1, pc2, ...
    points: pd.DataFrame
    #: The fraction of the logits' variance (over all checkpoints) each component holds.
    explained: list[float]
    #: Each component's correlation with icl_minus_iwl over all checkpoints.
    correlation: list[float]

    @property
    def separating(self) -> int:
        """The component (1-based) that follows the ICL - IWL accuracy difference most closely."""
        return 1 + max(range(len(self.correlation)), key=lambda i: abs(self.correlation[i]))

    def summary(self) -> dict:
        return {
            "runs": list(dict.fromkeys(self.points.run)),
            "explained_variance": self.explained,
            "correlation_with_icl_minus_iwl": self.correlation,
            "separating_component": self.separating,
            "points": self.points.to_dict("records"),
        }

    def describe(self) -> str:
        lines = [f"{len(self.points)} checkpoints of {self.points.run.nunique()} runs"]
        for index, (share, r) in enumerate(zip(self.explained, self.correlation), start=1):
            lines.append(f"PC{index}: {share:.1%} of the variance, correlation with ICL - IWL accuracy {r:+.2f}")
        lines.append(f"PC{self.separating} separates the ICL from the memorizing solution most closely")
        return "\n".join(lines)


def probe_set(runs: Sequence[Run], size: int, device: str | torch.device = "cpu") -> Batch:
    """``size`` sequences of each run's ICL set, then ``size`` of its IWL set, run after run."""
    parts = [sets[kind][:size] for sets in (run.eval_sets(device) for run in runs) for kind in ("icl", "iwl")]
    return Batch(*(torch.cat([getattr(part, name) for part in parts]) for name in Batch.__dataclass_fields__))


def _check_runs(runs: Sequence[Run], probe_size: int) -> None:
    if not runs:
        raise ConfigError("trajectory needs at least one run")
    if probe_size < 1:
        raise ConfigError(f"probe size must be at least 1 sequence of each kind, got {probe_size}")
    first = runs[0].config.task
    for run in runs:
        task = run.config.task
        if (task.format, task.N, task.D, task.L) != (first.format, first.N, first.D, first.L):
            raise ConfigError(
                f"{run.path} has other sequences (format, N, D, L) than {runs[0].path}: its logits on "
                "one probe set cannot be compared"
            )
        if not run.steps:
            raise ConfigError(f"{run.path} has no checkpoints yet")
    if (checkpoints := sum(len(run.steps) for run in runs)) < MIN_CHECKPOINTS:
        raise ConfigError(
            f"trajectory needs at least {MIN_CHECKPOINTS} checkpoints in all to find a direction among them, "
            f"got {checkpoints}: give more runs or runs with more checkpoints"
        )


@torch.no_grad()
def trajectory_pca(
    runs: Sequence[Run], probe_size: int = 500, device: str | torch.device = "cpu", progress: bool = True
) -> Trajectories:
    """Every checkpoint of ``runs`` on one probe set (``probe_set`` of every run), in the
    logits' joint principal components. The runs are taken in the order of their paths, so the
    numbers do not depend on the order given; ``points`` lists them in the order given."""
    _check_runs(runs, probe_size)
    ordered = sorted(runs, key=lambda run: str(run.path.resolve()))
    probe = probe_set(ordered, probe_size, device)
    logits, rows = [], []
    for run in ordered:
        own = run.eval_sets(device)
        for step, model in tqdm(run.models(device=device), total=len(run.steps), desc=run.path.name, disable=not progress):
            logits.append(query_logits(model, probe.tokens).flatten())  # every sequence's every logit
            icl, iwl = evaluate(model, own["icl"])[1], evaluate(model, own["iwl"])[1]
            rows.append({"run": run.path.name, "step": step, "icl_acc": icl, "iwl_acc": iwl, "icl_minus_iwl": icl - iwl})
    scores, explained = principal_components(torch.stack(logits))
    points = pd.DataFrame(rows)
    for index in range(scores.shape[1]):
        points[f"pc{index + 1}"] = scores[:, index].cpu().numpy()
    difference = torch.tensor(points.icl_minus_iwl.to_numpy())
    correlation = [_correlation(scores[:, index].cpu().double(), difference) for index in range(scores.shape[1])]
    given = [runs.index(run) for run in ordered for _ in run.steps]
    points = points.iloc[sorted(range(len(points)), key=given.__getitem__)].reset_index(drop=True)
    return Trajectories(points, explained, correlation)


def principal_components(
    rows: Float[Tensor, "point feature"], n_components: int = COMPONENTS
) -> tuple[Float[Tensor, "point component"], list[float]]:
    """The rows' coordinates on their principal components (centred SVD) and each component's
    share of the variance."""
    centred = rows.double() - rows.double().mean(dim=0)
    left, singular, _ = torch.linalg.svd(centred, full_matrices=False)
    keep = min(n_components, len(singular))
    total = singular.square().sum()
    shares = (singular.square() / total if total > 0 else torch.zeros_like(singular))[:keep]
    return (left * singular)[:, :keep], shares.tolist()


def _correlation(x: Tensor, y: Tensor) -> float:
    x, y = x - x.mean(), y - y.mean()
    norm = x.norm() * y.norm()
    return (x @ y / norm).item() if norm > 0 else 0.0
