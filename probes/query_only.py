"""Forwards that stop computing what the query's logit cannot see.

After the last block's attention, each position's residual stream only feeds its own MLP, final
LayerNorm and unembedding, so every position but the query's is dead work there: at the paper's
shape the last MLP on all N positions is most of a full forward. ``query_only_hooks`` keeps only
the query position from the last block's ``hook_resid_mid`` on. Everything before it (every
layer's attention patterns, ``hook_z``, earlier blocks in full) is the unchanged full forward;
hooks from there on (``blocks.{last}.hook_mlp_out``, ``ln_final``...) see one position, the last.
"""

from __future__ import annotations

from collections.abc import Callable

from jaxtyping import Float
from torch import Tensor
from transformer_lens import HookedTransformer
from transformer_lens.hook_points import HookPoint

FwdHook = tuple[str, Callable]


def _keep_query(resid_mid: Float[Tensor, "batch pos d_model"], hook: HookPoint) -> Float[Tensor, "batch 1 d_model"]:
    return resid_mid[:, -1:]


def query_only_hooks(model: HookedTransformer) -> list[FwdHook]:
    """The hook that drops all but the query position after the last attention (none for an
    attention-only model, whose last block has nothing after its attention worth skipping).
    Run a forward with it to get the query's logit at ``[:, -1]`` for a fraction of the cost."""
    if model.cfg.attn_only:
        return []
    return [(f"blocks.{model.cfg.n_layers - 1}.hook_resid_mid", _keep_query)]
