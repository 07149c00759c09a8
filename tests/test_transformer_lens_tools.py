"""TransformerLens's own tools work on our checkpoints unchanged: tokens go in with ``model(tokens)``,
through ``hook_embed``, and ``transformer_lens.patching`` and ``ActivationCache`` decomposition
run on shipped runs as on any HookedTransformer."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from transformer_lens import patching
from transformer_lens.utilities import get_act_name

from icl_mech import build_model, preset
from icl_mech.model import IclTransformer, full_query_logits, query_logits
from icl_mech.run import load_run
from icl_mech.sampler import Batch, make_eval_sets, training_pool
from probes.attribution import logit_attribution

REFERENCE = Path(__file__).resolve().parents[1] / "checkpoints" / "reference"
#: A few hundred sequences keep every patching forward cheap.
N_SEQUENCES = 200


def flip_context_labels(batch: Batch, n_labels: int) -> torch.Tensor:
    """The corrupted input: every context token's one-hot label swapped, items and query unchanged."""
    corrupted = batch.tokens.clone()
    corrupted[:, :-1, -n_labels:] = corrupted[:, :-1, -n_labels:].flip(-1)
    return corrupted


@pytest.fixture(scope="module")
def icl_checkpoint() -> tuple[IclTransformer, Batch]:
    run = load_run(REFERENCE / "icl")
    return run.model(), run.eval_sets()["icl"][:N_SEQUENCES]


@pytest.mark.parametrize("name", ["icl", "near", "memorize", "transient"])
def test_shipped_runs_load_as_icl_transformers_with_unchanged_state_dict_keys(name):
    run = load_run(REFERENCE / name)
    model = run.model()
    assert isinstance(model, IclTransformer)
    assert set(model.state_dict()) == set(run.state_dict(run.steps[-1]))


def test_tokens_enter_through_hook_embed_without_start_at_layer(icl_checkpoint):
    model, batch = icl_checkpoint
    logits, cache = model.run_with_cache(batch.tokens)
    assert torch.equal(cache["hook_embed"], batch.tokens)  # paired tokens are the residual stream
    assert "hook_pos_embed" not in cache  # no positions, as in the paper
    assert torch.equal(logits, model(batch.tokens, start_at_layer=0))
    assert torch.allclose(logits[:, -1], query_logits(model, batch.tokens), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", ["icl", "near", "memorize"])
def test_decomposed_residual_stream_of_a_trained_checkpoint_sums_to_the_final_one(name):
    run = load_run(REFERENCE / name)
    model, batch = run.model(), run.eval_sets()["icl"][:N_SEQUENCES]
    _, cache = model.run_with_cache(batch.tokens)
    final = cache[get_act_name("resid_post", model.cfg.n_layers - 1)]
    components, labels = cache.decompose_resid(return_labels=True)
    assert labels == ["embed", "0_attn_out", "0_mlp_out"]
    assert torch.allclose(components.sum(0), final, atol=1e-4)
    accumulated, labels = cache.accumulated_resid(incl_mid=True, return_labels=True)
    assert labels == ["0_pre", "0_mid", "final_post"]
    assert torch.allclose(accumulated[0], cache["hook_embed"]) and torch.allclose(accumulated[-1], final)
    # Heads, attention biases and MLP (stack_head_results path) add up to the same stream.
    heads = cache.stack_head_results(layer=-1)
    assert torch.allclose(cache["hook_embed"] + heads.sum(0) + model.blocks[0].attn.b_O + cache["blocks.0.hook_mlp_out"], final, atol=1e-4)
    # Our attribution's head term is TransformerLens's head result at the query, through the final LN.
    direction = model.ln_final.w * model.W_U[:, 0]
    expected = cache.apply_ln_to_stack(heads[:, :, -1], layer=None, pos_slice=-1)[0] @ direction
    assert torch.allclose(logit_attribution(model, batch)["L0H0"][:, 0], expected, atol=1e-4)


def test_patching_the_head_from_clean_into_flipped_labels_restores_the_clean_logit(icl_checkpoint):
    """In one layer the query's residual stream is its token (the same in both runs) plus the
    head's output plus the MLP of their sum: patching the head makes the query exactly clean."""
    model, batch = icl_checkpoint
    sign = batch.targets.float() * 2 - 1

    def toward_clean_label(logits: torch.Tensor) -> torch.Tensor:
        return (logits[:, -1, 0] * sign).mean()

    corrupted = flip_context_labels(batch, 2)
    clean_logits, clean_cache = model.run_with_cache(batch.tokens)
    clean, flipped = toward_clean_label(clean_logits).item(), toward_clean_label(model(corrupted)).item()
    assert clean > 1 and flipped < -1  # the ICL head reads the context's labels: flipping them flips the answer

    heads = patching.get_act_patch_attn_head_out_all_pos(model, corrupted, clean_cache, toward_clean_label)
    assert heads.shape == (1, 1) and heads[0, 0].item() == pytest.approx(clean, rel=1e-4)

    # TransformerLens reads the number of positions from the tokens' last dimension, which is
    # d_model for continuous tokens: the by-position functions take the (layer, pos) grid instead.
    n_pos = batch.tokens.shape[1]
    grid = patching.make_df_from_ranges([model.cfg.n_layers, n_pos], ["layer", "pos"])
    resid = patching.get_act_patch_resid_pre(
        model, corrupted, clean_cache, toward_clean_label, index_axis_names=None, index_df=grid
    ).reshape(model.cfg.n_layers, n_pos)
    assert torch.equal(corrupted, flip_context_labels(batch, 2))  # patches edit the stream, not the input
    assert resid[0, -1].item() == pytest.approx(flipped, rel=1e-4)  # the query's token carries no label
    # Each context position carries its own label: restoring one moves the answer back a little.
    assert (resid[0, :-1] > flipped).all()
    assert resid[0, :-1].max() < clean


@pytest.mark.parametrize("task_format", ["paired", "interleaved"])
def test_a_deep_copy_is_independent_of_the_original(task_format):
    config = preset("cpu").override(K=64, N=9, d_mlp=16, format=task_format)
    model = build_model(config)
    batch = make_eval_sets(config.task, training_pool(config.task, 0), 0)["icl"][:8]
    before = full_query_logits(model, batch.tokens)
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for parameter in twin.parameters():
            parameter.add_(torch.randn_like(parameter))
    assert torch.equal(full_query_logits(model, batch.tokens), before)
    assert not torch.allclose(full_query_logits(twin, batch.tokens), before, atol=1e-3)
    # Each embeds with its own W_E and W_pos (interleaved): the stream entering block 0 is the twin's.
    _, cache = twin.run_with_cache(batch.tokens)
    assert torch.equal(cache["blocks.0.hook_resid_pre"], twin.embed_tokens(batch.tokens))
    if task_format == "interleaved":
        assert not torch.allclose(cache["blocks.0.hook_resid_pre"], model.embed_tokens(batch.tokens))


def test_integer_token_ids_are_refused_with_a_message_naming_the_expected_input():
    model = build_model(preset("cpu"))
    with pytest.raises(TypeError, match=r"continuous tokens \[batch pos d_model\]"):
        model(torch.zeros(2, 20, dtype=torch.long))
