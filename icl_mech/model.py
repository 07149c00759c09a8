"""The transformer as a TransformerLens ``HookedTransformer``, and its query logit.

Tokens are continuous vectors (item + one-hot label), so they enter the residual stream directly
with ``model(tokens, start_at_layer=0)``; ``run_with_cache(tokens, start_at_layer=0)`` then
exposes every hook TransformerLens users know (``blocks.0.attn.hook_pattern``,
``blocks.0.hook_mlp_out``, ...). The differences from the authors' module are listed in
docs/MODEL.md.
"""

from __future__ import annotations

import warnings

import einops
import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens import HookedTransformer, HookedTransformerConfig

from icl_mech.config import RunConfig
from icl_mech.sampler import stream_seed

#: The paper's attention has no biases: these HookedTransformer parameters stay zero and frozen.
ATTENTION_BIASES = ("b_Q", "b_K", "b_V", "b_O")


def hooked_config(config: RunConfig, device: str | torch.device = "cpu") -> HookedTransformerConfig:
    """The HookedTransformerConfig of a run: width D + L, one logit, attention scale from config."""
    d_model = config.task.d_token
    return HookedTransformerConfig(
        n_layers=config.model.n_layers,
        n_heads=config.model.n_heads,
        d_model=d_model,
        d_head=d_model // config.model.n_heads,
        d_mlp=None if config.model.attn_only else config.model.d_mlp,
        attn_only=config.model.attn_only,
        n_ctx=config.task.N,
        d_vocab=1,  # the token embedding is never used: tokens enter at start_at_layer=0
        d_vocab_out=1,  # one logit: the query's label under the logistic loss
        act_fn="relu",
        normalization_type="LN",
        use_attn_scale=True,
        attn_scale=config.model.attn_scale,
        default_prepend_bos=False,
        device=str(device),
    )


def build_model(config: RunConfig, device: str | torch.device = "cpu") -> HookedTransformer:
    """A freshly initialised model for ``config`` (init seeded by the run's seed), attention
    biases zeroed and frozen. Global RNG state is left as it was."""
    # Seeding through HookedTransformerConfig.seed would reseed Python's and numpy's global
    # RNGs too; a forked torch RNG seeds the initialisation and touches nothing else.
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        torch.manual_seed(stream_seed(config.train.seed, "init"))
        # HookedTransformer 3.9 warns on every construction that 4.0 removes it; we pin <4.
        warnings.filterwarnings(
            "ignore", message="HookedTransformer is deprecated", category=DeprecationWarning
        )
        model = HookedTransformer(hooked_config(config, device))
    for block in model.blocks:
        for name in ATTENTION_BIASES:
            bias = getattr(block.attn, name)
            bias.data.zero_()
            bias.requires_grad_(False)
    return model


def full_query_logits(
    model: HookedTransformer, tokens: Float[Tensor, "batch pos d_model"]
) -> Float[Tensor, " batch"]:
    """The query's logit through the model's own full forward (every position)."""
    return model(tokens, start_at_layer=0)[:, -1, 0]


def query_logits(
    model: HookedTransformer, tokens: Float[Tensor, "batch pos d_model"]
) -> Float[Tensor, " batch"]:
    """The query's logit, computing only what reaches it: the last block's query row.

    Same parameters and same math as ``full_query_logits`` (tests pin logits and gradients to
    1e-5), but the last block's attention is one row, written as keys-times-query
    (scores = LN(x_i) . (W_K q)) and values-after-mixing (W_V applied to the attention-weighted
    mean of LN(x_i)), and its MLP runs on the query alone. Earlier blocks run in full.
    """
    resid = tokens
    for block in model.blocks[:-1]:
        resid = block(resid)
    block = model.blocks[-1]
    attn = block.attn
    normed = block.ln1(resid)
    query_in = normed[:, -1]
    q = einops.einsum(query_in, attn.W_Q, "b d, h d e -> b h e") + attn.b_Q
    key_dir = einops.einsum(attn.W_K, q, "h d e, b h e -> b h d")
    scores = einops.einsum(normed, key_dir, "b n d, b h d -> b h n")
    scores = (scores + (q * attn.b_K).sum(-1)[..., None]) / attn.attn_scale
    mixed = einops.einsum(scores.softmax(dim=-1), normed, "b h n, b n d -> b h d")
    z = einops.einsum(mixed, attn.W_V, "b h d, h d e -> b h e") + attn.b_V
    resid_q = (resid[:, -1] + einops.einsum(z, attn.W_O, "b h e, h e d -> b d") + attn.b_O)[:, None]
    if not model.cfg.attn_only:
        resid_q = resid_q + block.mlp(block.ln2(resid_q))
    return model.unembed(model.ln_final(resid_q))[:, 0, 0]
