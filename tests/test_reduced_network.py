"""The theory's reduced model as a trainable network (icl_mech.theory.reduced_network), trained by
the project's trainer and sampler."""

from __future__ import annotations

import pytest
import torch

from icl_mech import graphs, train
from icl_mech.ensemble import train_ensemble
from icl_mech.model import build_model, query_logits
from icl_mech.sampler import training_pool
from icl_mech.theory.residual import item_queries, mlp_residual

from conftest import cpu_config
from graph_emulation import emulate_graphs

SMALL = {"K": 64, "d_mlp": 32, "eval_size": 256, "attention": "reduced"}


def test_reduced_logit_is_phi_plus_w_times_the_labels_weighted_by_match():
    """Two context tokens, a copy of the query labelled 1 and another item labelled 0: with beta
    and w set, z = phi(x_q) + w (e^beta s_1 - e^beta s_2) / (e^beta s_1 + e^beta s_2)."""
    config = cpu_config(**SMALL, N=3)
    model = build_model(config)
    item, other = torch.randn(2, 63) / 8
    tokens = torch.zeros(1, 3, 65)
    tokens[0, 0, :63], tokens[0, 0, 64] = item, 1.0  # label 1: l = +1
    tokens[0, 1, :63], tokens[0, 1, 63] = other, 1.0  # label 0: l = -1
    tokens[0, 2, :63] = item
    with torch.no_grad():
        model.blocks[0].attn.beta.fill_(3.0)
        model.blocks[0].attn.w.fill_(2.0)
    phi = query_logits(model, tokens[:, 2:])[0, 0]
    p = torch.softmax(3.0 * torch.stack([item @ item, other @ item]), 0)
    assert query_logits(model, tokens)[0, 0].item() == pytest.approx((phi + 2.0 * (p[0] - p[1])).item(), rel=1e-5)


def test_reduced_network_starts_from_the_full_networks_phi_at_the_same_seed():
    """Same initialization draws: c1 (the attention-free path on the K items) is the full
    network's, digit for digit, and beta and w start at 0."""
    config = cpu_config(**SMALL)
    reduced, full = build_model(config), build_model(config.override(attention="full"))
    pool = training_pool(config.task, config.train.seed)
    assert mlp_residual(reduced, item_queries(pool), pool.labels).item() == mlp_residual(full, item_queries(pool), pool.labels).item()
    assert (reduced.blocks[0].attn.beta.item(), reduced.blocks[0].attn.w.item()) == (0.0, 0.0)


def test_reduced_network_learns_icl_at_infinite_k_in_a_few_hundred_steps(tmp_path):
    """Nothing to memorize (K = infinity): only beta and w can lower the loss, and ICL accuracy on
    novel items reaches 0.95 within 250 steps (Adam at lr 1e-2), with beta and w grown positive."""
    config = cpu_config(**{**SMALL, "K": None}, steps=250, eval_every=50, lr=1e-2, stop_icl_acc=0.95)
    run = train(config, tmp_path / "run", progress=False)
    assert run.metrics.icl_acc.iloc[-1] >= 0.95
    attn = run.model().blocks[0].attn
    assert attn.beta.item() > 1 and attn.w.item() > 1


def test_reduced_ensemble_trains_each_member_as_alone(tmp_path):
    """vmap over the reduced query path: an ensemble member's metrics (the residuals included)
    are its single run's."""
    configs = [cpu_config(**SMALL, steps=6, eval_every=3, seed=seed) for seed in (0, 1)]
    ensemble = train_ensemble(configs, [tmp_path / "e0", tmp_path / "e1"], progress=False)
    alone = train(configs[1], tmp_path / "alone", progress=False)
    columns = ["icl_loss", "iwl_loss", "c1", "iwl_residual"]
    assert ensemble[1].metrics[columns].to_numpy() == pytest.approx(alone.metrics[columns].to_numpy(), rel=1e-5)


@pytest.mark.parametrize("graphs_on", ["emulated", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_reduced_network_trains_on_the_captured_path_as_eagerly(tmp_path, monkeypatch, graphs_on):
    """``--device cuda`` captures whole steps in CUDA graphs: the reduced query path (beta, w and
    the residual metrics) must record and replay as it runs eagerly. Emulated on the CPU (every
    replay reads its tensors where the capture did), exactly; on CUDA, to float rounding."""
    config = cpu_config(**SMALL, steps=6, eval_every=3, lr=1e-2)
    device = "cuda" if graphs_on == "cuda" else "cpu"
    eager = train(config, tmp_path / "eager", device=device, progress=False, capture=False)
    if graphs_on == "emulated":
        emulate_graphs(monkeypatch)
    before = graphs.recorded
    captured = train(config, tmp_path / "captured", device=device, progress=False)
    assert graphs.recorded - before == 2  # its update and its evaluation pass
    tolerance = 1e-4 if graphs_on == "cuda" else 0.0
    assert captured.metrics.to_numpy() == pytest.approx(eager.metrics.to_numpy(), rel=0, abs=tolerance)
    for name, tensor in eager.state_dict(eager.steps[-1]).items():
        torch.testing.assert_close(captured.state_dict(captured.steps[-1])[name], tensor, rtol=0, atol=tolerance)
