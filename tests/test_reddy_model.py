"""Reddy (2024)'s minimal model trained by itself on the cpu-reddy task (icl_mech.reddy_model)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest
import torch

from icl_mech import preset
from icl_mech.baselines import iwl_baselines
from icl_mech.readout import chance
from icl_mech.reddy_model import MinimalModel, train_minimal
from icl_mech.sampler import make_eval_sets, training_pool


def _trained(K: int):
    config = preset("cpu-reddy").override(K=K, steps=100, eval_every=100, eval_size=200)
    return train_minimal(config)


def test_minimal_model_learns_icl_with_many_classes_and_memorizes_few_within_100_steps():
    """Reddy's data dependence on K, from his model alone: with 2^14 bursty classes the induction
    head's match grows and both ICL sets are solved while nothing is memorized; with 64 classes
    his classifier memorizes them and the induction head is left behind."""
    _, many = _trained(16384)
    _, few = _trained(64)
    many, few = many.iloc[-1], few.iloc[-1]
    assert min(many.icl_acc, many.icl_swap_acc) > 0.8 and many.iwl_iid_acc < 3 * chance(32)
    assert min(few.iwl_acc, few.iwl_iid_acc) > 0.8 and few.icl_acc < 0.2 and few.icl_swap_acc < 0.2
    assert many.match > 2 * few.match


def test_minimal_model_at_its_start_answers_with_the_classifier_alone():
    config = preset("cpu-reddy").override(eval_size=50)
    batch = make_eval_sets(config.task, training_pool(config.task, 0), 0)["icl"]
    model = MinimalModel(config.task.D, config.task.L)
    assert torch.equal(model(batch, icl_only=True), torch.zeros(len(batch), 32))  # readout 0
    assert torch.equal(model(batch), model.classifier(batch.tokens[:, -1, : config.task.D]))


def test_minimal_model_refuses_the_paired_format():
    with pytest.raises(ValueError, match="interleaved"):
        train_minimal(preset("cpu").override(steps=1))


def _example_script():
    path = Path(__file__).parents[1] / "examples" / "reddy_minimal_model.py"
    spec = importlib.util.spec_from_file_location("reddy_minimal_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_script_trains_one_model_per_grid_point_and_refuses_a_bad_point_in_one_line(tmp_path, capsys):
    script = _example_script()
    out = tmp_path / "figures" / "grid.csv"  # its folder made, as reproduce_cpu.sh's reddy part needs
    args = ["--grid", "K=64,128", "--set", "steps=2", "--set", "eval_size=16", "--out", str(out)]
    assert script.main(args) == 0
    table = pd.read_csv(out)
    assert list(table.K) == [64, 128] and (table.step == 2).all() and {"icl_acc", "iwl_iid_acc", "match"} <= set(table.columns)
    config = preset("cpu-reddy").override(K=64, eval_size=16)  # each IWL accuracy beside its baselines
    pool = training_pool(config.task, config.train.seed)
    levels = iwl_baselines(config.task, pool, make_eval_sets(config.task, pool, config.train.seed))
    assert table.iloc[0][list(levels)].to_dict() == pytest.approx(levels) and "iwl_iid_copy_else_prior" in capsys.readouterr().out
    assert script.main(["--grid", "K=63", "--out", str(tmp_path / "bad.csv")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "K=63 must be a multiple of L=32" in error and not (tmp_path / "bad.csv").exists()
