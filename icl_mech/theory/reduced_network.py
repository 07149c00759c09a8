"""The theory's reduced model as a trainable network (``ModelConfig.attention="reduced"``).

The query's logit is the MLP's in-weights part plus a two-parameter in-context part,

    z = phi(x_q) + w * sum_j p_j l_j,     p_j = softmax_j(beta * x_q . x_j),

over the N - 1 context tokens j (the query itself is not among them). phi is the project's MLP on
the query token: the full network's attention-free path (``icl_mech.model.query_readout``: the
block's MLP, the final LayerNorm and the unembedding), built by the same initialization, so at one
seed the reduced and the full network start from the same phi and train on the same batches.

Our readout mapped onto the theory's labels: the model writes one logit z, positive for label 1,
and a context token carries its label one-hot in its last two dimensions, so l_j = (label 1
entry) - (label 0 entry) = 2 t_j - 1, +1 for label 1 and -1 for label 0, and z's sign is the
prediction as for the full network. s_j = x_q . x_j is about 1 for a copy of the query item
(items are drawn with squared norm about 1) and about 0 for the others.

beta and w replace the block's attention (``blocks.0.attn.beta``, ``blocks.0.attn.w`` in the
state dict), so the trainer's attention weight decay and ``frozen=attn`` act on them, as the
theory's lambda does. Both start at 0 (the flow's w(0) = 0, beta0 = 0). The pattern p_j passes
through ``blocks.0.attn.hook_pattern`` ([batch, head=1, query_pos=1, key_pos=N-1]); the full
forward (``model(tokens)``) and the probes that read other attention hooks do not apply.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn
from transformer_lens import HookedTransformerConfig
from transformer_lens.hook_points import HookPoint

from icl_mech.model import IclTransformer, query_readout


class MatchReadout(nn.Module):
    """The in-context sub-circuit of the reduced model: match sharpness ``beta`` and readout ``w``."""

    def __init__(self) -> None:
        super().__init__()
        self.beta = nn.Parameter(torch.zeros(()))
        self.w = nn.Parameter(torch.zeros(()))
        self.hook_pattern = HookPoint()

    def forward(
        self, context: Float[Tensor, "batch ctx d_token"], query: Float[Tensor, "batch d_token"], n_items: int
    ) -> Float[Tensor, " batch"]:
        """w * sum_j p_j l_j: the label read from the context, weighted by each item's match."""
        items, labels = context[..., :n_items], context[..., -1] - context[..., -2]
        match = torch.einsum("bjd,bd->bj", items, query[..., :n_items])
        pattern = self.hook_pattern((self.beta * match).softmax(dim=-1)[:, None, None])[:, 0, 0]
        return self.w * (pattern * labels).sum(-1)


class ReducedNetwork(IclTransformer):
    """The project's one-block network with its attention replaced by ``MatchReadout``.

    Built from the full network's ``HookedTransformerConfig`` (``icl_mech.model.build_model`` does
    so for ``attention="reduced"``); ``query_logits`` is what the trainer, the evaluation, c1 and
    the ensembles call, as for the full network.
    """

    reduced = True

    def __init__(self, cfg: HookedTransformerConfig, n_items: int):
        super().__init__(cfg, "paired")
        self.n_items = n_items
        self.blocks[0].attn = MatchReadout().to(cfg.device)
        self.setup()  # the hook registry, rebuilt around the new attention module

    def query_logits(self, tokens: Float[Tensor, "batch pos d_token"]) -> Float[Tensor, "batch 1"]:
        """z = phi(x_q) + w * sum_j p_j l_j; a one-token sequence (no context) gives phi alone."""
        resid = self.embed_tokens(tokens)
        context, query = resid[:, :-1], resid[:, -1]
        phi = query_readout(self, query)
        if context.shape[1] == 0:
            return phi
        return phi + self.blocks[0].attn(context, query, self.n_items)[:, None]
