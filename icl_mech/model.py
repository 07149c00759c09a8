"""The transformer as a TransformerLens ``HookedTransformer``, and its query logits.

Tokens are continuous vectors (item + one-hot label), not vocabulary ids. ``IclTransformer`` is a
``HookedTransformer`` whose input embedding takes them, so ``model(tokens)``,
``run_with_cache(tokens)``, ``run_with_hooks(tokens, ...)`` and every TransformerLens tool that
calls ``model(tokens)`` (``transformer_lens.patching``) work unchanged, with the input in
``hook_embed`` (and ``hook_pos_embed`` where the format has positions) so that
``cache.decompose_resid`` and ``cache.accumulated_resid`` include it. The differences from the
authors' module are listed in docs/MODEL.md.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor
from transformer_lens import HookedTransformer, HookedTransformerConfig

from icl_mech import interleaved, readout
from icl_mech.config import RunConfig
from icl_mech.sampler import stream_seed

#: The paper's attention has no biases: these HookedTransformer parameters stay zero and frozen.
ATTENTION_BIASES = ("b_Q", "b_K", "b_V", "b_O")


class IclTransformer(HookedTransformer):
    """A ``HookedTransformer`` that takes continuous tokens ``[batch pos d_model]`` as its input.

    ``token_format`` is the task's format (``TaskConfig.format``): "paired" tokens are the residual stream itself
    (through ``hook_embed``, an identity; no positions, as in the paper), "interleaved" tokens are
    embedded by ``icl_mech.interleaved.embed`` (label embeddings ``W_E`` and positions ``W_pos``).
    The embedding is a method, not a hook, so ``copy.deepcopy`` gives an independent model, and
    ``start_at_layer=0`` still takes the residual stream entering block 0 (for paired models,
    the tokens themselves). The state dict is a plain HookedTransformer's.
    """

    #: Whether the attention is the theory's reduced one (``icl_mech.theory.reduced_network``),
    #: which brings its own query path; ``query_logits`` hands such a model to it.
    reduced = False

    def __init__(self, cfg: HookedTransformerConfig, token_format: str = "paired"):
        super().__init__(cfg)
        self.token_format = token_format

    def embed_tokens(self, tokens: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        """The residual stream entering block 0, through ``hook_embed`` (and ``hook_pos_embed``)."""
        if self.token_format == "interleaved":
            return interleaved.embed(self, tokens)
        return self.hook_embed(tokens)

    def input_to_embed(
        self,
        input: Float[Tensor, "batch pos d_model"],
        prepend_bos: object = None,
        padding_side: object = None,
        attention_mask: Tensor | None = None,
        past_kv_cache: object = None,
    ) -> tuple[Float[Tensor, "batch pos d_model"], None, None, None]:
        """``HookedTransformer.forward``'s first step: (residual, token ids, shortformer
        positions, attention mask). Sequences have no padding (``prepend_bos`` and
        ``padding_side`` are text options, ignored), no KV cache and no token ids, so no
        ``return_type="loss"``: the loss is the query's (``icl_mech.readout``)."""
        if not torch.is_floating_point(input) or input.ndim != 3:
            raise TypeError(
                f"an IclTransformer takes continuous tokens [batch pos d_model], got a "
                f"{input.dtype} tensor of shape {tuple(input.shape)}"
            )
        if attention_mask is not None or past_kv_cache is not None:
            raise ValueError("an IclTransformer takes no attention_mask or past_kv_cache: sequences are unpadded")
        # A copy, so that hooks editing the stream in place (TransformerLens's patching does)
        # leave the caller's tokens alone; the training step (query_logits) needs none.
        return self.embed_tokens(input.to(self.cfg.device, copy=True)), None, None, None


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
        n_ctx=config.task.seq_len,
        # Paired tokens are the residual stream and never use W_E; interleaved label tokens are
        # embedded through it (icl_mech.interleaved).
        d_vocab=config.task.L if config.task.format == "interleaved" else 1,
        d_vocab_out=readout.n_logits(config.task.L),
        act_fn="relu",
        normalization_type="LN",
        use_attn_scale=True,
        attn_scale=config.model.attn_scale,
        default_prepend_bos=False,
        device=str(device),
    )


def build_model(config: RunConfig, device: str | torch.device = "cpu") -> IclTransformer:
    """A freshly initialised model for ``config`` (init seeded by the run's seed), attention
    biases zeroed and frozen. Global RNG state is left as it was."""
    # Seeding through HookedTransformerConfig.seed would reseed Python's and numpy's global
    # RNGs too, and torch.manual_seed every CUDA device's default generator. HookedTransformer
    # initialises its weights on the CPU before moving them to ``device``, so the forked CPU
    # generator alone seeds the initialisation and nothing else is touched.
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        torch.default_generator.manual_seed(stream_seed(config.train.seed, "init"))
        # HookedTransformer 3.9 warns on every construction that 4.0 removes it; we pin <4.
        warnings.filterwarnings(
            "ignore", message="HookedTransformer is deprecated", category=DeprecationWarning
        )
        if config.model.attention == "reduced":  # the same draws, so phi starts as the full network's
            from icl_mech.theory.reduced_network import ReducedNetwork

            return ReducedNetwork(hooked_config(config, device), config.task.D)
        model = IclTransformer(hooked_config(config, device), config.task.format)
    for block in model.blocks:
        for name in ATTENTION_BIASES:
            bias = getattr(block.attn, name)
            bias.data.zero_()
            bias.requires_grad_(False)
    return model


def full_query_logits(
    model: IclTransformer, tokens: Float[Tensor, "batch pos d_model"]
) -> Float[Tensor, "batch n_logits"]:
    """The query's logits through the model's own full forward (every position)."""
    return model(tokens)[:, -1]


def query_logits(
    model: IclTransformer, tokens: Float[Tensor, "batch pos d_model"]
) -> Float[Tensor, "batch n_logits"]:
    """The query's logits (``icl_mech.readout``: one for L = 2, else L), computing only what
    reaches them: the last block's query row.

    Same parameters and same math as ``full_query_logits`` (tests pin logits and gradients to
    1e-5), rearranged so that a training step costs a few small matrix products:

    - LayerNorm's standardisation ``(x_i - m_i) r_i`` (mean m_i, inverse std r_i) has no
      parameters, so it is never materialised over the context: scores and mixing are taken on
      the raw x_i and corrected with the per-position statistics, x_i . k -> r_i (x_i . k - m_i
      sum(k)) and sum_i p_i LN(x_i) -> sum_i (p_i r_i) x_i - sum_i p_i r_i m_i. The statistics are
      two cheap reductions; the (batch, pos, d) tensor is only read, never rewritten, and in a
      one-block model autograd never goes through it.
    - The query's attention row is keys-times-query: scores_i = std(x_i) . (w_ln * W_K q). The
      terms that are the same at every position (LN shift . W_K q, and q . b_K) cancel in the
      softmax and are dropped.
    - Values are applied after mixing: W_V (w_ln * sum_i p_i std(x_i) + b_ln), since sum_i p_i = 1.
    - The MLP, final LayerNorm and unembedding run on the query alone.

    The input enters through ``model.embed_tokens`` (``hook_embed``, and ``hook_pos_embed`` in
    the interleaved format), and earlier blocks run in full through the HookedTransformer's own
    modules, so all their hooks fire as in the full forward. In the last block, ``hook_resid_pre`` (whole) and
    ``attn.hook_pattern``, ``attn.hook_z``, ``hook_attn_out``, ``hook_mlp_in`` (when the model's
    ``use_hook_mlp_in`` is on) and ``hook_mlp_out`` (at the query position only: query_pos 1 /
    pos 1) are called, so hooks there act as in the full forward, e.g. ablations
    attached with ``model.hooks(fwd_hooks=...)`` (probes.ablation). The function is pure
    in the model's parameters, so ``torch.func.functional_call`` + ``vmap`` batch it over an
    ensemble (icl_mech.ensemble).
    """
    if model.reduced:
        return model.query_logits(tokens)
    resid = model.embed_tokens(tokens)
    for block in model.blocks[:-1]:
        resid = block(resid)
    block, eps = model.blocks[-1], model.cfg.eps
    attn, ln1 = block.attn, block.ln1
    resid = block.hook_resid_pre(resid)
    d_model = resid.shape[-1]
    mean = resid.sum(-1) / d_model
    inv_std = torch.rsqrt(torch.linalg.vector_norm(resid, dim=-1).square() / d_model - mean.square() + eps)
    query = F.layer_norm(resid[:, -1], (d_model,), ln1.w, ln1.b, eps)
    q = torch.einsum("bd,hde->bhe", query, attn.W_Q) + attn.b_Q
    key_dir = torch.einsum("hde,bhe->bhd", attn.W_K, q) * ln1.w
    raw_scores = key_dir @ resid.transpose(1, 2) - mean[:, None] * key_dir.sum(-1, keepdim=True)
    pattern = attn.hook_pattern((raw_scores * inv_std[:, None] / attn.attn_scale).softmax(dim=-1)[:, :, None])
    weights = pattern[:, :, 0] * inv_std[:, None]
    standard_mix = weights @ resid - (weights * mean[:, None]).sum(-1, keepdim=True)
    mixed = standard_mix * ln1.w + ln1.b
    z = attn.hook_z((torch.einsum("bhd,hde->bhe", mixed, attn.W_V) + attn.b_V)[:, None])[:, 0]
    attn_out = block.hook_attn_out((torch.einsum("bhe,hed->bd", z, attn.W_O) + attn.b_O)[:, None])[:, 0]
    return query_readout(model, resid[:, -1] + attn_out)


def query_readout(
    model: IclTransformer, resid_q: Float[Tensor, "batch d_model"]
) -> Float[Tensor, "batch n_logits"]:
    """The query's logits from its residual after the last block's attention: that block's MLP
    (``hook_mlp_in`` and ``hook_mlp_out`` called at the query), the final LayerNorm and the
    unembedding, on the query alone."""
    block, eps = model.blocks[-1], model.cfg.eps
    if not model.cfg.attn_only:
        mlp, ln2 = block.mlp, block.ln2
        # What the MLP reads; a hook there (path ablations) changes the MLP's input only, as in
        # the full forward, so it gets a copy.
        mlp_in = block.hook_mlp_in(resid_q[:, None].clone())[:, 0] if model.cfg.use_hook_mlp_in else resid_q
        hidden = F.relu(F.layer_norm(mlp_in, mlp_in.shape[-1:], ln2.w, ln2.b, eps) @ mlp.W_in + mlp.b_in)
        resid_q = resid_q + block.hook_mlp_out((hidden @ mlp.W_out + mlp.b_out)[:, None])[:, 0]
    final = F.layer_norm(resid_q, resid_q.shape[-1:], model.ln_final.w, model.ln_final.b, eps)
    return final @ model.unembed.W_U + model.unembed.b_U
