"""Head scores of the two-layer induction circuit in the interleaved format (x_1, l_1, ..., x_q).

ICL there takes two heads: a previous-token head lets each label token l_i copy its item x_i
(the token just before it), then an induction head attends from the query x_q to the label token
whose copied item matches x_q and reads the label. Reddy (2024) finds progress measures that move
before ICL's abrupt jump: the query attending to label tokens at all (``label_attention_score``)
and the prediction being one of the context's labels (``context_label_accuracy``), his first
stage, before the previous-token and induction heads form. The scores are pure functions
``(model, batch) -> Float[Tensor, "layer head"]`` read from ``blocks.L.attn.hook_pattern``, like
those in ``probes.head_scores``, and are registered with them in ``INTERLEAVED_SCORES``.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor
from transformer_lens import HookedTransformer

from icl_mech.model import query_logits
from icl_mech.readout import predictions
from icl_mech.sampler import Batch
from probes.head_scores import attention_patterns, query_attention, query_matches


def label_tokens(batch: Batch) -> Bool[Tensor, "batch pos"]:
    """Where the label tokens are (the sampler marks them with item id -1; paired: nowhere)."""
    return batch.item_ids == -1


def query_label_positions(batch: Batch) -> Float[Tensor, "batch pos"]:
    """1.0 where the context shows the label of the query's item, 0.0 elsewhere.

    Interleaved: the label tokens right after an occurrence of the query's item. Paired: the
    tokens holding the query's item (its label is in the same token).
    """
    matches = query_matches(batch)
    if not label_tokens(batch).any():
        return matches
    shown = torch.zeros_like(matches)
    shown[:, 1:] = matches[:, :-1] * label_tokens(batch)[:, 1:]
    return shown


def induction_score(model: HookedTransformer, batch: Batch) -> Float[Tensor, "layer head"]:
    """Attention mass from the query to the label tokens that follow the query's item.

    Near 1 for an induction head; near ``induction_chance`` for uniform attention. On a paired
    batch it is the match score (the label sits in the matching token itself).
    """
    query_rows = query_attention(model, batch)
    positions = query_label_positions(batch).to(query_rows.dtype)
    return torch.einsum("lbhs,bs->lbh", query_rows, positions).mean(dim=1)


def induction_chance(batch: Batch) -> float:
    """The induction score of uniform attention over the positions the query sees."""
    return (query_label_positions(batch).sum(dim=1) / batch.tokens.shape[1]).mean().item()


def label_attention_score(model: HookedTransformer, batch: Batch) -> Float[Tensor, "layer head"]:
    """Attention mass from the query to all label tokens, whichever item they follow (Reddy's
    target-labels association): a head that reads labels before it can tell which one is right."""
    query_rows = query_attention(model, batch)
    labels = label_tokens(batch).to(query_rows.dtype)
    return torch.einsum("lbhs,bs->lbh", query_rows, labels).mean(dim=1)


def label_attention_chance(batch: Batch) -> float:
    """The label attention score of uniform attention: the share of label tokens in a sequence."""
    return (label_tokens(batch).sum(dim=1) / batch.tokens.shape[1]).float().mean().item()


@torch.no_grad()
def context_label_accuracy(model: HookedTransformer, batch: Batch) -> float:
    """Fraction of queries whose predicted label is one of the labels the context shows.

    Reddy's first stage: the network learns to answer with a label from the context before it
    can find the right one, so ICL accuracy plateaus at 1/(labels in the context) while this is
    near 1. Guessing among all L labels scores (labels in the context) / L.
    """
    n_labels = model.cfg.d_vocab
    shown = batch.tokens[..., -n_labels:].amax(dim=1) > 0  # batch label: the one-hot label tokens, pooled
    predicted = predictions(query_logits(model, batch.tokens))
    return shown.gather(1, predicted[:, None]).float().mean().item()


def label_previous_token_score(model: HookedTransformer, batch: Batch) -> Float[Tensor, "layer head"]:
    """Mean attention from each label token to the item token just before it.

    A previous-token head scores near 1. Only label tokens count: what an item token attends to
    does not feed the induction head's keys.
    """
    patterns = attention_patterns(model, batch)
    previous = patterns.diagonal(offset=-1, dim1=-2, dim2=-1)  # layer batch head pos-1
    at_labels = label_tokens(batch)[:, 1:].to(previous.dtype)
    if not at_labels.any():
        raise ValueError("label_previous_token_score needs an interleaved batch (it has no label tokens)")
    return torch.einsum("lbhp,bp->lh", previous, at_labels) / at_labels.sum()


def label_previous_token_chance(batch: Batch) -> float:
    """The label previous-token score of uniform attention (a label token at position p sees p+1)."""
    positions = torch.arange(batch.tokens.shape[1], dtype=torch.float32)
    at_labels = label_tokens(batch).float()
    return ((at_labels / (positions + 1)).sum() / at_labels.sum()).item()


#: Score name -> score function, merged into circuit detection next to ``HEAD_SCORES``.
INTERLEAVED_SCORES = {
    "induction": induction_score,
    "label_previous_token": label_previous_token_score,
    "label_attention": label_attention_score,
}
