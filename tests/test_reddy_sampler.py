"""The interleaved sampler follows Reddy (2024)'s generator: the query is uniform among the
context's classes, one label rule serves training and the ICL sets, and class k's Zipf frequency
goes with label k mod L (docs/REDDY.md, "Sampling rules")."""

import dataclasses

import pytest
import torch

from icl_mech.presets import preset
from icl_mech.sampler import TRAINING_MODES, class_ranks, class_weights, make_eval_sets, sample_batch
from icl_mech.sampler import stream_generator, training_pool

CPU_REDDY = preset("cpu-reddy").task


def _context_classes(batch) -> torch.Tensor:
    """Each context's distinct classes, as B equal columns folded: [batch, (N-1)/B]."""
    return batch.item_ids[:, :-1:2].sort(dim=1).values[:, :: CPU_REDDY.B]


def _repeated_label_rate(batch) -> float:
    """The share of contexts in which two of their classes show the same label."""
    labels = batch.labels[:, :-1:2]
    ids = batch.item_ids[:, :-1:2]
    same_label = labels[:, :, None] == labels[:, None, :]
    other_class = ids[:, :, None] != ids[:, None, :]
    return (same_label & other_class).flatten(1).any(dim=1).float().mean().item()


def test_under_zipf_the_query_is_the_contexts_most_frequent_class_no_more_often_than_a_uniform_pick():
    task = dataclasses.replace(CPU_REDDY, zipf_alpha=2.0)
    pool = training_pool(task, seed=0)
    batch = sample_batch(task, pool, 4000, stream_generator(0, "train"), **TRAINING_MODES["bursty"])
    ranks = class_ranks(pool)
    classes = _context_classes(batch)
    assert (classes[:, 1:] != classes[:, :-1]).all()  # 4 distinct classes, twice each
    most_frequent = classes.gather(1, ranks[classes].argmin(dim=1, keepdim=True))[:, 0]
    share = (batch.item_ids[:, -1] == most_frequent).float().mean().item()
    assert share == pytest.approx(1 / classes.shape[1], abs=0.03)  # the Zipf-weighted query gave 0.65


@pytest.mark.parametrize("distinct, rate", [(False, 1 - 31 * 30 * 29 / 32**3), (True, 0.0)])
def test_training_contexts_and_both_icl_sets_share_one_repeated_label_rule(distinct, rate):
    task = dataclasses.replace(CPU_REDDY, K=1024, eval_size=3000, distinct_labels=distinct)
    pool = training_pool(task, seed=0)
    sets = make_eval_sets(task, pool, seed=0)
    train = sample_batch(task, pool, 3000, stream_generator(0, "train"), **TRAINING_MODES["bursty"])
    for name, batch in [("train stream", train), ("train", sets["train"]), ("icl", sets["icl"]), ("icl_swap", sets["icl_swap"])]:
        assert _repeated_label_rate(batch) == pytest.approx(rate, abs=0.025), name  # 0.18: 4 of 32 labels


def test_the_labels_zipf_masses_are_reddys_class_k_label_k_mod_l():
    task = dataclasses.replace(CPU_REDDY, K=512, zipf_alpha=1.0)
    pool = training_pool(task, seed=3)
    ranks = class_ranks(pool)
    assert torch.equal(ranks.sort().values, torch.arange(512))
    assert torch.equal(pool.labels, ranks % task.L)  # the rank-r class carries label r mod L
    masses = torch.zeros(task.L).index_add_(0, pool.labels, class_weights(task, pool))
    reddys = torch.zeros(task.L).index_add_(0, torch.arange(512) % task.L, (torch.arange(512) + 1.0) ** -1.0)
    assert torch.allclose(masses, reddys)
