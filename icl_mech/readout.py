"""The readout: how the query's logits become a prediction, a loss and an accuracy, for L labels.

The number of labels L is a property of the task (``TaskConfig.L``); everything that turns the
model's output at the query into a number reads it from here: the trainer's loss and metrics,
every probe's accuracy, the logit toward the target that attribution and additivity use, and
the chance level that plots and verdicts draw.

- L = 2: one logit, label 1 when it is positive, under the logistic loss (binary cross-entropy),
  as in the paper's model. Its value is the difference of the two logits a softmax over two
  labels would have, so it is the same readout as L = 2 softmax, with half the parameters, and
  the shipped runs load and train bit for bit as before.
- L > 2: L logits, the predicted label their argmax, under softmax cross-entropy (Reddy 2024).

Logits always carry a trailing logit dimension, ``[batch n_logits]`` with n_logits 1 or L
(``icl_mech.model.query_logits``); a readout function tells the two cases apart by its size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer


def n_logits(n_labels: int) -> int:
    """Logits the model writes at the query for ``n_labels`` labels: 1 for two, else one per label."""
    return 1 if n_labels == 2 else n_labels


def n_labels(model: HookedTransformer) -> int:
    """The number of labels a model reads out (from its unembedding's width)."""
    return 2 if model.cfg.d_vocab_out == 1 else model.cfg.d_vocab_out


def chance(n_labels: int) -> float:
    """Accuracy of guessing: 1/L (the evaluation sets give every label equally often)."""
    return 1.0 / n_labels


def loss_and_accuracy(
    logits: Float[Tensor, "batch n_logits"], targets: Int[Tensor, " batch"]
) -> tuple[Float[Tensor, ""], Float[Tensor, ""]]:
    """Mean loss (logistic on one logit, softmax cross-entropy on L) and accuracy of the query
    predictions. Pure tensor ops with no host reads, so ``vmap`` batches it over an ensemble and
    a CUDA graph records it (icl_mech.ensemble, icl_mech.graphs)."""
    if logits.shape[-1] == 1:
        logit = logits[..., 0]
        loss = F.binary_cross_entropy_with_logits(logit, targets.float())
        return loss, ((logit > 0).long() == targets).float().mean()
    loss = F.cross_entropy(logits, targets)
    return loss, (logits.argmax(dim=-1) == targets).float().mean()


def per_sequence_loss(logits: Float[Tensor, "batch n_logits"], targets: Int[Tensor, " batch"]) -> Float[Tensor, " batch"]:
    """Each sequence's loss under ``loss_and_accuracy``'s rule (whose loss is their mean)."""
    if logits.shape[-1] == 1:
        return F.binary_cross_entropy_with_logits(logits[..., 0], targets.float(), reduction="none")
    return F.cross_entropy(logits, targets, reduction="none")


def probabilities(logits: Float[Tensor, "*batch n_logits"]) -> Float[Tensor, "*batch label"]:
    """The predicted distribution over the labels (two columns for the one logit of L = 2)."""
    if logits.shape[-1] == 1:
        label_1 = torch.sigmoid(logits)
        return torch.cat([1 - label_1, label_1], dim=-1)
    return torch.softmax(logits, dim=-1)


def predictions(logits: Float[Tensor, "*batch n_logits"]) -> Int[Tensor, " *batch"]:
    """The predicted label of each sequence."""
    if logits.shape[-1] == 1:
        return (logits[..., 0] > 0).long()
    return logits.argmax(dim=-1)


def toward_target(
    logits: Float[Tensor, "*terms batch n_logits"], targets: Int[Tensor, " batch"]
) -> Float[Tensor, "*terms batch"]:
    """The logit toward each sequence's target label: the target's logit minus the mean of the
    others (one logit: the logit, signed toward the target).

    Linear in the logits, so it splits over any decomposition of them (direct logit attribution,
    the additivity of ablations); positive means pushing toward the right label, and for L = 2 it
    is the one logit's distance from the decision boundary, as the two-softmax-logit difference."""
    if logits.shape[-1] == 1:
        return logits[..., 0] * (targets.to(logits.dtype) * 2 - 1)
    n = logits.shape[-1]
    target = logits.gather(-1, targets.expand(*logits.shape[:-1])[..., None])[..., 0]
    return (n * target - logits.sum(dim=-1)) / (n - 1)
