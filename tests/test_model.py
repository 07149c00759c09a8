import random

import numpy as np
import torch

from icl_mech import TaskConfig, build_model, preset
from icl_mech.model import full_query_logits
from icl_mech.sampler import make_eval_sets, training_pool


def test_model_matches_the_papers_minimal_architecture():
    model = build_model(preset("paper"))
    cfg = model.cfg
    assert (cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.d_head, cfg.d_mlp) == (1, 1, 65, 65, 512)
    assert cfg.d_vocab_out == 1 and cfg.act_fn == "relu" and cfg.attn_scale == 1.0
    attn = model.blocks[0].attn
    for bias in (attn.b_Q, attn.b_K, attn.b_V, attn.b_O):
        assert not bias.requires_grad and torch.count_nonzero(bias) == 0


def test_attention_logits_are_unscaled_dot_products():
    model = build_model(preset("cpu"))
    task = TaskConfig(K=64, N=20, eval_size=4)
    tokens = make_eval_sets(task, training_pool(task, 0), 0)["icl"].tokens
    _, cache = model.run_with_cache(tokens)
    q, k = cache["blocks.0.attn.hook_q"], cache["blocks.0.attn.hook_k"]
    raw = torch.einsum("bqhd,bkhd->bhqk", q, k)
    scores = cache["blocks.0.attn.hook_attn_scores"]
    causal = torch.ones(20, 20).tril().bool()
    assert torch.allclose(scores[..., causal], raw[..., causal], atol=1e-5)


def test_run_with_cache_exposes_the_hooks_transformer_lens_users_know():
    config = preset("cpu")
    model = build_model(config)
    tokens = torch.randn(3, config.task.N, config.task.d_token)
    logits, cache = model.run_with_cache(tokens)
    assert logits.shape == (3, 20, 1)
    assert cache["blocks.0.attn.hook_pattern"].shape == (3, 1, 20, 20)
    assert cache["blocks.0.hook_mlp_out"].shape == (3, 20, 65)
    assert torch.allclose(full_query_logits(model, tokens), logits[:, -1])


def test_building_a_model_is_seeded_and_leaves_global_rngs_alone():
    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    before = (torch.rand(1), random.random(), np.random.rand())
    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    first = build_model(preset("cpu"))
    after = (torch.rand(1), random.random(), np.random.rand())
    assert before == after
    second = build_model(preset("cpu"))
    third = build_model(preset("cpu").override(seed=1))
    assert torch.equal(first.blocks[0].attn.W_Q, second.blocks[0].attn.W_Q)
    assert not torch.equal(first.blocks[0].attn.W_Q, third.blocks[0].attn.W_Q)
