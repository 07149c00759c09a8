"""Probe functions on small untrained models, where the right answer is known by construction."""

from __future__ import annotations

import pytest
import torch
from transformer_lens.utilities import get_act_name

from icl_mech.errors import ConfigError, RunError
from icl_mech.model import build_model
from icl_mech.presets import preset
from icl_mech.sampler import make_pool, sample_batch
from probes.ablation import ablated_query_logits, ablation_hooks, resample_order
from probes.query_only import query_activations
from probes.attribution import logit_attribution
from probes.circuit_names import parse_heads
from probes.circuits import Site, circuit_sites, detect_heads
from probes.head_scores import match_chance, match_score, previous_token_score, query_matches

CONFIG = preset("cpu").override(K=64, N=8, n_layers=2, n_heads=5, d_mlp=32)


@pytest.fixture(scope="module")
def model():
    return build_model(CONFIG)


@pytest.fixture(scope="module")
def batch():
    generator = torch.Generator().manual_seed(0)
    pool = make_pool(64, CONFIG.task, generator)
    return sample_batch(CONFIG.task, pool, 64, generator, replacement=True, query="in_context")


def _force_pattern(pattern: torch.Tensor, layer: int, head: int):
    def hook(activation, hook):  # the query path's last layer holds the query's row only
        activation[:, head] = pattern[:, -activation.shape[-2] :].to(activation.dtype)
        return activation

    return (get_act_name("pattern", layer), hook)


def test_match_score_is_one_for_a_head_attending_only_to_the_query_item(model, batch):
    matches = query_matches(batch)
    target = torch.zeros(len(batch), batch.tokens.shape[1], batch.tokens.shape[1])
    target[:, -1] = matches / matches.sum(dim=1, keepdim=True)
    with model.hooks(fwd_hooks=[_force_pattern(target, 1, 3)]):
        scores = match_score(model, batch)
        assert detect_heads(model, batch, "match") == [(1, 3)]
    assert scores[1, 3].item() == pytest.approx(1.0, abs=1e-5)
    assert scores[0].max().item() < 0.9


def test_match_chance_is_the_score_of_uniform_attention(model, batch):
    n_pos = batch.tokens.shape[1]
    uniform = torch.full((len(batch), n_pos, n_pos), 1.0 / n_pos)
    with model.hooks(fwd_hooks=[_force_pattern(uniform, 0, 0)]):
        assert match_score(model, batch)[0, 0].item() == pytest.approx(match_chance(batch), abs=1e-5)


def test_previous_token_score_is_one_for_a_previous_token_head(model, batch):
    n_pos = batch.tokens.shape[1]
    previous = torch.diag(torch.ones(n_pos - 1), -1)
    previous[0, 0] = 1.0
    with model.hooks(fwd_hooks=[_force_pattern(previous.expand(len(batch), -1, -1), 0, 2)]):
        scores = previous_token_score(model, batch)
    assert scores[0, 2].item() == pytest.approx(1.0, abs=1e-5)
    assert scores[1].max().item() < 0.9


def test_logit_attribution_terms_sum_to_the_logit_in_a_two_layer_model(model, batch):
    terms = logit_attribution(model, batch)
    assert {"input", "L0H0", "L1H4", "mlp0", "mlp1", "attn_bias1", "bias"} <= set(terms)
    logits = model(batch.tokens)[:, -1]
    torch.testing.assert_close(sum(terms.values()), logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("method", ["zero", "mean", "resample"])
def test_ablating_one_head_leaves_the_other_heads_activations_unchanged(model, batch, method):
    name = get_act_name("z", 1)  # the last layer: the query path holds its query position
    _, clean = query_activations(model, batch, [name])
    hooks = ablation_hooks(model, batch, [Site(name, 2)], method)
    with model.hooks(fwd_hooks=hooks):
        _, patched = query_activations(model, batch, [name])
    keep = [0, 1, 3, 4]
    torch.testing.assert_close(patched[name][:, :, keep], clean[name][:, :, keep])
    assert not torch.allclose(patched[name][:, :, 2], clean[name][:, :, 2])
    if method == "zero":
        assert patched[name][:, :, 2].abs().max() == 0
    if method == "mean":
        torch.testing.assert_close(patched[name][:, :, 2], clean[name][:, :, 2].mean(0, keepdim=True).expand_as(clean[name][:, :, 2]))


def test_ablating_nothing_gives_the_models_own_logit(model, batch):
    torch.testing.assert_close(
        ablated_query_logits(model, batch, [], "mean"), model(batch.tokens)[:, -1]
    )


def test_resample_order_never_gives_a_sequence_its_own_activations():
    order = resample_order(1000, seed=3)
    assert sorted(order.tolist()) == list(range(1000))
    assert (order != torch.arange(1000)).all()


def test_heads_flag_parses_and_names_bad_input():
    assert parse_heads("0.0, 1.2") == [(0, 0), (1, 2)]
    with pytest.raises(ConfigError, match="LAYER.HEAD"):
        parse_heads("0-1")


def test_circuits_check_the_model(model, batch):
    assert circuit_sites("induction", model, batch, [(1, 4)]) == [Site("blocks.1.attn.hook_z", 4)]
    assert [s.hook_name for s in circuit_sites("mlp", model, batch)] == ["blocks.0.hook_mlp_out", "blocks.1.hook_mlp_out"]
    with pytest.raises(ConfigError, match="head 2.0 does not exist"):
        circuit_sites("induction", model, batch, [(2, 0)])
    with pytest.raises(ConfigError, match="unknown circuit"):
        circuit_sites("bogus", model, batch)
    with pytest.raises(RunError, match="attention-only"):
        circuit_sites("mlp", build_model(CONFIG.override(attn_only=True)), batch)


def test_probe_summary_adds_the_induction_circuit_scores_on_interleaved_runs():
    from icl_mech import build_model, preset
    from icl_mech.sampler import make_eval_sets, training_pool
    from probes.over_time import probe_summary

    config = preset("cpu-interleaved").override(eval_size=64)
    eval_sets = make_eval_sets(config.task, training_pool(config.task, 0), 0)
    row = probe_summary(build_model(config), eval_sets)
    for layer in (0, 1):
        assert 0 <= row[f"induction_L{layer}H0"] <= 1 and 0 <= row[f"label_previous_token_L{layer}H0"] <= 1
    assert 0 < row["induction_chance"] < 0.5 and 0 < row["label_previous_token_chance"] < 0.5
    paired = preset("cpu").override(K=64, eval_size=64)
    paired_row = probe_summary(build_model(paired), make_eval_sets(paired.task, training_pool(paired.task, 0), 0))
    assert "induction_chance" not in paired_row and "match_L0H0" in paired_row


def test_both_paths_into_an_mlp_together_resample_its_whole_output(model, batch):
    # MLP0 reads resid_pre + attn_out; swapping both contributions for another sequence's makes
    # it read that sequence's input, so it writes that sequence's output: the same logit as
    # resampling blocks.0.hook_mlp_out (which runs on the query path, the paths on the full forward).
    paths = [circuit_sites(name, model, batch)[0] for name in ("memorization-path", "icl-path")]
    assert [site.senders for site in paths] == [("blocks.0.hook_resid_pre",), ("blocks.0.hook_attn_out",)]
    torch.testing.assert_close(
        ablated_query_logits(model, batch, paths, "resample"),
        ablated_query_logits(model, batch, [Site(get_act_name("mlp_out", 0))], "resample"),
        atol=1e-4, rtol=1e-4,
    )


@pytest.mark.parametrize("circuit", ["memorization-path", "icl-path"])
def test_a_path_ablation_changes_what_the_mlp_reads_and_not_the_stream_around_it(model, batch, circuit):
    names = [get_act_name("resid_mid", 0), get_act_name("mlp_in", 0), get_act_name("resid_pre", 1)]
    _, clean = query_activations(model, batch, names)
    with model.hooks(fwd_hooks=ablation_hooks(model, batch, circuit_sites(circuit, model, batch)[:1], "resample")):
        _, patched = query_activations(model, batch, names)
    mid, mlp_in, post = names
    torch.testing.assert_close(patched[mid], clean[mid])
    assert not torch.allclose(patched[mlp_in], clean[mlp_in], atol=1e-3)
    assert not torch.allclose(patched[post], clean[post], atol=1e-3)  # the MLP's output did change


def test_path_circuits_need_an_mlp_and_take_no_heads(model, batch):
    with pytest.raises(ConfigError, match="--heads"):
        circuit_sites("icl-path", model, batch, [(0, 0)])
    attn_only = build_model(CONFIG.override(attn_only=True))
    with pytest.raises(RunError, match="memorization-path circuit does not exist"):
        circuit_sites("memorization-path", attn_only, batch)
