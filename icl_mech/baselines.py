"""What an in-weights accuracy has to beat: chance, the label prior, and copying from the context.

An IWL accuracy means memorization only above what needs no memory of any class. Three such
levels, each an accuracy on the same evaluation set:

- ``chance``: guessing, 1/L.
- ``label_prior``: always answering the label that carries the most class probability (under a
  Zipf law at alpha = 2 one label holds 0.6 of it), the best answer that knows no class.
- ``copy_if_present``: the share of the set's sequences whose query class is in the context,
  which copying that class's label answers (0 on ``iwl``, by construction; near 1 - (1 - p)^(N-1)
  on ``iwl_iid``). ``copy_else_prior`` copies where it can and answers the prior label elsewhere:
  the two together, what a network that memorized nothing could score.

Computed from the task, its training pool and the set, with tensor ops (no loop over sequences).
"""

from __future__ import annotations

import torch

from icl_mech.config import TaskConfig
from icl_mech.readout import chance
from icl_mech.sampler import Batch, ItemPool, class_weights

#: The evaluation sets that measure in-weights learning, whose accuracies the baselines go beside.
IWL_SETS = ("iwl", "iwl_iid")
#: The baselines, in the order they are shown.
BASELINES = ("chance", "label_prior", "copy_if_present", "copy_else_prior")


def prior_label(task: TaskConfig, pool: ItemPool | None) -> int:
    """The label with the most class probability (the first such, when the labels tie)."""
    if pool is None:
        return 0
    weights = class_weights(task, pool)
    weights = torch.ones(len(pool), device=pool.labels.device) if weights is None else weights
    masses = torch.zeros(task.L, device=weights.device).index_add_(0, pool.labels, weights)
    return int(masses.argmax())


def query_in_context(batch: Batch) -> torch.Tensor:
    """Whether each sequence's query class is among its context items ([batch] bool); label
    tokens (item id -1) never match."""
    return (batch.item_ids[:, :-1] == batch.item_ids[:, -1:]).any(dim=1)


def set_baselines(task: TaskConfig, pool: ItemPool | None, batch: Batch) -> dict[str, float]:
    """``BASELINES`` on one evaluation set, as accuracies."""
    prior = batch.targets == prior_label(task, pool)
    present = query_in_context(batch)
    return {
        "chance": chance(task.L),
        "label_prior": prior.float().mean().item(),
        "copy_if_present": present.float().mean().item(),
        "copy_else_prior": (present | prior).float().mean().item(),
    }


def iwl_baselines(task: TaskConfig, pool: ItemPool | None, eval_sets: dict[str, Batch]) -> dict[str, float]:
    """``{set}_{baseline}`` for every IWL set in ``eval_sets`` (chance once, as ``chance``)."""
    row = {"chance": chance(task.L)}
    for name in IWL_SETS:
        if name in eval_sets:
            values = set_baselines(task, pool, eval_sets[name])
            row |= {f"{name}_{key}": value for key, value in values.items() if key != "chance"}
    return row
