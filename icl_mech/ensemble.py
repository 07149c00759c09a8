"""Ensembles: several runs of one shape (other seeds, other K) trained in one process, as one batch.

A sweep needs thousands of small runs, and a small run spends most of a step in Python and in
matrix products too small to use the cores. ``train_ensemble`` stacks E models' parameters
(``torch.func.stack_module_state``) and computes every member's query logit in one pass
(``vmap`` over ``functional_call`` of ``query_logits``), so a step costs little more than one run's.

Everything else is the single-run trainer's (``icl_mech.trainer.train_members``): the loop, the
evaluation, the checkpoint schedule and files, early stopping, resume. Each member keeps a live
HookedTransformer whose parameters are views into the stacked tensors, so its checkpoints are that
model's own state dict, and each run directory is exactly what ``train`` would have written: it
loads with ``load_run`` and even resumes alone with ``train(..., resume=True)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor
from torch.func import functional_call, stack_module_state, vmap
from transformer_lens import HookedTransformer

from icl_mech.checkpointing import load_optimizer_state
from icl_mech.config import RunConfig
from icl_mech.devices import current, resolve_device
from icl_mech.errors import ConfigError
from icl_mech.model import query_logits
from icl_mech.readout import loss_and_accuracy
from icl_mech.run import Run, load_run
from icl_mech.sampler import Batch
from icl_mech.trainer import (
    Member,
    Stepping,
    make_optimizer,
    open_member,
    train_members,
)

#: Task fields that may differ between members: they change what is sampled, not tensor shapes.
TASK_FIELDS_FREE = (
    "K", "epsilon", "burstiness", "equalized", "eval_size", "B", "p_bursty", "zipf_alpha", "distinct_labels"
)


class _QueryLogits(torch.nn.Module):
    """``query_logits`` as a module's forward, so ``functional_call`` can swap in stacked weights."""

    def __init__(self, model: HookedTransformer):
        super().__init__()
        self.model = model

    def forward(self, tokens: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch n_logits"]:
        return query_logits(self.model, tokens)


def check_ensemble(configs: Sequence[RunConfig]) -> None:
    """Members must share the model, the training schedule (all but the seed) and the token shape."""
    if not configs:
        raise ConfigError("an ensemble needs at least one run config")
    first = configs[0].to_dict()
    for index, config in enumerate(configs[1:], start=1):
        values = config.to_dict()
        differing = [
            f"{section}.{key}"
            for section, fields in values.items()
            for key, value in fields.items()
            if value != first[section][key]
            and not (section == "train" and key == "seed")
            and not (section == "task" and key in TASK_FIELDS_FREE)
        ]
        if differing:
            raise ConfigError(
                f"ensemble member {index} differs from member 0 in {differing}; members may differ only "
                f"in train.seed and task fields {list(TASK_FIELDS_FREE)} (run the others separately)"
            )


def _stack_optimizer_states(states: Sequence[dict]) -> dict:
    """Members' optimizer ``state_dict``s as one over stacked parameters (same parameter order)."""
    stacked = {
        index: {
            key: torch.stack([s["state"][index][key] for s in states]) if _per_member(value) else value
            for key, value in values.items()
        }
        for index, values in states[0]["state"].items()
    }
    return {"state": stacked, "param_groups": states[0]["param_groups"]}


def _member_optimizer_state(optimizer: torch.optim.Optimizer, index: int) -> dict:
    """Member ``index``'s slice of the stacked optimizer's ``state_dict``: what its own optimizer
    would hold (scalars such as Adam's step count are shared)."""
    full = optimizer.state_dict()
    state = {
        param: {key: value[index] if _per_member(value) else value for key, value in values.items()}
        for param, values in full["state"].items()
    }
    return {"state": state, "param_groups": full["param_groups"]}


def _per_member(value: object) -> bool:
    return torch.is_tensor(value) and value.dim() > 0


class StackedMembers:
    """E models of one shape as one: their parameters stacked (each model's parameters become
    views into them, so the models stay live HookedTransformers) and the loss of one batch per
    member, computed in one ``vmap`` over ``functional_call`` of ``query_logits``."""

    def __init__(self, models: Sequence[HookedTransformer]):
        self.params, _ = stack_module_state(list(models))
        with torch.no_grad():
            for name, stacked in self.params.items():
                for index, model in enumerate(models):
                    model.get_parameter(name).data = stacked.data[index]
        module = _QueryLogits(models[0])
        self._named = {f"model.{name}": stacked for name, stacked in self.params.items()}
        self._logits = vmap(lambda weights, tokens: functional_call(module, weights, (tokens,)))
        self._losses = vmap(loss_and_accuracy)

    def loss(self, batches: Sequence[Batch]) -> Tensor:
        """The sum of the members' mean losses, so each member's gradient is that of its own."""
        tokens = torch.stack([batch.tokens for batch in batches])
        targets = torch.stack([batch.targets for batch in batches])
        losses, _ = self._losses(self._logits(self._named, tokens), targets)
        return losses.sum()


def _step_stacked(members: list[Member], optimizer_states: list[dict | None], capturable: bool) -> Stepping:
    """Members as one stacked model: one optimizer over the stacked parameters (holding each
    member's own state) and ``StackedMembers.loss``."""
    stacked = StackedMembers([member.model for member in members])
    optimizer = make_optimizer(stacked.params.items(), members[0].config.train, capturable)
    if all(state is not None and state["state"] for state in optimizer_states):  # else no step taken yet
        load_optimizer_state(optimizer, _stack_optimizer_states(optimizer_states), capturable)
    return Stepping(optimizer, stacked.loss, partial(_member_optimizer_state, optimizer))


def train_ensemble(
    configs: Sequence[RunConfig],
    run_dirs: Sequence[str | Path],
    *,
    device: str = "cpu",
    resume: bool = False,
    progress: bool = True,
    capture: bool = True,
    log: Sequence[str] = (),
) -> list[Run]:
    """Train ``configs[i]`` into ``run_dirs[i]`` for every i, together; returns the loaded runs.

    Same files and semantics as calling ``train`` on each (metrics, dense checkpoints, early stop,
    ``resume``): finished members are skipped, and members resumed from different steps are
    trained as separate groups. On CUDA each group's update and evaluations run as CUDA graphs
    unless ``capture`` is False. ``log`` as ``train``'s: each member is a live-log run of its own.
    """
    check_ensemble(configs)
    if len(run_dirs) != len(configs) or len({Path(d).resolve() for d in run_dirs}) != len(run_dirs):
        raise ConfigError(f"an ensemble needs one distinct run directory per config, got {list(run_dirs)}")
    torch_device = resolve_device(device)
    with current(torch_device), ExitStack() as locks:  # every member's run directory stays locked until all are trained
        opened = [open_member(c, Path(d), torch_device, resume, locks) for c, d in zip(configs, run_dirs)]
        waiting = [pair for pair in opened if pair is not None]
        for start in sorted({member.start for member, _ in waiting}):
            group = [pair for pair in waiting if pair[0].start == start]
            members, states = [member for member, _ in group], [state for _, state in group]
            train_members(members, states, _step_stacked, progress=progress, capture=capture, log=log)
    return [load_run(run_dir) for run_dir in run_dirs]
