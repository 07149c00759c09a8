"""A seed's initial match sharpness beta0, read from its attention at step 0.

In the reduced model the query attends to context item j with weight softmax_j(beta s_j), where
s_j is about 1 on a copy of the query item and about 0 elsewhere, so beta is the attention-score
gap between the query's copies and the other context tokens. We measure exactly that on the
network: the last block's pre-softmax scores (``attn.hook_attn_scores``) of the query row, the
mean over the copies of the query item minus the mean over the other context tokens, averaged
over the run's ICL evaluation sequences (fresh items, the query's copies in context) and heads.

Why the score gap rather than the identity component of W_Q W_K^T on the item subspace: the
theory's threshold e^beta ~ N is about the attention weights themselves, and the score gap is what
sets them, in the units the softmax sees (LayerNorm, the labels' dimensions and ``attn_scale``
included). The identity component is one linear functional of the query-key form; the gap reads
the whole form the way the data probe it. For W_Q W_K^T = b I the gap is b times the mean
LayerNorm overlap gap of the tokens (tests/test_theory_readings.py), so the two agree up to that
fixed factor, and T3's slope of -1 is a statement in the gap's units.
"""

from __future__ import annotations

import torch
from transformer_lens import HookedTransformer

from icl_mech.errors import ConfigError
from icl_mech.run import Run
from icl_mech.sampler import Batch

#: ICL evaluation sequences beta0 is averaged over: its standard error over sequences is well
#: below its spread over seeds already at a few hundred.
SEQUENCES = 512


@torch.no_grad()
def match_sharpness(model: HookedTransformer, batch: Batch) -> float:
    """The query's mean attention score on its copies minus that on the other context tokens, in
    the last block, averaged over ``batch``'s sequences that hold both (paired format) and heads."""
    name = f"blocks.{model.cfg.n_layers - 1}.attn.hook_attn_scores"
    _, cache = model.run_with_cache(batch.tokens, names_filter=name)
    scores = cache[name][:, :, -1, :-1]  # [batch head context]: the query's row over the context
    copies = (batch.item_ids[:, :-1] == batch.item_ids[:, -1:])[:, None].to(scores.dtype)
    others = 1 - copies
    both = ((copies.sum(-1) > 0) & (others.sum(-1) > 0))[:, 0]
    if not both.any():
        raise ConfigError("beta0 needs sequences whose context holds the query item and other items")
    gap = (scores * copies).sum(-1) / copies.sum(-1).clamp(min=1) - (scores * others).sum(-1) / others.sum(-1).clamp(min=1)
    return float(gap[both].mean())


def initial_match_sharpness(run: Run, sequences: int = SEQUENCES) -> float:
    """beta0 of a run: ``match_sharpness`` of its step-0 checkpoint on its ICL evaluation set."""
    if run.config.task.format != "paired":
        raise ConfigError(f"{run.path}: beta0 is read from paired-format runs, not {run.config.task.format!r}")
    if 0 not in run.steps:
        raise ConfigError(f"{run.path} has no step-0 checkpoint to read beta0 from")
    return match_sharpness(run.model(0), run.eval_sets()["icl"][:sequences])
