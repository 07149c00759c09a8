"""The interleaved format of the one sampler: x_1, l_1, ..., x_n, l_n, x_q."""

import pytest
import torch

from icl_mech import TaskConfig
from icl_mech.errors import ConfigError
from icl_mech.sampler import TRAINING_MODES, class_ranks, make_eval_sets, sample_batch, stream_generator, training_pool
from probes.interleaved_scores import label_previous_token_chance, query_label_positions

TASK = TaskConfig(K=512, N=9, format="interleaved", B=2, epsilon=0.1, eval_size=500)


def context_ids(batch) -> torch.Tensor:
    """Class ids of the context items (every other token, before the query)."""
    return batch.item_ids[:, :-1:2]


@pytest.fixture(scope="module")
def pool():
    return training_pool(TASK, seed=0)


@pytest.fixture(scope="module")
def eval_sets(pool):
    return make_eval_sets(TASK, pool, seed=0)


def test_items_and_labels_alternate_as_separate_tokens_and_the_query_comes_last(eval_sets):
    batch = eval_sets["train"]
    assert batch.tokens.shape == (500, 2 * TASK.N - 1, TASK.D + TASK.L)
    is_label = batch.item_ids == -1
    assert is_label[:, 1:-1:2].all() and not is_label[:, ::2].any()
    item_part, label_part = batch.tokens[..., : TASK.D], batch.tokens[..., TASK.D :]
    assert (item_part[is_label] == 0).all() and (label_part[~is_label] == 0).all()
    assert torch.equal(label_part[:, 1::2].argmax(-1), batch.labels[:, 1::2])
    # each label token shows the label of the item just before it, the target is the query's
    assert torch.equal(batch.labels[:, 1::2], batch.labels[:, 0:-1:2])
    assert torch.equal(batch.targets, batch.labels[:, -1])


def test_bursty_contexts_hold_each_class_exactly_b_times_and_the_query_among_them(pool):
    task = TaskConfig(K=512, N=13, format="interleaved", B=3)
    batch = sample_batch(task, pool, 1000, stream_generator(0, "train"), **TRAINING_MODES["bursty"])
    ids = context_ids(batch)
    counts = (ids[:, :, None] == ids[:, None, :]).sum(dim=2)
    assert (counts == 3).all()
    assert (ids == batch.item_ids[:, -1:]).any(dim=1).all()


def test_p_bursty_sets_the_fraction_of_bursty_training_sequences(pool):
    task = TaskConfig(K=512, N=9, format="interleaved", B=4, p_bursty=0.3)
    batch = sample_batch(task, pool, 4000, stream_generator(0, "train"), **TRAINING_MODES["bursty"])
    ids = context_ids(batch)
    bursty = (ids[:, :, None] == ids[:, None, :]).sum(dim=2).eq(4).all(dim=1)
    assert bursty.float().mean().item() == pytest.approx(0.3, abs=0.03)


def test_non_bursty_training_rarely_shows_the_query_in_context(pool):
    task = TaskConfig(K=512, N=9, format="interleaved", B=2, p_bursty=0.0)
    batch = sample_batch(task, pool, 4000, stream_generator(0, "train"), **TRAINING_MODES["bursty"])
    in_context = (context_ids(batch) == batch.item_ids[:, -1:]).any(dim=1).float().mean().item()
    assert in_context == pytest.approx(1 - (1 - 1 / 512) ** 8, abs=0.01)


def test_zipf_alpha_makes_class_frequency_fall_as_a_power_of_rank():
    task = TaskConfig(K=512, N=9, format="interleaved", B=2, p_bursty=0.0, zipf_alpha=1.0)
    pool = training_pool(task, seed=0)
    batch = sample_batch(task, pool, 20000, stream_generator(0, "train"), **TRAINING_MODES["bursty"])
    counts = torch.bincount(batch.item_ids[batch.item_ids >= 0], minlength=512).float()
    by_rank = counts[torch.argsort(class_ranks(pool))]
    assert by_rank[0] / by_rank[9] == pytest.approx(10.0, rel=0.15)


def test_icl_set_uses_new_classes_with_every_label_on_equally_many_context_classes(pool, eval_sets):
    icl = eval_sets["icl"]
    items = icl.tokens[:, ::2, : TASK.D].reshape(-1, TASK.D)
    assert torch.cdist(items[:2000], pool.vectors).min() > 0.05
    context_labels = icl.labels[:, 0:-1:2]
    assert (context_labels.sum(dim=1) == context_labels.shape[1] // 2).all()
    assert (context_ids(icl) == icl.item_ids[:, -1:]).any(dim=1).all()


def test_iwl_set_keeps_the_query_class_out_of_a_context_without_repeats(eval_sets):
    ids = context_ids(eval_sets["iwl"])
    assert not (ids == eval_sets["iwl"].item_ids[:, -1:]).any()
    ordered = ids.sort(dim=1).values
    assert (ordered[:, 1:] != ordered[:, :-1]).all()


def test_query_label_positions_are_the_label_tokens_after_the_query_item(eval_sets):
    batch = eval_sets["icl"]
    shown = query_label_positions(batch)
    assert (shown.sum(dim=1) == TASK.B).all()
    rows, cols = shown.nonzero(as_tuple=True)
    assert torch.equal(batch.item_ids[rows, cols - 1], batch.item_ids[rows, -1])
    assert 0 < label_previous_token_chance(batch) < 0.5


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"B": 3}, "dividing N-1"),
        ({"L": 3, "K": 512}, "multiple of L=3"),
        ({"L": 1}, "L must be an integer >= 2"),
        ({"B": 8}, "at least 2"),
        ({"L": 4, "N": 13, "B": 2}, "multiple of L=4 or below it"),
        ({"K": None}, "finite K"),
        ({"p_bursty": 1.5}, "p_bursty"),
        ({"distinct_labels": True}, r"distinct_labels needs at most L=2 classes per bursty context, got \(N-1\)/B=4"),
    ],
)
def test_invalid_interleaved_settings_name_the_field(fields, message):
    with pytest.raises(ConfigError, match=message):
        TaskConfig(**{"K": 512, "N": 9, "format": "interleaved", "B": 2, **fields})


def test_interleaved_only_fields_are_refused_in_the_paired_format():
    with pytest.raises(ConfigError, match="format='interleaved' only"):
        TaskConfig(K=512, N=9, B=2)
