"""Reddy (2024)'s minimal model of the interleaved task, trained by itself on the network's data.

Reddy (arXiv 2312.03002) replaces the two attention layers by an induction head with two scalar
parameters, keeps his classifier on the query for in-weights learning (IWL), trains that alone on
his data and finds the full network's data dependencies again (ICL against IWL over B, K,
epsilon and alpha). The model here has that structure; its equations are our reading of his
(docs/REDDY.md, "Reddy's two models", says what was read and where ours differs):

- **match** beta: the query attends to the context's label tokens with weight
  ``softmax_j(beta * x_q . x_j)``, x_j the item before label token j (the previous-token head
  taken as formed: each label token carries its item);
- **readout** xi: the attended one-hot labels, times xi, are the ICL logits;
- **classifier**: his three-layer ReLU network of width 128 on the query item, added to the ICL
  logits: it memorizes (IWL) where the weights can.

beta = 0 is his first stage (an answer among the context's labels, not the right one). It trains
on the sampler's training stream and is evaluated on the run's own evaluation sets, the same
batches the network of that config sees. ``probes.nested_logits`` adds his third logit, the
previous-token head's, read from a network.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from icl_mech.baselines import iwl_baselines
from icl_mech.config import RunConfig
from icl_mech.readout import loss_and_accuracy, n_logits
from icl_mech.sampler import (
    TRAINING_MODES,
    Batch,
    make_eval_sets,
    sample_batch,
    stream_generator,
    stream_seed,
    training_pool,
)

#: His classifier's width (three ReLU layers of 128 units).
CLASSIFIER_WIDTH = 128


def context_of(batch: Batch, n_labels: int) -> tuple[
    Float[Tensor, "batch item"], Float[Tensor, "batch pair item"], Int[Tensor, "batch pair"]
]:
    """The query item, the context's items and each item's label, from interleaved tokens (items
    at even positions, label tokens one-hot in the last ``n_labels`` coordinates)."""
    n_item = batch.tokens.shape[-1] - n_labels
    items, query = batch.tokens[:, :-1:2, :n_item], batch.tokens[:, -1, :n_item]
    return query, items, batch.tokens[:, 1::2, n_item:].argmax(dim=-1)


def icl_logits(
    match: Tensor, readout: Tensor, similarity: Float[Tensor, "batch pair"], labels: Int[Tensor, "batch pair"],
    n_labels: int,
) -> Float[Tensor, "batch label"]:
    """The induction head's logits: the context's labels weighted by softmax(match * similarity)
    (the query's attention), summed per label, times the readout."""
    attention = torch.softmax(match * similarity, dim=-1)
    return torch.zeros(len(labels), n_labels, dtype=attention.dtype, device=attention.device).scatter_add_(
        1, labels, attention
    ) * readout


class MinimalModel(nn.Module):
    """Reddy's minimal model: an induction head of two scalars beside his classifier on the query
    (module docstring)."""

    def __init__(self, n_item: int, n_labels: int):
        super().__init__()
        self.n_labels = n_labels
        self.match = nn.Parameter(torch.zeros(()))
        self.readout = nn.Parameter(torch.zeros(()))
        width = CLASSIFIER_WIDTH
        self.classifier = nn.Sequential(
            nn.Linear(n_item, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, n_labels)
        )

    def forward(self, batch: Batch, icl_only: bool = False) -> Float[Tensor, "batch label"]:
        """Logits over the L labels at the query (``icl_only``: without the classifier)."""
        query, items, labels = context_of(batch, self.n_labels)
        similarity = torch.einsum("bpd,bd->bp", items, query)
        logits = icl_logits(self.match, self.readout, similarity, labels, self.n_labels)
        return logits if icl_only else logits + self.classifier(query)


def _readout_logits(logits: Float[Tensor, "batch label"]) -> Float[Tensor, "batch n_logits"]:
    """The L logits as ``icl_mech.readout`` takes them (their difference, for two labels)."""
    return logits[:, 1:] - logits[:, :1] if n_logits(logits.shape[-1]) == 1 else logits


def train_minimal(
    config: RunConfig, lr: float = 1e-2, eval_every: int | None = None
) -> tuple[MinimalModel, pd.DataFrame]:
    """Train the minimal model on ``config``'s training stream (its task, seed, steps and batch
    size) with Adam at ``lr``; accuracies on the run's evaluation sets every ``eval_every`` steps
    (default: the config's), the IWL sets' baselines beside them (``icl_mech.baselines``) and the
    two parameters, one row per evaluation."""
    task, train = config.task, config.train
    if task.format != "interleaved":
        raise ValueError(f"the minimal model reads interleaved sequences, got format {task.format!r}")
    pool = training_pool(task, train.seed)
    eval_sets = make_eval_sets(task, pool, train.seed)
    baselines = iwl_baselines(task, pool, eval_sets)
    data = stream_generator(train.seed, "train")
    torch.manual_seed(stream_seed(train.seed, "init"))
    model = MinimalModel(task.D, task.L)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    every = eval_every or train.eval_every
    rows = []
    for step in range(train.steps + 1):
        if step % every == 0 or step == train.steps:
            rows.append({"step": step, **_evaluate(model, eval_sets), **baselines})
        if step == train.steps:
            break
        batch = sample_batch(task, pool, train.batch_size, data, **TRAINING_MODES[task.burstiness])
        loss, _ = loss_and_accuracy(_readout_logits(model(batch)), batch.targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model, pd.DataFrame(rows)


@torch.no_grad()
def _evaluate(model: MinimalModel, eval_sets: dict[str, Batch]) -> dict[str, float]:
    row = {"match": model.match.item(), "readout": model.readout.item()}
    for name, batch in eval_sets.items():
        row[f"{name}_acc"] = loss_and_accuracy(_readout_logits(model(batch)), batch.targets)[1].item()
    return row


def minimal_grid(configs: Iterable[tuple[dict, RunConfig]], lr: float = 1e-2) -> pd.DataFrame:
    """The minimal model's last evaluation at each (grid values, config): one row per point."""
    rows = []
    for values, config in configs:
        _, metrics = train_minimal(config, lr)
        rows.append(values | metrics.iloc[-1].to_dict())
    return pd.DataFrame(rows)
