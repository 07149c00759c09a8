"""Attention-pattern scores per head: how much each head looks where a known mechanism would look.

A score is a pure function ``(model, batch) -> Float[Tensor, "layer head"]`` read from the
``blocks.L.attn.hook_pattern`` hooks. ``HEAD_SCORES`` names them; circuit detection
(``probes.circuits.detect_heads``) picks the heads whose score is high, so a new mechanism (a new
score) becomes a new detectable circuit without touching the ablation code.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens import HookedTransformer
from transformer_lens.utilities import get_act_name

from icl_mech.sampler import Batch
from probes.query_only import query_activations, query_only_hooks

HeadScore = Callable[[HookedTransformer, Batch], Float[Tensor, "layer head"]]


@torch.no_grad()
def attention_patterns(model: HookedTransformer, batch: Batch) -> Float[Tensor, "layer batch head dest src"]:
    """Every layer's attention pattern on ``batch`` (one forward, caching only the patterns, and
    skipping the last MLP's context positions, which no pattern depends on)."""
    names = [get_act_name("pattern", layer) for layer in range(model.cfg.n_layers)]
    with model.hooks(fwd_hooks=query_only_hooks(model)):
        _, cache = model.run_with_cache(batch.tokens, names_filter=names)
    return torch.stack([cache[name] for name in names])


def query_matches(batch: Batch) -> Float[Tensor, "batch pos"]:
    """1.0 at the context positions holding the query's item, 0.0 elsewhere (and at the query)."""
    matches = (batch.item_ids == batch.item_ids[:, -1:]).float()
    matches[:, -1] = 0.0
    return matches


@torch.no_grad()
def query_attention(model: HookedTransformer, batch: Batch) -> Float[Tensor, "layer batch head src"]:
    """Every layer's attention row from the query, from one query-path pass (as cheap as an
    evaluation: the last layer's other rows are never computed)."""
    names = [get_act_name("pattern", layer) for layer in range(model.cfg.n_layers)]
    _, cache = query_activations(model, batch, names)
    return torch.stack([cache[name][..., -1, :] for name in names])


def match_score(model: HookedTransformer, batch: Batch) -> Float[Tensor, "layer head"]:
    """Attention mass from the query to the context tokens holding the query's item.

    The one-layer ICL mechanism (PAPER.md): the head finds the query's item in the context and
    copies its label, so this is near 1 for the ICL head and near ``match_chance`` for a head
    that attends uniformly. It is the detection basis of the "induction" circuit.
    """
    query_rows = query_attention(model, batch)
    mass = torch.einsum("lbhs,bs->lbh", query_rows, query_matches(batch).to(query_rows.dtype))
    return mass.mean(dim=1)


def match_chance(batch: Batch) -> float:
    """The match score of uniform attention: matching positions over all positions the query sees."""
    return (query_matches(batch).sum(dim=1) / batch.tokens.shape[1]).mean().item()


def previous_token_score(model: HookedTransformer, batch: Batch) -> Float[Tensor, "layer head"]:
    """Mean attention mass from each position to the one before it (positions 1 onwards).

    The first half of a two-layer induction circuit (a previous-token head) scores near 1.
    """
    patterns = attention_patterns(model, batch)
    return patterns.diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=(1, 3))


#: Score name -> score function; detection of a circuit's heads picks by one of these.
HEAD_SCORES: dict[str, HeadScore] = {"match": match_score, "previous_token": previous_token_score}
