"""Direct logit attribution: the query logits as a sum of the components that wrote the residual stream.

logits = LN_final(resid) W_U + b_U, and resid = input + sum(heads) + sum(b_O) + sum(MLPs). The
final LayerNorm is linear once its scale is fixed, so with the scale cached on this very input
(``ActivationCache.apply_ln_to_stack``) each component's share is exact and the terms, plus the
LayerNorm's and the unembedding's biases, add up to the logits. Toward the target, each term is
read by ``icl_mech.readout.toward_target`` (linear, so the shares still add up).
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens import HookedTransformer
from transformer_lens.utilities import get_act_name

from icl_mech.readout import toward_target
from icl_mech.sampler import Batch
from probes.query_only import query_only_hooks


@torch.no_grad()
def logit_attribution(model: HookedTransformer, batch: Batch) -> dict[str, Float[Tensor, "batch n_logits"]]:
    """Each component's direct contribution to every sequence's query logits.

    Terms: ``input`` (the tokens, i.e. the residual stream entering layer 0), ``L{l}H{h}`` (each
    head), ``attn_bias{l}`` (b_O), ``mlp{l}`` (each MLP), ``bias`` (final LayerNorm bias and
    unembedding bias). Their sum is the model's logits.
    """
    names = {get_act_name("resid_pre", 0), "ln_final.hook_scale"}
    names |= {get_act_name(name, layer) for layer in range(model.cfg.n_layers) for name in ("z", "mlp_out")}
    with model.hooks(fwd_hooks=query_only_hooks(model)):
        _, cache = model.run_with_cache(batch.tokens, names_filter=lambda name: name in names)
    parts, labels = [cache[get_act_name("resid_pre", 0)][:, -1]], ["input"]
    # A head's output is its z through its rows of W_O. ``cache.stack_head_results`` forms that
    # product at every position (a [batch pos head d_head d_model] tensor) before slicing; the
    # query's alone is a tenth of the probe's time instead of nine tenths.
    for layer, block in enumerate(model.blocks):
        z = cache[get_act_name("z", layer)][:, -1]
        parts += list(torch.einsum("bhe,hed->hbd", z, block.attn.W_O))
        labels += [f"L{layer}H{head}" for head in range(model.cfg.n_heads)]
    for layer, block in enumerate(model.blocks):
        parts.append(block.attn.b_O.expand_as(parts[0]))
        labels.append(f"attn_bias{layer}")
        if not model.cfg.attn_only:
            parts.append(cache[get_act_name("mlp_out", layer)][:, -1])
            labels.append(f"mlp{layer}")
    normed = cache.apply_ln_to_stack(torch.stack(parts), layer=None, pos_slice=-1)
    directions = model.ln_final.w[:, None] * model.W_U
    terms = dict(zip(labels, normed @ directions))
    terms["bias"] = (model.ln_final.b @ model.W_U + model.b_U).expand_as(terms["input"])
    return terms


def attribution_toward_target(model: HookedTransformer, batch: Batch) -> dict[str, float]:
    """Mean contribution of each term toward the correct label (``readout.toward_target``;
    positive: pushes the right way)."""
    return {
        term: toward_target(values, batch.targets).mean().item()
        for term, values in logit_attribution(model, batch).items()
    }
