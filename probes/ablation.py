"""Ablation: replace a circuit's activations and measure what the model can still do.

The replacement is applied with forward hooks (``model.hooks(fwd_hooks=...)``) on the trainer's
own query path (``icl_mech.model.query_logits``), which calls the model's hook points: every hook
of the earlier blocks fires on the whole sequence, and the last block's ``attn.hook_z``,
``attn.hook_pattern`` and ``hook_mlp_out`` fire at the query position, the only one its logit
reads. So a replacement reaches the logit through every downstream component exactly as the
trained model computes it (tests pin this to ``run_with_hooks`` on the full forward), and an
ablated evaluation costs what an intact one does.

A path site (``Site.senders``, the ``memorization-path`` and ``icl-path`` circuits) replaces not
an activation but the senders' contributions to it: the MLP's input ``blocks.L.hook_mlp_in`` gets
``replacement(sender) - sender`` added for each sender, with the sender's value taken live from
the same pass. The residual stream that bypasses the MLP (``hook_resid_mid`` into
``hook_resid_post``) is untouched, so only what the MLP reads changes. These hooks are not on
the query path, so ``hooked_query_logits`` runs them through the full forward.

Methods (what a site's activation, or a path's sender, is replaced with):
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

from icl_mech.config import REDDY_EVAL_SETS
from icl_mech.errors import ConfigError
from icl_mech.sampler import Batch
from icl_mech.readout import chance, loss_and_accuracy, n_labels
from probes.circuit_names import METHODS
from probes.circuits import Site
from probes.query_only import FwdHook, hooked_query_logits, query_activations

#: The two evaluation sets whose accuracy an ablation is judged by.
EVAL_SETS = ("icl", "iwl")


def judged_sets(eval_sets: dict[str, Batch]) -> list[str]:
    """The sets of ``eval_sets`` that ablations and probes report: ICL and IWL, and Reddy's two
    more where the run has them (``TaskConfig.reddy_eval_sets``)."""
    return [name for name in (*EVAL_SETS, *REDDY_EVAL_SETS) if name in eval_sets]


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


def _record(activation: Tensor, hook: HookPoint, live: dict[str, Tensor]) -> None:
    live[hook.name] = activation


def _patch_path(
    activation: Tensor, hook: HookPoint, senders: Sequence[str], live: dict[str, Tensor],
    replacements: dict[str, Tensor],
) -> Tensor:
    """Swap each sender's contribution to ``activation`` for its replacement (zeros when it has
    none). The query path keeps only the query position from the last block's ``hook_resid_mid``
    on, so the senders' trailing positions line up with the receiver's."""
    for sender in senders:
        current = live[sender]
        delta = replacements[sender] - current if sender in replacements else -current
        activation = activation + delta[:, -activation.shape[1]:]
    return activation


def replaced_names(sites: Sequence[Site]) -> list[str]:
    """The hooks whose values the replacements are made from: each site's, or its senders'."""
    return sorted({name for site in sites for name in (site.senders or (site.hook_name,))})


def _replacement_hooks(
    cache: dict[str, Tensor], sites: Sequence[Site], method: str, n_seq: int, seed: int
) -> list[FwdHook]:
    """Hooks putting each site's ``method`` replacement, made from the set's ``cache``, in place."""
    if method == "mean":
        replacements = {name: value.mean(dim=0, keepdim=True) for name, value in cache.items()}
    elif method == "resample":
        order = resample_order(n_seq, seed)
        replacements = {name: value[order.to(value.device)] for name, value in cache.items()}
    else:  # zero: the hook's shape is only known at run time
        replacements = {}
    live: dict[str, Tensor] = {}
    senders = sorted({sender for site in sites for sender in site.senders})
    hooks: list[FwdHook] = [(sender, partial(_record, live=live)) for sender in senders]
    for site in sites:
        replacement = replacements.get(site.hook_name)
        if site.senders:
            hook = partial(_patch_path, senders=site.senders, live=live, replacements=replacements)
        elif replacement is None:
            hook = partial(_zero, head=site.head)
        else:
            hook = partial(_patch, replacement=replacement, head=site.head)
        hooks.append((site.hook_name, hook))
    return hooks


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ConfigError(f"unknown ablation method {method!r}; expected one of {METHODS}")


def ablation_hooks(
    model: HookedTransformer, batch: Batch, sites: Sequence[Site], method: str, seed: int = 0
) -> list[FwdHook]:
    """Forward hooks that replace every site's activation on ``batch`` by ``method``."""
    _check_method(method)
    names = [] if method == "zero" else replaced_names(sites)
    _, cache = query_activations(model, batch, names)
    return _replacement_hooks(cache, sites, method, len(batch), seed)


def ablated_query_logits(
    model: HookedTransformer, batch: Batch, sites: Sequence[Site], method: str, seed: int = 0
) -> Float[Tensor, "batch n_logits"]:
    """The query logits with ``sites`` ablated by ``method`` (intact when ``sites`` is empty)."""
    hooks = ablation_hooks(model, batch, sites, method, seed) if sites else []
    return hooked_query_logits(model, batch, hooks)


def ablation_effect(
    model: HookedTransformer, eval_sets: dict[str, Batch], sites: Sequence[Site], method: str
) -> dict[str, float]:
    """ICL and IWL accuracy and loss, intact and with ``sites`` ablated: two query-path passes per
    set (the intact one, which is the trainer's own evaluation, also records the replacements).

    Keys: ``icl_acc``, ``icl_acc_ablated``, ``icl_loss``, ``icl_loss_ablated`` and the same for
    iwl and for Reddy's sets where ``eval_sets`` has them (``judged_sets``); ``chance``, the accuracy of guessing (``icl_mech.readout.chance``), for plots.
    """
    _check_method(method)
    names = [] if method == "zero" else replaced_names(sites)
    row = {"chance": chance(n_labels(model))}
    for name in judged_sets(eval_sets):
        batch = eval_sets[name]
        intact, cache = query_activations(model, batch, names)
        hooks = _replacement_hooks(cache, sites, method, len(batch), 0)
        outcomes = {"": intact, "_ablated": hooked_query_logits(model, batch, hooks)}
        for suffix, logits in outcomes.items():
            loss, accuracy = loss_and_accuracy(logits, batch.targets)
            row[f"{name}_loss{suffix}"], row[f"{name}_acc{suffix}"] = loss.item(), accuracy.item()
    return row
