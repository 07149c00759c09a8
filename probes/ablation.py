"""Ablation: replace a circuit's activations and measure what the model can still do.

The replacement is applied with forward hooks on the model's own forward
(``model.run_with_hooks(tokens, start_at_layer=0, fwd_hooks=...)``), so it reaches the logit
through every downstream component exactly as the trained model computes it. Every forward here
keeps only the query position after the last attention (``probes.query_only``): the query's logit
is all an ablation is judged by.

Methods (what a site's activation is replaced with):
- ``zero``: zeros.
- ``mean``: its mean over the evaluated set, per position (the average sequence's activation).
- ``resample``: its value on another sequence of the set (a fixed derangement), so the
  activation keeps its typical size but carries the wrong sequence's information. Sequences do
  not interact, so this is the set's own cached activations, reordered.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens import HookedTransformer
from transformer_lens.hook_points import HookPoint

from icl_mech.errors import ConfigError
from icl_mech.sampler import Batch
from icl_mech.trainer import evaluate, logistic_loss_and_accuracy
from probes.circuits import Site
from probes.query_only import FwdHook, query_only_hooks

METHODS = ("zero", "mean", "resample")
#: The two evaluation sets whose accuracy an ablation is judged by.
EVAL_SETS = ("icl", "iwl")

def resample_order(n_seq: int, seed: int = 0) -> torch.Tensor:
    """A seeded permutation with no fixed point: sequence i takes activations from sequence order[i]."""
    shuffled = torch.randperm(n_seq, generator=torch.Generator().manual_seed(seed))
    order = torch.empty_like(shuffled)
    order[shuffled] = shuffled.roll(1)
    return order


def _patch(activation: Tensor, hook: HookPoint, replacement: Tensor, head: int | None) -> Tensor:
    if head is None:
        activation[...] = replacement
    else:
        activation[..., head, :] = replacement[..., head, :]
    return activation


def _zero(activation: Tensor, hook: HookPoint, head: int | None) -> Tensor:
    return _patch(activation, hook, torch.zeros_like(activation), head)


@torch.no_grad()
def ablation_hooks(
    model: HookedTransformer, batch: Batch, sites: Sequence[Site], method: str, seed: int = 0
) -> list[FwdHook]:
    """Forward hooks that replace every site's activation on ``batch`` by ``method``."""
    if method not in METHODS:
        raise ConfigError(f"unknown ablation method {method!r}; expected one of {METHODS}")
    names = sorted({site.hook_name for site in sites})
    if method == "zero":
        replacements = {}
    else:
        with model.hooks(fwd_hooks=query_only_hooks(model)):
            _, cache = model.run_with_cache(batch.tokens, start_at_layer=0, names_filter=names)
        if method == "mean":
            replacements = {name: cache[name].mean(dim=0, keepdim=True) for name in names}
        else:
            order = resample_order(len(batch), seed).to(batch.tokens.device)
            replacements = {name: cache[name][order] for name in names}
    hooks = []
    for site in sites:
        replacement = replacements.get(site.hook_name)
        if replacement is None:  # zero: the hook's shape is only known at run time
            hook = partial(_zero, head=site.head)
        else:
            hook = partial(_patch, replacement=replacement, head=site.head)
        hooks.append((site.hook_name, hook))
    return hooks


@torch.no_grad()
def hooked_query_logits(
    model: HookedTransformer, batch: Batch, hooks: Sequence[FwdHook] = ()
) -> Float[Tensor, " batch"]:
    """The query logit of the model's full forward with ``hooks`` attached."""
    all_hooks = [*query_only_hooks(model), *hooks]
    return model.run_with_hooks(batch.tokens, start_at_layer=0, fwd_hooks=all_hooks)[:, -1, 0]


def ablated_query_logits(
    model: HookedTransformer, batch: Batch, sites: Sequence[Site], method: str, seed: int = 0
) -> Float[Tensor, " batch"]:
    """The query logit with ``sites`` ablated by ``method`` (intact when ``sites`` is empty)."""
    hooks = ablation_hooks(model, batch, sites, method, seed) if sites else []
    return hooked_query_logits(model, batch, hooks)


def ablation_effect(
    model: HookedTransformer, eval_sets: dict[str, Batch], sites: Sequence[Site], method: str
) -> dict[str, float]:
    """ICL and IWL accuracy and loss, intact (the trainer's own ``evaluate``) and with ``sites``
    ablated.

    Keys: ``icl_acc``, ``icl_acc_ablated``, ``icl_loss``, ``icl_loss_ablated`` and the same for iwl.
    """
    row = {}
    for name in EVAL_SETS:
        batch = eval_sets[name]
        row[f"{name}_loss"], row[f"{name}_acc"] = evaluate(model, batch)
        loss, accuracy = logistic_loss_and_accuracy(ablated_query_logits(model, batch, sites, method), batch.targets)
        row[f"{name}_loss_ablated"], row[f"{name}_acc_ablated"] = loss.item(), accuracy.item()
    return row
