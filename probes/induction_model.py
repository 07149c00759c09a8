"""A two-parameter model of the induction head, fitted to a network checkpoint by checkpoint.

Reddy (2024) reduces the interleaved task's induction circuit to a model with two parameters. The
one fitted here has the same shape: the query x_q attends to each context item x_j with weight
``softmax_j(beta * x_q . x_j)`` (the previous-token head copies x_j into its label token, and the
induction head matches the query against it; beta is how sharply), and the label read out is
``softmax_l(gamma * sum_j a_j [l_j = l])`` (the copied labels, weighted; gamma is how strongly).
beta = 0 is Reddy's first stage, attention spread evenly over the context's labels: the answer is
one of them, not the right one. A large beta finds the matching item: ICL.

The two parameters are fitted to the network's own predicted distribution on a set of sequences
(cross-entropy of the model against it, by L-BFGS), so their course over checkpoints summarises
what the circuit does: beta rising is the induction head forming. This is our parametrisation of
his idea, fitted to a trained network, not a transcription of his equations.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from icl_mech.model import query_logits
from icl_mech.readout import n_labels, probabilities
from icl_mech.sampler import Batch


@dataclass(frozen=True)
class InductionFit:
    """The fitted parameters and how well the fitted model stands in for the network."""

    beta: float
    gamma: float
    #: The fitted model's mean probability of the right label (not its accuracy: at beta near 0
    #: the context's labels tie, and the argmax of a tie says nothing).
    model_target_prob: float
    #: The network's mean probability of the right label, which the model's should follow.
    network_target_prob: float


def context_of(batch: Batch, n_labels: int) -> tuple[
    Float[Tensor, "batch pair"], Int[Tensor, "batch pair"]
]:
    """The query's dot product with each context item, and each item's label, from interleaved
    tokens (items at even positions, label tokens one-hot in the last ``n_labels`` coordinates)."""
    n_item = batch.tokens.shape[-1] - n_labels
    items, query = batch.tokens[:, :-1:2, :n_item], batch.tokens[:, -1, :n_item]
    labels = batch.tokens[:, 1::2, n_item:].argmax(dim=-1)
    return torch.einsum("bpd,bd->bp", items, query), labels


def model_log_probs(
    beta: Tensor, gamma: Tensor, similarity: Float[Tensor, "batch pair"], labels: Int[Tensor, "batch pair"], n_labels: int
) -> Float[Tensor, "batch label"]:
    """Log-probabilities of the two-parameter model over the labels."""
    attention = torch.softmax(beta * similarity, dim=-1)
    copied = torch.zeros(len(labels), n_labels, dtype=attention.dtype).scatter_add_(1, labels, attention)
    return torch.log_softmax(gamma * copied, dim=-1)


def fit_induction_model(
    target: Float[Tensor, "batch label"], similarity: Float[Tensor, "batch pair"], labels: Int[Tensor, "batch pair"],
    iterations: int = 100,
) -> tuple[float, float]:
    """(beta, gamma) minimising the cross-entropy of the model against ``target`` probabilities."""
    parameters = torch.tensor([0.0, 1.0], requires_grad=True)
    optimizer = torch.optim.LBFGS([parameters], max_iter=iterations, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        log_probs = model_log_probs(parameters[0], parameters[1], similarity, labels, target.shape[-1])
        loss = -(target * log_probs).sum(dim=-1).mean()
        loss.backward()
        return loss

    optimizer.step(closure)
    beta, gamma = parameters.detach().tolist()
    return beta, gamma


@torch.no_grad()
def _network_probabilities(model: HookedTransformer, batch: Batch) -> Float[Tensor, "batch label"]:
    return probabilities(query_logits(model, batch.tokens))


def induction_fit(model: HookedTransformer, batch: Batch) -> InductionFit:
    """The two-parameter model fitted to ``model``'s predictions on the interleaved ``batch``."""
    count = n_labels(model)
    network = _network_probabilities(model, batch).cpu()
    similarity, labels = (tensor.cpu() for tensor in context_of(batch, count))
    beta, gamma = fit_induction_model(network, similarity, labels)
    fitted = model_log_probs(torch.tensor(beta), torch.tensor(gamma), similarity, labels, count).exp()
    targets = batch.targets.cpu()[:, None]
    return InductionFit(
        beta=beta, gamma=gamma,
        model_target_prob=fitted.gather(1, targets).mean().item(),
        network_target_prob=network.gather(1, targets).mean().item(),
    )
