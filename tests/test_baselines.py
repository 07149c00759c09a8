"""What an IWL accuracy has to beat (icl_mech.baselines): chance, the label prior, copying."""

import dataclasses

import pytest
import torch

from icl_mech import TaskConfig
from icl_mech.baselines import iwl_baselines, prior_label, set_baselines
from icl_mech.presets import preset
from icl_mech.sampler import Batch, make_eval_sets, training_pool


def test_baselines_of_a_written_out_set_are_its_prior_label_and_copy_rates():
    task = TaskConfig(format="interleaved", K=8, N=3, D=4, L=4, B=1, zipf_alpha=2.0, eval_size=4)
    pool = training_pool(task, seed=0)
    assert prior_label(task, pool) == 0  # label 0 holds ranks 0 and 4: 1 + 1/25 of the mass
    ids = torch.tensor([[5, -1, 2, -1, 5], [5, -1, 2, -1, 7], [1, -1, 3, -1, 6], [4, -1, 0, -1, 0]])
    batch = Batch(torch.zeros(4, 5, 8), torch.tensor([0, 1, 0, 2]), ids, torch.zeros(4, 5, dtype=torch.long))
    assert set_baselines(task, pool, batch) == {
        "chance": 0.25, "label_prior": 0.5, "copy_if_present": 0.5, "copy_else_prior": 0.75,
    }


def test_uniform_classes_give_chance_as_label_prior_and_copying_only_on_the_random_class_set():
    task = dataclasses.replace(preset("cpu-reddy").task, K=1024, eval_size=4000)
    pool = training_pool(task, seed=0)
    levels = iwl_baselines(task, pool, make_eval_sets(task, pool, seed=0))
    assert levels["chance"] == 1 / 32
    assert levels["iwl_label_prior"] == pytest.approx(1 / 32, abs=0.01)
    assert levels["iwl_copy_if_present"] == 0 and levels["iwl_copy_else_prior"] == levels["iwl_label_prior"]
    assert levels["iwl_iid_copy_if_present"] == pytest.approx(1 - (1 - 1 / 1024) ** 8, abs=0.01)


def test_under_zipf_two_the_label_prior_alone_answers_most_of_the_random_class_set():
    task = dataclasses.replace(preset("cpu-reddy").task, K=1024, zipf_alpha=2.0, eval_size=3000)
    pool = training_pool(task, seed=0)
    levels = iwl_baselines(task, pool, make_eval_sets(task, pool, seed=0))
    ranks = torch.arange(task.K) + 1.0
    mass = (ranks[:: task.L] ** -2).sum() / (ranks**-2).sum()  # label 0's: ranks 0, 32, 64, ...
    assert levels["iwl_iid_label_prior"] == pytest.approx(mass.item(), abs=0.025)  # 0.61
    assert levels["iwl_iid_copy_else_prior"] > levels["iwl_iid_label_prior"] + 0.1
