import math

import pytest
import torch

from icl_mech import TaskConfig
from icl_mech.sampler import TRAINING_MODES, ItemPool, make_eval_sets, sample_batch, stream_generator, training_pool

TASK = TaskConfig(K=256, N=20, eval_size=500)


def query_in_context(batch) -> torch.Tensor:
    return (batch.item_ids[:, :-1] == batch.item_ids[:, -1:]).any(dim=1)


@pytest.fixture(scope="module")
def pool():
    return training_pool(TASK, seed=0)


@pytest.fixture(scope="module")
def eval_sets(pool):
    return make_eval_sets(TASK, pool, seed=0)


def test_training_items_carry_each_label_exactly_half_the_time(pool):
    assert len(pool) == 256
    assert torch.bincount(pool.labels).tolist() == [128, 128]
    assert pool.vectors.norm(dim=1).mean() == pytest.approx(1.0, abs=0.05)


def test_bursty_training_and_icl_queries_always_occur_in_context(pool, eval_sets):
    batch = sample_batch(TASK, pool, 1000, stream_generator(0, "train"), **TRAINING_MODES["bursty"])
    assert query_in_context(batch).all()
    assert query_in_context(eval_sets["icl"]).all()


def test_iwl_query_never_occurs_in_context_and_context_never_repeats(eval_sets):
    iwl = eval_sets["iwl"]
    assert not query_in_context(iwl).any()
    ids = iwl.item_ids.sort(dim=1).values
    assert (ids[:, 1:] != ids[:, :-1]).all()


def test_iid_queries_fall_outside_the_context_at_the_expected_rate(pool):
    batch = sample_batch(TASK, pool, 4000, stream_generator(1, "train"), **TRAINING_MODES["iid"])
    expected = 1 - (1 - 1 / 256) ** 19  # chance that a uniform item is among 19 draws
    assert query_in_context(batch).float().mean().item() == pytest.approx(expected, abs=0.02)


def test_icl_items_are_disjoint_from_training_items(pool, eval_sets):
    icl_vectors = eval_sets["icl"].tokens[..., : TASK.D].reshape(-1, TASK.D)
    distances = torch.cdist(icl_vectors[:2000], pool.vectors)
    assert distances.min() > 0.1


def test_tokens_hold_item_and_one_hot_label_and_the_query_label_part_is_zero(pool, eval_sets):
    batch = eval_sets["train"]
    labels_part = batch.tokens[..., TASK.D :]
    assert torch.equal(labels_part[:, :-1].argmax(-1), batch.labels[:, :-1])
    assert (labels_part[:, :-1].sum(-1) == 1).all() and (labels_part[:, -1] == 0).all()
    assert torch.equal(batch.tokens[..., : TASK.D], pool.vectors[batch.item_ids])
    assert torch.equal(batch.targets, pool.labels[batch.item_ids[:, -1]])


def test_tokens_keep_one_slot_per_label_when_the_pool_uses_only_one():
    task = TaskConfig(K=8, N=6, eval_size=8)
    one_label_pool = ItemPool(torch.randn(8, task.D), torch.zeros(8, dtype=torch.long), task.L)
    batch = sample_batch(task, one_label_pool, 16, stream_generator(0, "train"), **TRAINING_MODES["bursty"])
    assert batch.tokens.shape[-1] == task.D + task.L
    assert (batch.tokens[:, :-1, task.D] == 1).all() and (batch.tokens[..., task.D + 1] == 0).all()


def test_same_seed_gives_the_same_batch_and_another_seed_does_not(pool):
    def draw(seed):
        return sample_batch(TASK, pool, 64, stream_generator(seed, "train"), **TRAINING_MODES["bursty"])

    assert torch.equal(draw(3).tokens, draw(3).tokens)
    assert not torch.equal(draw(3).tokens, draw(4).tokens)
    assert torch.equal(make_eval_sets(TASK, pool, 5)["icl"].tokens, make_eval_sets(TASK, pool, 5)["icl"].tokens)


@pytest.mark.parametrize("K", [256, None])
def test_equalized_contexts_hold_equal_numbers_of_each_label(K):
    task = TaskConfig(K=K, N=21, equalized=True, eval_size=300)
    sets = make_eval_sets(task, training_pool(task, 0), seed=0)
    for batch in sets.values():
        counts = torch.nn.functional.one_hot(batch.labels[:, :-1], 2).sum(1)
        assert (counts == 10).all()


def test_infinite_K_draws_fresh_distinct_items_with_the_query_among_them():
    task = TaskConfig(K=None, N=20, eval_size=300)
    batch = make_eval_sets(task, None, seed=0)["train"]
    assert query_in_context(batch).all()
    first, second = batch.tokens[0, :-1, : task.D], batch.tokens[1, :-1, : task.D]
    assert torch.cdist(first, second).min() > 0.1  # no item shared between sequences
    assert torch.cdist(first, first).fill_diagonal_(1).min() > 0.1  # nor within one


def test_within_item_noise_perturbs_each_occurrence_and_keeps_the_scale(pool):
    task = TaskConfig(K=256, N=20, epsilon=1.0)
    batch = sample_batch(task, pool, 500, stream_generator(0, "train"), **TRAINING_MODES["bursty"])
    vectors = batch.tokens[..., : task.D]
    clean = pool.vectors[batch.item_ids]
    cosine = torch.nn.functional.cosine_similarity(vectors, clean, dim=-1).mean()
    assert cosine.item() == pytest.approx(1 / math.sqrt(2), abs=0.03)
    assert vectors.norm(dim=-1).mean().item() == pytest.approx(1.0, abs=0.05)
