"""The fast query path (``query_logits``) is the HookedTransformer's own forward, rearranged:
same logit and same gradients as the full forward, for every model shape we train."""

import pytest
import torch

from icl_mech import build_model, preset
from icl_mech.model import ATTENTION_BIASES, full_query_logits, query_logits
from icl_mech.sampler import TRAINING_MODES, sample_batch, stream_generator, training_pool

SHAPES = {
    "one_layer": {},
    "two_layers": {"n_layers": 2},
    "multi_head": {"n_heads": 5},
    "two_layers_multi_head": {"n_layers": 2, "n_heads": 5},
    "attn_only": {"attn_only": True, "n_layers": 2},
    "scaled_attention": {"attn_scale": 8.0},
    "interleaved_one_layer": {"format": "interleaved"},
    "interleaved_two_layers": {"format": "interleaved", "n_layers": 2},
}


def _model_and_tokens(shape: dict, dtype: torch.dtype, perturb: bool):
    config = preset("cpu").override(K=64, N=13, d_mlp=32, **shape)
    model = build_model(config).to(dtype)
    generator = torch.Generator().manual_seed(0)
    # Perturbing sharpens attention and switches the (normally zero) attention biases on: the
    # algebra must hold for any weights, not only the ones training reaches.
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if perturb and (name.endswith(ATTENTION_BIASES) or ".attn.W_" in name or name in ("W_E", "W_pos")):
                parameter.add_(torch.randn(parameter.shape, generator=generator, dtype=dtype))
    pool = training_pool(config.task, 0)
    batch = sample_batch(config.task, pool, 16, stream_generator(0, "train"), **TRAINING_MODES["bursty"])
    return model, batch.tokens.to(dtype), batch.targets


def _logits_and_gradients(model, logits_fn, tokens, targets):
    for parameter in model.parameters():
        parameter.requires_grad_(True)
        parameter.grad = None
    logits = logits_fn(model, tokens)
    torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], targets.to(logits.dtype)).backward()
    grads = {n: torch.zeros_like(p) if p.grad is None else p.grad for n, p in model.named_parameters()}
    return logits.detach(), grads


def _assert_same_logits_and_gradients(model, tokens, targets, tolerance):
    fast_logits, fast_grads = _logits_and_gradients(model, query_logits, tokens, targets)
    full_logits, full_grads = _logits_and_gradients(model, full_query_logits, tokens, targets)
    assert torch.allclose(fast_logits, full_logits, rtol=tolerance, atol=tolerance * full_logits.abs().max())
    scale = max(g.norm() for g in full_grads.values())
    for name, full in full_grads.items():
        if name.endswith("b_K"):  # q . b_K is the same at every key, so the softmax cancels it
            assert max(fast_grads[name].norm(), full.norm()) <= tolerance * scale
            continue
        error = (fast_grads[name] - full).norm()
        assert error <= tolerance * full.norm(), f"{name}: {error} vs {full.norm()}"


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_fast_path_is_the_full_forwards_math_for_any_weights(shape):
    """In float64, with sharp attention and nonzero biases, agreement is to 1e-5 relative."""
    _assert_same_logits_and_gradients(*_model_and_tokens(shape, torch.float64, perturb=True), 1e-5)


@pytest.mark.parametrize("shape", [SHAPES["one_layer"], SHAPES["two_layers"]], ids=["one_layer", "two_layers"])
def test_fast_path_matches_the_full_forward_in_float32_at_init(shape):
    """What training runs: float32, initial weights; only rounding differs."""
    _assert_same_logits_and_gradients(*_model_and_tokens(shape, torch.float32, perturb=False), 1e-5)


def _scale_head_zero(activation, hook):
    activation[..., 0, :] *= 0.5
    return activation


def _zero(activation, hook):
    return torch.zeros_like(activation)


@pytest.mark.parametrize("shape", [SHAPES["one_layer"], SHAPES["two_layers_multi_head"]], ids=["one_layer", "two_layers"])
def test_hooks_on_the_fast_path_act_as_on_the_full_forward(shape):
    """The last block's hook_z and hook_mlp_out fire on the query path (at the query), so an
    intervention there changes the query logit exactly as ``run_with_hooks`` does."""
    model, tokens, _ = _model_and_tokens(shape, torch.float64, perturb=True)
    last = model.cfg.n_layers - 1
    interventions = {
        "head": [(f"blocks.{last}.attn.hook_z", _scale_head_zero)],
        "mlp": [(f"blocks.{last}.hook_mlp_out", _zero)],
        "earlier head": [("blocks.0.attn.hook_z", _scale_head_zero)],
    }
    for name, hooks in interventions.items():
        with model.hooks(fwd_hooks=hooks):
            fast = query_logits(model, tokens)
        full = model.run_with_hooks(tokens, fwd_hooks=hooks)[:, -1]
        assert torch.allclose(fast, full, rtol=1e-9, atol=1e-9), name
        assert not torch.allclose(full, query_logits(model, tokens)), f"{name}: the hook must matter"
