"""Any number of labels L: one readout (icl_mech.readout) for the loss, the accuracy, the logit
toward the target and chance; L = 2 keeps the paper's one-logit model bit for bit; Reddy (2024)'s
evaluation sets have the properties his tests need."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from icl_mech import ConfigError, preset, train
from icl_mech.baselines import iwl_baselines, set_baselines
from icl_mech.config import RunConfig, TaskConfig
from icl_mech.ensemble import train_ensemble
from icl_mech.model import build_model, query_logits
from icl_mech.readout import chance, loss_and_accuracy, n_labels, predictions, probabilities, toward_target
from icl_mech.sampler import TRAINING_MODES, make_eval_sets, sample_batch, stream_generator, training_pool
from probes.ablation import ablation_effect
from probes.circuits import circuit_sites
from probes.independence import independence_run, verdict
from probes.over_time import ablate_run, probe_run
from probes.plots import plot_ablation
from probes.llc import SGLDSettings
from probes.report import write_report

TINY = dict(K=64, N=9, D=15, d_mlp=32, eval_size=200, steps=30, eval_every=10, checkpoint_every=10)
INTERLEAVED = dict(format="interleaved", B=2, n_layers=2, attn_only=True)


def tiny(**overrides) -> RunConfig:
    return preset("cpu").override(**{**TINY, **overrides})


def test_two_labels_train_bit_for_bit_as_the_one_logit_logistic_model(tmp_path):
    """The pre-readout trainer, written out: one logit, binary cross-entropy on it, its sign as
    the prediction. The library's L = 2 run must be that model exactly, weights and metrics."""
    config = tiny(steps=12)
    run = train(config, tmp_path / "run", progress=False)
    model = build_model(config)
    assert model.cfg.d_vocab_out == 1 and n_labels(model) == 2
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr, fused=True)
    pool, rng = training_pool(config.task, 0), stream_generator(0, "train")
    for _ in range(config.train.steps):
        batch = sample_batch(config.task, pool, config.train.batch_size, rng, **TRAINING_MODES["bursty"])
        logit = query_logits(model, batch.tokens)[:, 0]
        loss = F.binary_cross_entropy_with_logits(logit, batch.targets.float())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for name, weight in run.state_dict(12).items():
        assert torch.equal(weight, model.state_dict()[name]), name
    final = run.metrics.set_index("step").loc[12]
    with torch.no_grad():
        for name, batch in make_eval_sets(config.task, pool, 0).items():
            logit = query_logits(model, batch.tokens)[:, 0]
            assert final[f"{name}_loss"] == F.binary_cross_entropy_with_logits(logit, batch.targets.float()).item()
            assert final[f"{name}_acc"] == ((logit > 0).long() == batch.targets).float().mean().item()


def test_one_logit_readout_is_the_two_logit_softmax_readout():
    """L = 2's one logit z is the difference of two softmax logits (0, z): same loss, prediction,
    distribution and logit toward the target, so the L = 2 model is the L-label readout at L = 2."""
    logit = torch.randn(64, 1, generator=torch.Generator().manual_seed(0))
    targets = torch.randint(2, (64,), generator=torch.Generator().manual_seed(1))
    pair = torch.cat([torch.zeros_like(logit), logit], dim=-1)
    for one, two in zip(loss_and_accuracy(logit, targets), loss_and_accuracy(pair, targets)):
        torch.testing.assert_close(one, two)
    assert torch.equal(predictions(logit), predictions(pair))
    torch.testing.assert_close(probabilities(logit), probabilities(pair))
    torch.testing.assert_close(toward_target(logit, targets), toward_target(pair, targets))


def test_toward_target_is_linear_and_positive_exactly_when_the_target_leads_the_mean_of_the_others():
    logits = torch.tensor([[3.0, 0.0, 0.0, 0.0], [0.0, 1.0, 2.0, 3.0]])
    targets = torch.tensor([0, 1])
    torch.testing.assert_close(toward_target(logits, targets), torch.tensor([3.0, 1.0 - 5.0 / 3]))
    parts = torch.randn(3, 2, 4)
    torch.testing.assert_close(toward_target(parts, targets).sum(0), toward_target(parts.sum(0), targets))
    assert chance(4) == 0.25 and chance(2) == 0.5


@pytest.mark.parametrize("labels", [4, 8])
@pytest.mark.parametrize("fmt", ["paired", "interleaved"])
def test_many_labels_train_with_the_softmax_readout_in_both_formats(tmp_path, fmt, labels):
    extra = INTERLEAVED if fmt == "interleaved" else {}
    config = tiny(L=labels, steps=20, reddy_eval_sets=True, **extra)
    run = train(config, tmp_path / "run", progress=False)
    model = run.model()
    assert model.cfg.d_vocab_out == labels and n_labels(model) == labels
    batch = run.eval_sets()["train"]
    logits = query_logits(model, batch.tokens)
    assert logits.shape == (len(batch), labels)
    loss, _ = loss_and_accuracy(logits, batch.targets)
    torch.testing.assert_close(loss, F.cross_entropy(logits, batch.targets))
    metrics = run.metrics
    assert {"icl_swap_acc", "iwl_iid_acc"} <= set(metrics.columns) and not metrics.isna().any().any()
    accuracies = metrics[[c for c in metrics.columns if c.endswith("_acc")]].to_numpy()
    assert ((accuracies >= 0) & (accuracies <= 1)).all()
    losses = metrics[[c for c in metrics.columns if c.endswith("_loss")]]
    assert losses.iloc[0].mean() == pytest.approx(torch.log(torch.tensor(labels)).item(), rel=0.25)
    assert metrics.train_loss.iloc[-1] < metrics.train_loss.iloc[0]


def test_an_ensemble_of_many_label_runs_trains_each_as_alone(tmp_path):
    configs = [tiny(L=4, steps=10, seed=seed) for seed in (0, 1)]
    runs = train_ensemble(configs, [tmp_path / "m0", tmp_path / "m1"], progress=False)
    alone = train(configs[1], tmp_path / "alone", progress=False)
    for name, weight in alone.state_dict(10).items():
        torch.testing.assert_close(runs[1].state_dict(10)[name], weight, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["reddy2024", "cpu-reddy"])
def test_reddy_presets_read_32_labels_out_of_interleaved_contexts_and_log_his_sets(name):
    config = preset(name)
    task = config.task
    assert (task.format, task.L, task.N, task.B, task.epsilon, task.reddy_eval_sets) == ("interleaved", 32, 9, 2, 0.1, True)
    assert config.model.n_layers == 2 and build_model(config).cfg.d_vocab_out == 32


def test_cpu_reddy_reads_labels_from_the_context_above_chance_within_seconds(tmp_path):
    """Reddy's first stage: within tens of steps the network predicts one of the context's labels
    (ICL accuracy towards 1/4, the 4 classes of a context), far above chance 1/32, on both ICL
    sets; the induction head comes later (docs/REDDY.md)."""
    config = preset("cpu-reddy").override(steps=40, eval_every=40, checkpoint_every=40, eval_size=300)
    run = train(config, tmp_path / "run", progress=False)
    metrics = run.metrics.iloc[-1]
    assert config.task.L == 32 and min(metrics.icl_acc, metrics.icl_swap_acc) > 3 * chance(32)
    assert metrics.iwl_iid_acc < 2 * chance(32)
    # The progress measure behind the plateau: the answer is a label of the context (4 of 32
    # labels: 1/8 when guessing) long before it is the right one.
    probes = probe_run(run, steps=[0, 40], progress=False).set_index("step")
    assert probes.context_label_acc[0] < 0.3 and probes.context_label_acc[40] > 0.8
    assert probes.icl_acc[40] < 0.5 and set(probes.columns) >= {"icl_swap_acc", "iwl_iid_acc"}
    # Beside the IWL accuracies, what they have to beat (icl_mech.baselines), the same each step.
    levels = set_baselines(config.task, run.pool, run.eval_sets()["iwl_iid"])
    for baseline in ("label_prior", "copy_if_present", "copy_else_prior"):
        assert (probes[f"iwl_iid_{baseline}"] == levels[baseline]).all()
    assert (probes.iwl_copy_if_present == 0).all()


@pytest.fixture(scope="module")
def reddy_sets():
    task = TaskConfig(
        format="interleaved", K=256, N=9, D=15, L=32, B=2, eval_size=2000, distinct_labels=True, reddy_eval_sets=True
    )
    pool = training_pool(task, 0)
    return task, pool, make_eval_sets(task, pool, 0)


def _items(batch):
    """Item tokens' vectors (the interleaved batch's even positions): context and query."""
    return batch.tokens[:, ::2, :15]


def test_reddy_icl_set_uses_novel_classes_each_with_its_own_label(reddy_sets):
    task, pool, sets = reddy_sets
    batch = sets["icl"]
    assert torch.cdist(_items(batch).flatten(0, 1), pool.vectors).min() > 0.05  # none is a training class
    context_labels = batch.labels[:, :-1:2]
    for row in context_labels[:50]:
        assert len(set(row.tolist())) == (task.N - 1) // task.B  # 4 classes, 4 different labels
    assert (batch.item_ids[:, -1:] == batch.item_ids[:, :-1:2]).any(dim=1).all()


def test_reddy_swapped_label_set_relabels_training_classes_consistently(reddy_sets):
    task, pool, sets = reddy_sets
    batch = sets["icl_swap"]
    ids, shown = batch.item_ids[:, ::2], batch.labels[:, ::2]
    true = pool.labels[ids]
    shift = (shown - true) % task.L
    assert (shift == shift[:, :1]).all() and (shift > 0).all()  # one nonzero shift per sequence
    assert shift[:, 0].unique().numel() > 20  # spread over the other labels
    label_tokens = batch.tokens[:, 1::2, 15:].argmax(-1)
    assert torch.equal(label_tokens, batch.labels[:, 1::2])  # the tokens show the swapped labels
    assert torch.equal(batch.targets, shown[:, -1]) and (batch.targets != true[:, -1]).all()
    assert (ids[:, -1:] == ids[:, :-1]).any(dim=1).all()  # the context holds the answer


def test_reddy_iwl_set_draws_classes_at_random_so_the_query_is_in_context_by_chance(reddy_sets):
    task, pool, sets = reddy_sets
    batch = sets["iwl_iid"]
    ids = batch.item_ids[:, ::2]
    assert torch.equal(batch.targets, pool.labels[ids[:, -1]])
    in_context = (ids[:, -1:] == ids[:, :-1]).any(dim=1).float().mean().item()
    expected = 1 - (1 - 1 / task.K) ** (task.N - 1)  # 3.1%
    assert in_context == pytest.approx(expected, abs=0.015)
    assert (sets["iwl"].item_ids[:, -1:] != sets["iwl"].item_ids[:, :-1]).all()  # the old set: never


def test_reddy_sets_come_after_the_others_so_those_stay_the_same_draws():
    task = TaskConfig(format="interleaved", K=256, N=9, D=15, L=32, B=2, eval_size=100)
    with_reddy = dataclasses.replace(task, reddy_eval_sets=True)
    plain, extended = (make_eval_sets(t, training_pool(t, 0), 0) for t in (task, with_reddy))
    assert list(extended) == ["train", "icl", "iwl", "icl_swap", "iwl_iid"]
    for name, batch in plain.items():
        assert torch.equal(batch.tokens, extended[name].tokens), name


@pytest.fixture(scope="module")
def four_label_run(tmp_path_factory):
    config = tiny(L=4, K=64, steps=60, checkpoint_every=30, eval_every=30)
    return train(config, tmp_path_factory.mktemp("runs") / "L4", progress=False)


def test_ablation_independence_probes_and_report_run_on_a_four_label_run(four_label_run, tmp_path):
    run = four_label_run
    eval_sets = run.eval_sets()
    model = run.model()
    sites = circuit_sites("mlp", model, eval_sets["icl"])
    row = ablation_effect(model, eval_sets, sites, "mean")
    assert row["chance"] == 0.25 and row["iwl_acc_ablated"] < row["iwl_acc"]
    independence = independence_run(run, "mean", steps=[run.steps[-1]], progress=False)
    assert "chance 0.25" in verdict(independence.iloc[-1])
    probes = probe_run(run, steps=[run.steps[-1]], progress=False)
    assert probes.chance.iloc[0] == 0.25 and "icl_dla_bias" in probes
    table = probes.assign(icl_acc_ablated=probes.icl_acc, iwl_acc_ablated=probes.iwl_acc)
    plot_ablation(table, "L = 4", tmp_path / "ablation.png")
    assert (tmp_path / "ablation.png").stat().st_size > 0
    report = write_report(run, tmp_path / "report.html", progress=False, llc=SGLDSettings(chains=2, draws=4, burn_in=2, batch_size=8))
    # metrics, probes, cross-ablation, and the LLC over training with its chains' traces
    assert report.read_text().count("data:image/png;base64,") == 5


def test_ablate_sets_the_iwl_sets_baselines_beside_their_intact_and_ablated_accuracies(four_label_run):
    run = four_label_run
    table, _ = ablate_run(run, "mlp", "mean", steps=[run.steps[-1]], progress=False)
    levels = iwl_baselines(run.config.task, run.pool, run.eval_sets())
    assert "iwl_label_prior" in levels and table.iloc[-1][list(levels)].to_dict() == pytest.approx(levels)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"L": 1}, "L must be an integer >= 2, got 1"),
        ({"L": 0}, "L must be an integer >= 2, got 0"),
        ({"L": 3}, "K=1024 must be a multiple of L=3"),
        ({"L": 2048}, "K=1024 must be a multiple of L=2048"),
        ({"L": 4, "equalized": True, "N": 7}, "N-1=6 to be a multiple of L=4 or below it"),
    ],
)
def test_bad_label_counts_are_refused_by_name(fields, message):
    with pytest.raises(ConfigError, match=message):
        TaskConfig(**fields)
