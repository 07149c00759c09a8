"""Reddy (2024)'s three nested logits, set beside a network checkpoint by checkpoint.

His account of the abrupt jump is a loss over three logits nested inside one another: the
readout of the copied label (xi) acts on the induction head's attention (its match, beta),
whose signal is the item a label token carries from the previous-token head (alpha). The same
structure as ``icl_mech.reddy_model``'s nested model, without its classifier: the ICL logits are
``xi * sum_j softmax_j(beta * a * x_q . x_j) [l_j = l]``.

At a checkpoint, ``a`` is read from the network, not fitted: each sequence's mean layer-0
attention from a label token to the item before it, from the layer-0 head with the most such
attention (the previous-token head once it forms). beta and xi are then fitted to the network's
own predicted distribution on the ICL set (cross-entropy, L-BFGS). The fit is judged per
checkpoint (the mean probability of the right label, model against network) and per sequence
(the correlation across sequences of the two probabilities of the right label): a model that
matches the mean can still miss which sequences the network gets right.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from icl_mech.model import query_logits
from icl_mech.readout import n_labels, probabilities
from icl_mech.reddy_model import context_of, icl_logits
from icl_mech.sampler import Batch
from probes.head_scores import attention_patterns
from probes.interleaved_scores import label_tokens


@dataclass(frozen=True)
class NestedLogitsFit:
    """The three logits at one checkpoint and how well they stand in for the network."""

    #: Mean share of its item a label token carries (the network's layer-0 attention to it).
    carried: float
    #: beta, fitted.
    match: float
    #: xi, fitted.
    readout: float
    #: The model's mean probability of the right label (not its accuracy: at beta near 0 the
    #: context's labels tie, and the argmax of a tie says nothing).
    model_target_prob: float
    #: The network's mean probability of the right label, which the model's should follow.
    network_target_prob: float
    #: Pearson correlation across the set's sequences of the two probabilities of the right label
    #: (nan when either is constant).
    sequence_corr: float


@torch.no_grad()
def carried_items(model: HookedTransformer, batch: Batch) -> Float[Tensor, " batch"]:
    """Each sequence's mean layer-0 attention from a label token to the item just before it, in
    the layer-0 head with the most of it."""
    previous = attention_patterns(model, batch)[0].diagonal(offset=-1, dim1=-2, dim2=-1)  # batch head pos-1
    at_labels = label_tokens(batch)[:, 1:].to(previous.dtype)
    per_head = torch.einsum("bhp,bp->bh", previous, at_labels) / at_labels.sum(dim=1, keepdim=True)
    return per_head[:, per_head.mean(dim=0).argmax()]


def fit_nested_logits(
    target: Float[Tensor, "batch label"], similarity: Float[Tensor, "batch pair"], labels: Int[Tensor, "batch pair"],
    iterations: int = 100,
) -> tuple[float, float]:
    """(match, readout) minimising the cross-entropy of the ICL logits against ``target``, where
    ``similarity`` already carries each sequence's share a (a * x_q . x_j)."""
    parameters = torch.tensor([0.0, 1.0], requires_grad=True)
    optimizer = torch.optim.LBFGS([parameters], max_iter=iterations, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        logits = icl_logits(parameters[0], parameters[1], similarity, labels, target.shape[-1])
        loss = -(target * torch.log_softmax(logits, dim=-1)).sum(dim=-1).mean()
        loss.backward()
        return loss

    optimizer.step(closure)
    match, readout = parameters.detach().tolist()
    return match, readout


def _correlation(a: Float[Tensor, " batch"], b: Float[Tensor, " batch"]) -> float:
    return torch.corrcoef(torch.stack([a, b]))[0, 1].item()


def nested_logits_fit(model: HookedTransformer, batch: Batch) -> NestedLogitsFit:
    """The three nested logits at ``model`` on the interleaved ``batch`` (module docstring)."""
    count = n_labels(model)
    with torch.no_grad():
        network = probabilities(query_logits(model, batch.tokens)).cpu()
    carried = carried_items(model, batch).cpu()
    query, items, labels = (tensor.cpu() for tensor in context_of(batch, count))
    similarity = torch.einsum("bpd,bd->bp", items, query) * carried[:, None]
    match, readout = fit_nested_logits(network, similarity, labels)
    fitted = torch.softmax(icl_logits(torch.tensor(match), torch.tensor(readout), similarity, labels, count), dim=-1)
    targets = batch.targets.cpu()[:, None]
    model_right, network_right = fitted.gather(1, targets)[:, 0], network.gather(1, targets)[:, 0]
    return NestedLogitsFit(
        carried=carried.mean().item(), match=match, readout=readout,
        model_target_prob=model_right.mean().item(), network_target_prob=network_right.mean().item(),
        sequence_corr=_correlation(model_right, network_right),
    )
