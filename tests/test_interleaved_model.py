"""The interleaved model: label embeddings and positions are its own input embedding."""

import pytest
import torch

from icl_mech.config import RunConfig
from icl_mech.interleaved import embed
from icl_mech.model import build_model, full_query_logits, query_logits
from icl_mech.presets import preset
from icl_mech.sampler import make_eval_sets, training_pool
from icl_mech.trainer import train


@pytest.fixture(scope="module", params=[True, False], ids=["attn_only", "with_mlp"])
def config(request) -> RunConfig:
    return preset("cpu-interleaved").override(attn_only=request.param, d_mlp=64, eval_size=64)


@pytest.fixture(scope="module")
def batch(config):
    return make_eval_sets(config.task, training_pool(config.task, 0), 0)["icl"]


def test_fast_query_logit_matches_the_full_forward_and_reaches_the_label_embeddings(config, batch):
    model = build_model(config)
    fast = query_logits(model, batch.tokens)
    assert torch.allclose(fast, full_query_logits(model, batch.tokens), atol=1e-5)
    fast.sum().backward()
    assert model.W_E.grad.abs().sum() > 0 and model.W_pos.grad.abs().sum() > 0


def test_embedding_hooks_fire_and_resid_pre_is_item_plus_label_embedding_plus_position(config, batch):
    model = build_model(config)
    _, cache = model.run_with_cache(batch.tokens)
    resid = cache["blocks.0.hook_resid_pre"]
    assert torch.allclose(resid, cache["hook_embed"] + cache["hook_pos_embed"])
    assert cache.decompose_resid(layer=0, return_labels=True)[1] == ["embed", "pos_embed"]
    assert torch.allclose(resid, embed(model, batch.tokens))
    label_token = batch.tokens[0, 1]
    expected = model.W_E[label_token[config.task.D :].argmax()] + model.W_pos[1]
    assert torch.allclose(resid[0, 1], expected, atol=1e-6)


def test_the_embedding_survives_resetting_every_hook_and_a_checkpoint_round_trip(config, batch, tmp_path):
    run = train(config.override(steps=3, eval_every=3, checkpoint_every=3), tmp_path / "run", progress=False)
    model = run.model(3)
    model.reset_hooks(including_permanent=True)
    expected = query_logits(model, batch.tokens)
    assert torch.allclose(full_query_logits(model, batch.tokens), expected, atol=1e-5)
    assert not torch.allclose(expected, query_logits(build_model(config), batch.tokens))
