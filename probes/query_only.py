"""Forwards that compute only what the query's logits (or a probe of them) need.

Two ways, both through the model's own hook points:

- ``hooked_query_logits`` / ``query_activations``: the trainer's query path
  (``icl_mech.model.query_logits``), which runs earlier blocks in full and the last block at the
  query only, with hooks attached (``hook_mlp_in`` switched on when a hook is there: path
  ablations). As cheap as one evaluation; the last block's hooks hold pos 1. When a hook is one
  that path does not call (the last block's ``hook_resid_mid``, ``ln2.hook_normalized``, ...),
  the same call runs the full forward with ``query_only_hooks`` instead, so every hook fires and
  the last block's still hold the query position only.
- ``query_only_hooks``: for the full forward (``run_with_cache``), when whole attention patterns
  of the last layer are wanted. After the last block's attention each position's residual stream
  only feeds its own MLP, final LayerNorm and unembedding, so every position but the query's is
  dead work there; the hook keeps only the query from ``blocks.{last}.hook_resid_mid`` on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens import HookedTransformer
from transformer_lens.hook_points import HookPoint

from icl_mech.model import full_query_logits, query_logits
from icl_mech.sampler import Batch

FwdHook = tuple[str, Callable]

#: The last block's hooks that ``query_logits`` calls (earlier blocks run whole: all of theirs).
QUERY_PATH_LAST_BLOCK = (
    "hook_resid_pre", "attn.hook_pattern", "attn.hook_z", "hook_attn_out", "hook_mlp_in", "hook_mlp_out",
)


def on_query_path(model: HookedTransformer, name: str) -> bool:
    """Whether ``query_logits`` calls hook ``name`` (``hook_mlp_in`` once switched on)."""
    last = f"blocks.{model.cfg.n_layers - 1}."
    if name.startswith(last):
        return name.removeprefix(last) in QUERY_PATH_LAST_BLOCK
    return name.startswith("blocks.")


@contextmanager
def mlp_in_hooks(model: HookedTransformer, on: bool) -> Iterator[None]:
    """``blocks.L.hook_mlp_in`` (what each MLP reads, before its LayerNorm) fires inside the block
    (and on the query path) while ``on``; off, the model is left as it is and the forward skips it."""
    was = model.cfg.use_hook_mlp_in
    if not on or was:
        yield
        return
    model.set_use_hook_mlp_in(True)
    try:
        yield
    finally:
        model.set_use_hook_mlp_in(was)


@torch.no_grad()
def hooked_query_logits(
    model: HookedTransformer, batch: Batch, hooks: Sequence[FwdHook] = ()
) -> Float[Tensor, "batch n_logits"]:
    """The query logits with ``hooks`` attached: on the query path when it calls every hooked
    name, else through the full forward (from ``blocks.{last}.hook_resid_mid`` on at the query only)."""
    hooks = list(hooks)
    with mlp_in_hooks(model, any(name.endswith("hook_mlp_in") for name, _ in hooks)):
        if all(on_query_path(model, name) for name, _ in hooks):
            with model.hooks(fwd_hooks=hooks):
                return query_logits(model, batch.tokens)
        with model.hooks(fwd_hooks=query_only_hooks(model) + hooks):
            return full_query_logits(model, batch.tokens)


def query_activations(
    model: HookedTransformer, batch: Batch, names: Sequence[str]
) -> tuple[Float[Tensor, "batch n_logits"], dict[str, Tensor]]:
    """The query logits and the activations at hook ``names`` on the way, in one pass (the last
    block's at the query position only, except its attention's inputs and outputs on the full forward)."""
    cache: dict[str, Tensor] = {}

    def keep(activation: Tensor, hook: HookPoint) -> None:
        cache[hook.name] = activation.clone()

    logits = hooked_query_logits(model, batch, [(name, keep) for name in names])
    return logits, cache


def _keep_query(resid_mid: Float[Tensor, "batch pos d_model"], hook: HookPoint) -> Float[Tensor, "batch 1 d_model"]:
    return resid_mid[:, -1:]


def query_only_hooks(model: HookedTransformer) -> list[FwdHook]:
    """The hook that drops all but the query position after the last attention (none for an
    attention-only model, whose last block has nothing after its attention worth skipping)."""
    if model.cfg.attn_only:
        return []
    return [(f"blocks.{model.cfg.n_layers - 1}.hook_resid_mid", _keep_query)]
