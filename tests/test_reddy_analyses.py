"""Reddy (2024)'s analyses: phase diagrams of final ICL and IWL over swept data fields
(icl_mech.analysis.phase, `icl-mech figures --only phase`), the dating of his progress
measures against ICL's jump (probes.progress) and his three nested logits set beside a
checkpoint (probes.nested_logits)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from icl_mech import preset
from icl_mech.analysis import phase
from icl_mech.analysis.phase import phase_figure
from icl_mech.analysis.plotting import MissingRuns
from icl_mech.analysis.sweep_table import Levels
from icl_mech.cli import main
from icl_mech.config import TaskConfig
from icl_mech.baselines import set_baselines
from icl_mech.run import load_run
from icl_mech.sampler import make_eval_sets, training_pool
from icl_mech.trainer import train
from drawn_figures import record_saved_figures, tick_labels
from icl_mech.reddy_model import context_of, icl_logits
from probes.interleaved_scores import label_previous_token_score
from probes.nested_logits import carried_items, fit_nested_logits, nested_logits_fit
from probes.progress import progress_onsets, rise_step

TINY = {"steps": 10, "eval_every": 5, "checkpoint_every": 10, "eval_size": 64, "batch_size": 32}


@pytest.fixture(scope="module")
def reddy_sweep(tmp_path_factory):
    """Eight tiny runs of the cpu-reddy preset: B x K x 2 seeds."""
    out = tmp_path_factory.mktemp("reddy_sweep")
    base = preset("cpu-reddy").override(**TINY)
    for b in (1, 2):
        for k in (64, 256):
            for seed in (0, 1):
                train(base.override(B=b, K=k, seed=seed), out / f"B{b}-K{k}-seed{seed}", progress=False)
    return out


def test_phase_figure_of_a_b_by_k_sweep_averages_each_point_over_its_seeds(reddy_sweep, tmp_path, capsys):
    assert main(["figures", "--sweep", str(reddy_sweep), "--only", "phase", "--out", str(tmp_path)]) == 0
    assert "4 points over B x K" in capsys.readouterr().out
    assert (tmp_path / "phase.png").stat().st_size > 10_000
    points = pd.read_csv(tmp_path / "phase.csv").set_index(["B", "K"])
    assert len(points) == 4 and (points.runs == 2).all()
    for b, k in points.index:
        finals = [load_run(reddy_sweep / f"B{b}-K{k:.0f}-seed{seed}").metrics.iloc[-1] for seed in (0, 1)]
        for name in ("icl", "icl_swap", "iwl_iid"):  # Reddy's IWL is on classes drawn at random
            expected = np.mean([final[f"{name}_acc"] for final in finals])
            assert points.loc[(b, k), f"{name}_acc_mean"] == pytest.approx(expected, abs=1e-6)
        runs = [load_run(reddy_sweep / f"B{b}-K{k:.0f}-seed{seed}") for seed in (0, 1)]
        levels = [set_baselines(run.config.task, run.pool, run.eval_sets()["iwl_iid"]) for run in runs]
        for baseline in ("label_prior", "copy_else_prior"):  # beside it, what needs no memory
            expected = np.mean([level[baseline] for level in levels])
            assert points.loc[(b, k), f"iwl_iid_{baseline}_mean"] == pytest.approx(expected, abs=1e-6)
        assert points.loc[(b, k), "iwl_iid_copy_else_prior_mean"] > points.loc[(b, k), "iwl_iid_label_prior_mean"]


def _table(**columns) -> pd.DataFrame:
    """A load_sweeps-like table of made-up final accuracies, and the IWL set's baselines that
    ``phase.with_baselines`` would otherwise regenerate from each run."""
    size = len(next(iter(columns.values())))
    base = {"run": [f"r{i}" for i in range(size)], "frozen": "", "L": 32, "K": 1024.0, "seed": 0,
            "icl_swap_acc": np.nan, "iwl_iid_acc": np.nan, "iwl_acc": 0.0, "train_acc": 1.0,
            "iwl_label_prior": 1 / 32, "iwl_copy_else_prior": 1 / 32,
            "final_step": 100, "t_icl": np.nan, "steps": 100, "uncommitted": True}
    return pd.DataFrame({**base, **columns})


def test_phase_summary_names_where_icl_and_iwl_coexist_and_falls_back_to_the_iwl_set(tmp_path):
    table = _table(
        zipf_alpha=[0.0, 0.0, 1.0, 1.0, 2.0, 2.0], seed=[0, 1] * 3,
        icl_acc=[0.9, 1.0, 0.7, 0.6, 0.1, 0.2], iwl_acc=[0.0, 0.1, 0.6, 0.7, 0.9, 0.8],
    )
    summary = phase_figure(table, tmp_path, Levels())
    assert summary == (
        "3 points over zipf_alpha: ICL above IWL at 1 of 3 points, IWL above ICL at 2 of 3; both >= 0.5 at 1 of 3 "
        "(zipf_alpha=1)"
    )
    points = pd.read_csv(tmp_path / "phase.csv")  # without Reddy's sets: IWL on the query-absent set
    assert list(points.iwl_acc_mean) == pytest.approx([0.05, 0.65, 0.85])
    assert "icl_swap_acc_mean" not in points


def test_phase_curves_tick_only_the_swept_values_and_say_steps_and_seeds(tmp_path, monkeypatch):
    """Over B = 1, 2, 4 matplotlib alone ticks 1.0, 1.5, ..., 4.0: B values no run had."""
    figures = record_saved_figures(monkeypatch, phase)
    table = _table(B=[1, 1, 2, 2, 4, 4], seed=[0, 1] * 3, icl_acc=[0.1, 0.2, 0.5, 0.6, 0.8, 0.9])
    phase_figure(table, tmp_path, Levels())
    figure = figures["phase"]
    assert tick_labels(figure.axes[0].xaxis) == ["1", "2", "4"]
    assert list(figure.axes[0].xaxis.get_majorticklocs()) == [1, 2, 4]
    assert figure.get_suptitle() == "final accuracy after 100 steps, mean over 2 seeds per point"


def test_phase_heatmaps_say_steps_and_seeds_and_label_every_cell(tmp_path, monkeypatch):
    figures = record_saved_figures(monkeypatch, phase)
    table = _table(B=[1, 1, 2, 4], K=[64.0, 256.0] * 2, seed=[0, 0, 0, 1], icl_acc=[0.1, 0.2, 0.5, 0.6],
                   final_step=[80, 100, 100, 100])
    phase_figure(table, tmp_path, Levels())
    figure = figures["phase"]
    assert tick_labels(figure.axes[0].xaxis) == ["64", "256"] and tick_labels(figure.axes[0].yaxis) == ["1", "2", "4"]
    assert figure.get_suptitle() == "final accuracy after 80-100 steps, mean over 1 seed per point"


def test_phase_refuses_sweeps_varying_no_field_or_more_than_two(tmp_path):
    with pytest.raises(MissingRuns, match="these vary none"):
        phase_figure(_table(icl_acc=[0.5, 0.6], seed=[0, 1]), tmp_path, Levels())
    three = _table(B=[1, 2], epsilon=[0.0, 0.1], K=[64.0, 256.0], icl_acc=[0.5, 0.6])
    with pytest.raises(MissingRuns, match=r"these vary \['B', 'epsilon', 'K'\]"):
        phase_figure(three, tmp_path, Levels())


def test_progress_measures_are_dated_from_their_trough_against_icls_jump():
    steps = np.arange(0, 1000, 100)
    rising = lambda at: np.where(steps >= at, 1.0, 0.1)  # noqa: E731 (a step up at ``at``)
    dipping = np.array([0.2, 0.1, 0.05, 0.05, 0.2, 0.6, 0.6, 0.6, 0.6, 0.6])  # dips, then rises before ICL
    table = pd.DataFrame({
        "step": steps, "icl_acc": [0.03, 0.25, 0.25, 0.25, 0.25, 0.25, 0.95, 1.0, 1.0, 1.0],
        "context_label_acc": rising(100), "label_attention_L1H0": rising(300),
        "label_previous_token_L0H0": dipping, "induction_L1H0": rising(700), "match_L0H0": rising(0),
    })
    onsets = progress_onsets(table).set_index("measure")
    assert list(onsets.index) == ["context_label_acc", "label_attention_L1H0", "label_previous_token_L0H0", "induction_L1H0"]
    assert (onsets.icl_jump_step == 600).all()  # the jump, not the first stage: 0.25 is below (0.03 + 1) / 2
    assert list(onsets.start_step) == [100, 300, 400, 700] and list(onsets.half_step) == [100, 300, 500, 700]
    assert list(onsets.starts_before_icl) == [True, True, True, False]
    assert onsets.lowest["label_previous_token_L0H0"] == 0.05 and onsets.rise["label_previous_token_L0H0"] == pytest.approx(0.55)
    assert rise_step(steps, np.linspace(0, 1, 10), 0.5) == 500
    plateau = table.assign(icl_acc=np.where(steps >= 100, 0.28, 0.03))  # the first stage only
    assert progress_onsets(plateau).icl_jump_step.isna().all() and not progress_onsets(plateau).starts_before_icl.any()
    assert rise_step(steps, dipping, 0.5, from_trough=False) == 500  # from the first value: 0.2 -> 0.6
    with pytest.raises(ValueError, match="interleaved run"):
        progress_onsets(table[["step", "icl_acc"]])


def test_a_first_stage_bump_that_falls_back_does_not_date_a_measures_start():
    """An induction score that rose at step 100 and fell back to its plateau until the jump at
    1400 (a cpu-reddy seed): it starts with the jump, not at the bump."""
    steps = np.arange(0, 2000, 100)
    bumped = np.r_[0.12, 0.30, [0.13] * 12, 0.50, [0.90] * 5]
    table = pd.DataFrame({"step": steps, "icl_acc": np.r_[0.03, [0.25] * 13, [0.95] * 6], "induction_L1H0": bumped})
    onsets = progress_onsets(table).set_index("measure")
    assert onsets.icl_jump_step.iloc[0] == 1400
    assert onsets.start_step["induction_L1H0"] == 1400 and onsets.half_step["induction_L1H0"] == 1500
    assert not onsets.starts_before_icl["induction_L1H0"]


def test_a_progress_measure_that_never_rose_has_no_start_and_did_not_start_before_icl():
    steps = np.arange(0, 500, 100)
    table = pd.DataFrame({
        "step": steps, "icl_acc": [0.25, 0.25, 0.25, 1.0, 1.0],
        "label_attention_L1H0": [0.3, 0.2, 0.2, 0.1, 0.1], "induction_L1H0": [0.12] * 5,  # falls; flat
    })
    onsets = progress_onsets(table).set_index("measure")
    assert onsets.start_step.isna().all() and onsets.half_step.isna().all()
    assert not onsets.starts_before_icl.any() and (onsets.rise == 0).all()


def test_viz_shows_reddys_sets_and_names_a_run_without_them(reddy_sweep, tmp_path, capsys):
    run = reddy_sweep / "B2-K64-seed0"
    assert main(["viz", "--run", str(run), "--set", "iwl_iid", "--out", str(tmp_path / "iid.html")]) == 0
    assert (tmp_path / "iid.html").stat().st_size > 1000
    plain = train(preset("cpu-interleaved").override(**TINY, K=64), tmp_path / "plain", progress=False)
    assert main(["viz", "--run", str(plain.path), "--set", "icl_swap", "--out", str(tmp_path / "swap.html")]) == 2
    assert "has no icl_swap set: it was trained without reddy_eval_sets" in capsys.readouterr().err
    assert not (tmp_path / "swap.html").exists()


def test_nested_logits_recover_a_known_match_and_readout_from_items_and_labels_read_off_tokens():
    task = TaskConfig(format="interleaved", K=256, N=9, D=15, L=32, B=2, eval_size=500, reddy_eval_sets=True)
    icl = make_eval_sets(task, training_pool(task, 0), 0)["icl"]
    query, items, labels = context_of(icl, 32)
    assert torch.equal(labels, icl.labels[:, 1:-1:2])  # each label token's label
    similarity = torch.einsum("bpd,bd->bp", items, query)
    matching = icl.item_ids[:, :-1:2] == icl.item_ids[:, -1:]  # the query's class, B = 2 times in each context
    assert (matching.sum(dim=1) == 2).all()
    # items have norm about 1 and independent classes are near-orthogonal
    assert similarity[matching].mean() > 0.9 and similarity[~matching].abs().mean() < 0.3
    target = torch.softmax(icl_logits(torch.tensor(6.0), torch.tensor(4.0), similarity, labels, 32), dim=-1)
    match, readout = fit_nested_logits(target, similarity, labels)
    assert match == pytest.approx(6.0, rel=0.02) and readout == pytest.approx(4.0, rel=0.02)


def test_nested_logits_read_the_previous_token_share_from_layer_0_and_judge_each_sequence(reddy_sweep):
    run = load_run(reddy_sweep / "B2-K256-seed0")
    model, icl = run.model(), run.eval_sets()["icl"]
    carried = carried_items(model, icl)  # one head: its label tokens' attention to their items
    assert carried.shape == (len(icl),) and ((carried > 0) & (carried < 1)).all()
    assert carried.mean().item() == pytest.approx(label_previous_token_score(model, icl)[0, 0].item(), rel=1e-5)
    fit = nested_logits_fit(model, icl)
    assert fit.carried == pytest.approx(carried.mean().item())
    assert abs(fit.model_target_prob - fit.network_target_prob) < 0.05 and -1 <= fit.sequence_corr <= 1


def test_figures_where_reads_one_slice_of_pooled_sweeps(reddy_sweep, tmp_path, capsys):
    args = ["figures", "--sweep", str(reddy_sweep), "--only", "phase", "--out", str(tmp_path)]
    assert main([*args, "--where", "B=2"]) == 0
    assert "2 points over K" in capsys.readouterr().out
    assert list(pd.read_csv(tmp_path / "phase.csv").K) == [64, 256]
    assert main([*args, "--where", "B=3"]) == 2
    assert "--where B=3: no run has it (values: ['1', '2'])" in capsys.readouterr().err
