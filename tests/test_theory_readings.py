"""What the theory reads from networks: c1 on constructed MLPs (icl_mech.theory.residual) and
beta0 on constructed attention weights (icl_mech.theory.beta0)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from icl_mech import readout, storage, train, trainer
from icl_mech.ensemble import train_ensemble
from icl_mech.errors import ConfigError
from icl_mech.model import build_model, full_query_logits, query_logits
from icl_mech.sampler import ItemPool, make_eval_sets, make_pool, stream_generator
from icl_mech.theory.beta0 import match_sharpness
from icl_mech.theory.residual import item_queries, memorization_integral, mlp_residual

from conftest import cpu_config

SMALL = {"K": 64, "d_mlp": 32, "eval_size": 256}


def small_model(**overrides):
    config = cpu_config(**{**SMALL, **overrides})
    return config, build_model(config)


def test_c1_of_a_constant_logit_is_the_mean_of_sigmoid_minus_label_times_it():
    """phi(x) = c for every item (unembedding zeroed, its bias c): three items of label +1, one of
    label -1, so c1 = (3 sigmoid(-c) + sigmoid(c)) / 4."""
    _, model = small_model()
    with torch.no_grad():
        model.unembed.W_U.zero_()
        model.unembed.b_U.fill_(1.5)
    pool = ItemPool(torch.randn(4, 63) / 8, torch.tensor([1, 1, 1, 0]), 2)
    c1 = mlp_residual(model, item_queries(pool), pool.labels)
    assert c1.item() == pytest.approx((3 / (1 + math.exp(1.5)) + 1 / (1 + math.exp(-1.5))) / 4, rel=1e-6)


@pytest.mark.parametrize("shape", [{}, {"n_layers": 2, "n_heads": 2}], ids=["one_layer", "two_layers"])
def test_c1_reads_the_mlp_path_alone_as_a_network_without_attention_output_does(shape):
    """Large unembedding weights make phi item-dependent and far from 0; the hooks that remove the
    attention must give exactly the logits of the same network with every W_O zeroed (the query's
    attention to itself would otherwise add its value)."""
    config, model = small_model(**shape)
    with torch.no_grad():
        model.unembed.W_U.mul_(40)
    pool = make_pool(64, config.task, stream_generator(0, "items"))
    queries = item_queries(pool)
    c1 = mlp_residual(model, queries, pool.labels)
    with torch.no_grad():
        for block in model.blocks:
            block.attn.W_O.zero_()
        phi = full_query_logits(model, queries)[:, 0]
    labels = pool.labels * 2 - 1
    expected = torch.sigmoid(-labels * phi).mean()
    assert c1.item() == pytest.approx(expected.item(), rel=1e-5)
    assert phi.abs().mean() > 1  # logits far from 0: a path left out would move c1


def test_c1_with_more_labels_is_the_probability_left_off_the_target():
    _, model = small_model(L=4, K=64)
    with torch.no_grad():
        model.unembed.W_U.zero_()
        model.unembed.b_U.copy_(torch.tensor([2.0, 0.0, 0.0, 0.0]))
    pool = ItemPool(torch.randn(4, 63) / 8, torch.tensor([0, 1, 2, 3]), 4)
    p = torch.softmax(torch.tensor([2.0, 0, 0, 0]), 0)
    assert mlp_residual(model, item_queries(pool), pool.labels).item() == pytest.approx(1 - p.mean().item(), rel=1e-6)


def test_the_memorization_integral_is_the_trapezoid_of_c1_over_logged_steps():
    steps = np.array([0, 1, 2, 4, 100])
    c1 = np.array([0.5, 0.5, 0.4, 0.4, 0.0])
    assert memorization_integral(steps, c1).tolist() == pytest.approx([0, 0.5, 0.95, 1.75, 1.75 + 96 * 0.2])


@pytest.mark.parametrize("b", [0.5, 2.0])
def test_beta0_of_an_identity_query_key_form_is_b_times_the_layernorm_overlap_gap(b):
    config, model = small_model()
    d = model.cfg.d_model
    with torch.no_grad():
        model.blocks[0].attn.W_Q.copy_(math.sqrt(b) * torch.eye(d)[None])
        model.blocks[0].attn.W_K.copy_(math.sqrt(b) * torch.eye(d)[None])
    pool = make_pool(64, config.task, stream_generator(0, "items"))
    icl = make_eval_sets(config.task, pool, 0)["icl"]
    standard = F.layer_norm(icl.tokens, (d,))
    overlap = (standard[:, :-1] * standard[:, -1:]).sum(-1)  # [batch context]
    copies = icl.item_ids[:, :-1] == icl.item_ids[:, -1:]
    both = copies.any(1) & (~copies).any(1)
    gaps = [overlap[i][copies[i]].mean() - overlap[i][~copies[i]].mean() for i in torch.nonzero(both)[:, 0]]
    expected = b * torch.stack(gaps).mean().item() / config.model.attn_scale
    assert match_sharpness(model, icl) == pytest.approx(expected, rel=1e-4)
    assert expected > 1  # copies overlap: the gap is not a zero that any reading would match


def test_beta0_needs_sequences_with_copies_and_other_items():
    config, model = small_model()
    pool = make_pool(64, config.task, stream_generator(0, "items"))
    iwl = make_eval_sets(config.task, pool, 0)["iwl"]  # the query is never in the context
    with pytest.raises(ConfigError, match="holds the query item and other items"):
        match_sharpness(model, iwl)


#: A few steps of a small model: enough evaluations to log c1 several times in a second.
TINY = {"steps": 4, "eval_every": 2, "checkpoint_every": 2, "eval_size": 64, "batch_size": 16, "d_mlp": 16}


def test_every_evaluation_of_a_finite_k_run_logs_the_mlps_residual_over_its_items(tmp_path):
    run = train(cpu_config(K=64, **TINY), tmp_path / "run", progress=False)
    assert run.metrics.c1.notna().all() and run.metrics.step.tolist() == [0, 1, 2, 4]
    pool = run.pool
    for step in (0, 4):
        expected = mlp_residual(run.model(step), item_queries(pool), pool.labels).item()
        assert run.metrics.set_index("step").c1[step] == pytest.approx(expected, rel=1e-6)
    assert run.metrics.c1[0] == pytest.approx(0.5, abs=0.05)  # the MLP starts near logit 0


def test_every_evaluation_of_a_finite_k_run_logs_the_networks_residual_on_its_iwl_set(tmp_path):
    run = train(cpu_config(K=64, **TINY), tmp_path / "run", progress=False)
    iwl = run.eval_sets()["iwl"]
    for step in (0, 4):
        probabilities = readout.probabilities(query_logits(run.model(step), iwl.tokens))
        expected = 1 - probabilities.gather(-1, iwl.targets[:, None]).mean().item()
        assert run.metrics.set_index("step").iwl_residual[step] == pytest.approx(expected, rel=1e-6)
    # a different reading from c1: the whole network on the IWL set, not the MLP on the bare items
    assert not np.allclose(run.metrics.iwl_residual, run.metrics.c1)


def test_logging_c1_leaves_training_and_the_other_metrics_bit_identical(tmp_path, monkeypatch):
    config = cpu_config(K=64, **TINY)
    logged = train(config, tmp_path / "with", progress=False)
    monkeypatch.setattr(trainer, "residual_items", lambda member: None)
    plain = train(config, tmp_path / "without", progress=False)
    assert not {"c1", "iwl_residual"} & set(plain.metrics)
    assert logged.metrics.drop(columns=["c1", "iwl_residual"]).equals(plain.metrics)
    for step in plain.steps:
        assert storage.checkpoint_path(logged.path, step).read_bytes() == storage.checkpoint_path(plain.path, step).read_bytes()


def test_an_ensemble_logs_c1_for_its_finite_k_members_only(tmp_path):
    configs = [cpu_config(K=64, **TINY), cpu_config(K=None, **TINY)]
    finite, infinite = train_ensemble(configs, [tmp_path / "finite", tmp_path / "infinite"], progress=False)
    assert finite.metrics.c1.notna().all() and finite.metrics.iwl_residual.notna().all()
    assert not {"c1", "iwl_residual"} & set(infinite.metrics)
