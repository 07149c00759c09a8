"""Forwards that compute only what the query's logit (or a probe of it) needs.

Two ways, both through the model's own hook points:

- ``query_activations``: the trainer's query path (``icl_mech.model.query_logits``), which runs
  earlier blocks in full and the last block at the query only, with the activations at chosen
  hooks recorded on the way. As cheap as one evaluation; the last block's hooks hold pos 1.
- ``query_only_hooks``: for the full forward (``run_with_cache``), when whole attention patterns
  of the last layer are wanted. After the last block's attention each position's residual stream
  only feeds its own MLP, final LayerNorm and unembedding, so every position but the query's is
  dead work there; the hook keeps only the query from ``blocks.{last}.hook_resid_mid`` on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens import HookedTransformer
from transformer_lens.hook_points import HookPoint

from icl_mech.model import query_logits
from icl_mech.sampler import Batch

FwdHook = tuple[str, Callable]


@torch.no_grad()
def query_activations(
    model: HookedTransformer, batch: Batch, names: Sequence[str]
) -> tuple[Float[Tensor, " batch"], dict[str, Tensor]]:
    """The query logit and the activations at hook ``names`` on the way, in one query-path pass
    (the last block's at the query position only)."""
    cache: dict[str, Tensor] = {}

    def keep(activation: Tensor, hook: HookPoint) -> None:
        cache[hook.name] = activation.clone()

    with model.hooks(fwd_hooks=[(name, keep) for name in names]):
        logits = query_logits(model, batch.tokens)
    return logits, cache


def _keep_query(resid_mid: Float[Tensor, "batch pos d_model"], hook: HookPoint) -> Float[Tensor, "batch 1 d_model"]:
    return resid_mid[:, -1:]


def query_only_hooks(model: HookedTransformer) -> list[FwdHook]:
    """The hook that drops all but the query position after the last attention (none for an
    attention-only model, whose last block has nothing after its attention worth skipping)."""
    if model.cfg.attn_only:
        return []
    return [(f"blocks.{model.cfg.n_layers - 1}.hook_resid_mid", _keep_query)]
