"""The interleaved format's input embedding: label tokens through learned embeddings, items as
continuous vectors, plus learned positions.

A batch's raw tokens hold an item token as (x, zeros) and a label token as (zeros, one-hot label)
(icl_mech.sampler). ``icl_mech.model.IclTransformer`` embeds them with ``embed`` when its format
is interleaved, as its own first step (``model(tokens)``, ``run_with_cache(tokens)``,
``query_logits``), so ``hook_embed`` / ``hook_pos_embed`` / ``blocks.0.hook_resid_pre`` carry what
TransformerLens users expect there. The embedding's parameters are the HookedTransformer's own
``W_E`` (one row per label) and ``W_pos`` (one row per position), so checkpoints hold them with no
extra keys.
"""

from __future__ import annotations

import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor
from transformer_lens import HookedTransformer


def embed(
    model: HookedTransformer, tokens: Float[Tensor, "batch pos d_token"]
) -> Float[Tensor, "batch pos d_model"]:
    """Residual stream of raw interleaved tokens: the item vector in its own D coordinates (an
    item is continuous, there is no vocabulary to look it up in), plus ``W_E[label]`` on label
    tokens, plus ``W_pos`` so a layer-0 head can find the previous token."""
    n_labels = model.cfg.d_vocab
    n_item = tokens.shape[-1] - n_labels
    items = F.pad(tokens[..., :n_item], (0, model.cfg.d_model - n_item))
    labels = tokens[..., n_item:] @ model.W_E  # one-hot rows pick the label embeddings; zero on items
    positions = model.W_pos[: tokens.shape[1]].expand(tokens.shape[0], -1, -1)
    return model.hook_embed(items + labels) + model.hook_pos_embed(positions)
