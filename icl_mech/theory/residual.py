"""What drives the in-context parameters: the MLP's residual c1 over the training items, and its
integral I_K.

In the reduced model (labels l = +1/-1) the in-weights part of the logit is phi(x), the MLP on the
query token, and c1 = < sigmoid(-l_k phi(x_k)) > over the K training items: the share of the
logistic loss's gradient the MLP has not yet explained. It starts at 1/2 and falls as items are
memorized; I_K(t) = int_0^t c1 is the memorization integral the theory's threshold is set on.

Our readout (``icl_mech.readout``), mapped onto it: with two labels the model writes one logit z,
the difference of the two logits a softmax readout would have, and target t in {0, 1}, so
l = 2t - 1, phi = z, and sigmoid(-l z) = 1 - p(target). We compute 1 - p(target) from
``readout.probabilities``, which is that for L = 2 and the same quantity (the probability the
readout leaves off the right label) for L > 2, where it starts at 1 - 1/L.

phi(x_k) is read from the network itself: the query token (x_k, no label) alone, through the
trainer's query path (``icl_mech.model.query_logits``) with every block's attention output zeroed
by a hook on ``blocks.{i}.hook_attn_out``: the direct path and the MLPs, nothing read from any
context. All K items go through as one batch of one-token sequences.

The trainer logs a second reading beside it, ``iwl_residual``: 1 - p(target) of the whole
network on the run's IWL evaluation set (training items, their copy absent from the context).
In a memorization run (attention frozen) c1 reads the MLP off its distribution, as the MLP was
trained with the frozen attention's output in its input and c1 zeroes it (a run at K = 1024 with
IWL loss 0.001 keeps c1 at 0.37); the IWL-set residual is what that network has left to learn
on its items, and its integral gives the paper's nu (docs/THEORY.md, T1). ``icl-mech predict``
reads it, and ``icl-mech theory --residual iwl_residual``. The column names are in
``icl_mech.theory.residual_columns``.
"""

from __future__ import annotations

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from icl_mech import readout
from icl_mech.model import query_logits
from icl_mech.sampler import ItemPool


def item_queries(pool: ItemPool) -> Float[Tensor, "K 1 d_token"]:
    """Each training item as a query token (item, no label): a one-token sequence per item."""
    blank = torch.zeros(len(pool), pool.n_labels, device=pool.vectors.device)
    return torch.cat([pool.vectors, blank], dim=-1)[:, None]


def _zero(activation: Tensor, hook: object) -> Tensor:
    return torch.zeros_like(activation)


def attention_free_hooks(model: HookedTransformer) -> list[tuple[str, object]]:
    """Hooks that zero every block's attention output, leaving the direct path and the MLPs."""
    return [(f"blocks.{layer}.hook_attn_out", _zero) for layer in range(model.cfg.n_layers)]


@torch.no_grad()
def mlp_residual(
    model: HookedTransformer, queries: Float[Tensor, "K 1 d_token"], targets: Int[Tensor, " K"]
) -> Float[Tensor, ""]:
    """c1: the mean over the items of 1 - p(target) under the model's attention-free path on each
    item's query token (``item_queries``). Pure tensor ops with no host reads, so the trainer's
    evaluation can run it inside a CUDA graph."""
    with model.hooks(fwd_hooks=attention_free_hooks(model)):
        return target_residual(query_logits(model, queries), targets)


def target_residual(logits: Float[Tensor, "batch n_logits"], targets: Int[Tensor, " batch"]) -> Float[Tensor, ""]:
    """The mean of 1 - p(target): the probability the readout leaves off the right label (for
    L = 2, sigmoid(-l z), the logistic loss's gradient). Pure tensor ops, as ``mlp_residual``."""
    return 1 - readout.probabilities(logits).gather(-1, targets[:, None]).mean()


def memorization_integral(
    steps: Float[np.ndarray, " evals"], c1: Float[np.ndarray, " evals"]
) -> Float[np.ndarray, " evals"]:
    """I_K at each logged step: the trapezoid integral of c1 from the first step (step 0)."""
    steps, c1 = np.asarray(steps, dtype=float), np.asarray(c1, dtype=float)
    return np.concatenate([[0.0], np.cumsum(np.diff(steps) * (c1[1:] + c1[:-1]) / 2)])
