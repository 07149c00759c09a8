"""One vectorized sampler for every kind of sequence: training, ICL evaluation, IWL evaluation.

The kinds differ only by arguments: which item pool the context is drawn from, whether it is
drawn with replacement, and where the query comes from. Whole batches are made with tensor ops
from a seeded ``torch.Generator``, on that generator's device: a CUDA generator with a pool
resident on the GPU samples there, with no host-device copy per step, and a CPU generator gives
the same stream as it always has. There is no per-sequence Python loop.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from functools import cached_property
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from icl_mech.config import REDDY_EVAL_SETS, TaskConfig

#: Where the query item comes from: forced into the context ("in_context", redrawn from the
#: context when the uniform draw misses it), kept out of it ("absent"), or drawn independently.
#: In the interleaved format "in_context" makes a sequence bursty with probability
#: ``task.p_bursty``: (N-1)/B classes, each B times, the query one of them; the other sequences
#: draw their items iid and the query independently.
QueryMode = Literal["in_context", "absent", "independent"]

#: How TaskConfig.burstiness draws training contexts.
TRAINING_MODES: dict[str, dict] = {
    "bursty": {"replacement": True, "query": "in_context"},
    "iid": {"replacement": True, "query": "independent"},
    "no_repeats": {"replacement": False, "query": "independent"},
}

_STREAMS = ("items", "eval", "train", "init")


def stream_seed(seed: int, stream: str) -> int:
    """An independent, reproducible seed for one random stream of a run (items, eval, train, init)."""
    return int(np.random.SeedSequence([seed, _STREAMS.index(stream)]).generate_state(1)[0])


def stream_generator(seed: int, stream: str, device: str | torch.device = "cpu") -> torch.Generator:
    """A generator for one random stream of a run, on ``device``. CPU and CUDA generators are
    different algorithms, so a seed's CUDA stream is its own (reproducible, not the CPU one)."""
    return torch.Generator(device=device).manual_seed(stream_seed(seed, stream))


def _one_hot(labels: Int[Tensor, "*shape"], n_labels: int) -> Float[Tensor, "*shape n_labels"]:
    """``F.one_hot(labels, n_labels).float()`` as one comparison: the same values, without the
    range checks that read the labels' min and max back to the host (on the CPU), so a step that
    makes tokens never waits on a value (``icl_mech.graphs``; tests/graph_emulation.py)."""
    return (labels[..., None] == torch.arange(n_labels, device=labels.device)).float()


@dataclass(frozen=True)
class ItemPool:
    """A fixed set of items and their labels (the K training items, or K brand-new ones)."""

    vectors: Float[Tensor, "K D"]
    labels: Int[Tensor, " K"]
    #: L, the number of labels (the one-hot width), even if a small pool does not use them all.
    n_labels: int

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device | str) -> ItemPool:
        return ItemPool(self.vectors.to(device), self.labels.to(device), self.n_labels)

    @cached_property
    def context_tokens(self) -> Float[Tensor, "K d_token"]:
        """Each item's paired context token (item, one-hot label), made once per pool so a batch's
        tokens are one gather instead of a gather, a one-hot and a concatenation per step."""
        return torch.cat([self.vectors, _one_hot(self.labels, self.n_labels)], dim=-1)


@dataclass(frozen=True)
class Batch:
    """Sequences ready for the model, with what probes need to know about every position."""

    #: Model input: context tokens (item, one-hot label), then the query (item, zeros).
    #: Interleaved: item tokens (item, zeros) and label tokens (zeros, one-hot label) alternate,
    #: x_1, l_1, ..., x_n, l_n, then the query x_q.
    tokens: Float[Tensor, "batch pos d_token"]
    #: The query's label, the training target.
    targets: Int[Tensor, " batch"]
    #: Which item sits at each position: an index into the pool (for K=None, into the sequence's
    #: own fresh items). The last position is the query. Interleaved: -1 on label tokens, whose
    #: item is the token just before them.
    item_ids: Int[Tensor, "batch pos"]
    #: The label of the item at each position (the query's true label at the last one);
    #: interleaved: the label a label token shows, and the label of an item token's item. In a
    #: swapped-label set (``sample_batch``'s ``swap_labels``) the labels the sequence shows.
    labels: Int[Tensor, "batch pos"]

    def __len__(self) -> int:
        return len(self.targets)

    def to(self, device: torch.device | str) -> Batch:
        return Batch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def __getitem__(self, index: slice | Tensor) -> Batch:
        return Batch(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


def make_pool(n_items: int, task: TaskConfig, generator: torch.Generator) -> ItemPool:
    """``n_items`` items from N(0, I/D) with exactly ``n_items / L`` items carrying each label."""
    device = generator.device
    vectors = torch.randn(n_items, task.D, generator=generator, device=device) / math.sqrt(task.D)
    balanced = torch.arange(n_items, device=device) % task.L
    labels = balanced[torch.randperm(n_items, generator=generator, device=device)]
    return ItemPool(vectors, labels, task.L)


def _draw_distinct(
    n_seq: int, n_choices: int, n_draws: int, generator: torch.Generator
) -> Int[Tensor, "n_seq n_draws"]:
    """For each sequence, ``n_draws`` distinct indices below ``n_choices``, in random order."""
    return torch.rand(n_seq, n_choices, generator=generator, device=generator.device).topk(n_draws, dim=1).indices


def _weighted_draw(
    rows: Float[Tensor, "n_seq n_choices"], n_draws: int, replacement: bool, generator: torch.Generator
) -> Int[Tensor, "n_seq n_draws"]:
    """``torch.multinomial(rows, n_draws, replacement, generator=generator)``, the same numbers
    from the same generator draws, and never waiting for the device.

    For one draw, or draws without replacement, ``multinomial`` checks the weights (no inf, nan or
    negative entries, no zero row) by reading values back to the host, which a CUDA graph cannot
    record; then it samples as below (the exponential race: ``argmax`` or ``topk`` of w / q with
    q ~ Exp(1); ATen's ``multinomial_out``, torch 2.13). Our weights are Zipf frequencies, valid by
    construction, so the race is run here without the check. Draws with replacement of more than
    one item take ``multinomial``'s own kernel, which reads nothing back."""
    if replacement and n_draws > 1:
        return torch.multinomial(rows, n_draws, replacement=True, generator=generator)
    scores = rows / torch.empty_like(rows).exponential_(1, generator=generator)
    return scores.argmax(dim=-1, keepdim=True) if n_draws == 1 else scores.topk(n_draws, dim=-1).indices


def _draw(
    n_seq: int,
    n_choices: int,
    n_draws: int,
    replacement: bool,
    generator: torch.Generator,
    weights: Float[Tensor, "*rows n_choices"] | None = None,
) -> Int[Tensor, "n_seq n_draws"]:
    """Indices below ``n_choices``, uniform or (interleaved Zipf classes) in proportion to
    ``weights``, one row of weights for all sequences or one per sequence."""
    if weights is not None:
        return _weighted_draw(weights.expand(n_seq, n_choices), n_draws, replacement, generator)
    if replacement:
        return torch.randint(n_choices, (n_seq, n_draws), generator=generator, device=generator.device)
    return _draw_distinct(n_seq, n_choices, n_draws, generator)


def _context_ids(
    task: TaskConfig,
    pool: ItemPool,
    n_seq: int,
    n_ctx: int,
    replacement: bool,
    generator: torch.Generator,
    weights: Float[Tensor, " K"] | None = None,
    equalize: bool = False,
) -> Int[Tensor, "n_seq n_ctx"]:
    """``n_ctx`` pool indices per sequence; with ``equalize``, equal numbers of each label (or,
    with fewer items than labels, a different label for each)."""
    if not equalize:
        return _draw(n_seq, len(pool), n_ctx, replacement, generator, weights)
    by_label = torch.argsort(pool.labels, stable=True).reshape(task.L, -1)
    if n_ctx < task.L:  # each item its own label (Reddy's no-repeats contexts), its class by weights
        labels = _draw_distinct(n_seq, task.L, n_ctx, generator)
        within = None if weights is None else weights[by_label[labels]].flatten(0, 1)
        columns = _draw(n_seq * n_ctx, by_label.shape[1], 1, True, generator, within).reshape(n_seq, n_ctx)
        return by_label[labels, columns]
    per_label = n_ctx // task.L
    label_weights = None if weights is None else weights[by_label].repeat(n_seq, 1)
    draws = _draw(n_seq * task.L, by_label.shape[1], per_label, replacement, generator, label_weights)
    label_rows = torch.arange(task.L, device=generator.device).repeat(n_seq)[:, None]
    ids = by_label[label_rows, draws].reshape(n_seq, n_ctx)
    shuffle = torch.rand(n_seq, n_ctx, generator=generator, device=generator.device).argsort(dim=1)
    return ids.gather(1, shuffle)


def _query_ids(
    ids: Int[Tensor, "n_seq n_ctx"],
    n_items: int,
    query: QueryMode,
    generator: torch.Generator,
    weights: Float[Tensor, " K"] | None = None,
) -> Int[Tensor, " n_seq"]:
    """Query items drawn from the pool (uniformly, or by ``weights``), then forced into or out of
    the context. "in_context" keeps a uniform draw that lands in the context and otherwise picks a
    context position uniformly, so in a bursty context (each class B times) the query is uniform
    among its classes, whatever their frequencies; its callers pass no weights."""
    n_seq, n_ctx = ids.shape
    drawn = _draw(n_seq, n_items, 1, True, generator, weights)[:, 0]
    if query == "in_context":
        pick = torch.randint(n_ctx, (n_seq, 1), generator=generator, device=generator.device)
        from_context = ids.gather(1, pick)[:, 0]
        return torch.where((ids == drawn[:, None]).any(dim=1), drawn, from_context)
    if query == "absent":
        clash = (ids == drawn[:, None]).any(dim=1)
        while clash.any():  # rounds of vectorized redraws; n_ctx < n_items so this ends fast
            drawn[clash] = _draw(int(clash.sum()), n_items, 1, True, generator, weights)[:, 0]
            clash = (ids == drawn[:, None]).any(dim=1)
    return drawn


def _fresh_sequences(
    task: TaskConfig, n_seq: int, query: QueryMode, generator: torch.Generator
) -> tuple[Float[Tensor, "n_seq pos D"], Int[Tensor, "n_seq pos"], Int[Tensor, "n_seq pos"]]:
    """K = infinity: every sequence gets its own new items (all distinct) and random labels."""
    n_ctx, device = task.N - 1, generator.device
    vectors = torch.randn(n_seq, task.N, task.D, generator=generator, device=device) / math.sqrt(task.D)
    labels = torch.randint(task.L, (n_seq, task.N), generator=generator, device=device)
    if task.equalized:
        balanced = torch.arange(n_ctx, device=device) % task.L
        shuffle = torch.rand(n_seq, n_ctx, generator=generator, device=device).argsort(dim=1)
        labels[:, :n_ctx] = balanced[shuffle]
    item_ids = torch.arange(task.N, device=device).repeat(n_seq, 1)
    if query == "in_context":
        item_ids[:, -1] = torch.randint(n_ctx, (n_seq,), generator=generator, device=device)
        take = item_ids[..., None].expand(-1, -1, task.D)
        vectors, labels = vectors.gather(1, take), labels.gather(1, item_ids)
    return vectors, labels, item_ids


def class_ranks(pool: ItemPool) -> Int[Tensor, " K"]:
    """Each class's frequency rank (0: the most frequent), laid out so the rank-r class carries
    label r mod L, as Reddy's class k carries label k mod L.

    Pool labels are a random balanced permutation (kept so every paired and uniform run draws the
    same stream); ranking the j-th class of label l at j * L + l makes the labels' Zipf masses
    exactly his (the classes themselves are exchangeable draws, so which one holds a rank is
    immaterial)."""
    by_label = torch.argsort(pool.labels, stable=True).reshape(pool.n_labels, -1)
    rank_of = torch.arange(len(pool), device=pool.labels.device).reshape(-1, pool.n_labels).T
    return torch.empty_like(pool.labels).scatter_(0, by_label.flatten(), rank_of.flatten())


def class_weights(task: TaskConfig, pool: ItemPool) -> Float[Tensor, " K"] | None:
    """Unnormalized Zipf frequencies of the interleaved format's classes, (rank + 1)^-alpha by
    ``class_ranks``; None (uniform draws) when alpha is 0."""
    if task.format != "interleaved" or task.zipf_alpha == 0:
        return None
    return (class_ranks(pool) + 1.0) ** -task.zipf_alpha


def _bursty_ids(
    task: TaskConfig, pool: ItemPool, n_seq: int, generator: torch.Generator
) -> Int[Tensor, "n_seq N"]:
    """Interleaved bursty sequences: (N-1)/B distinct classes drawn by the class frequencies (with
    ``task.distinct_labels``, each its own label; with ``task.equalized``, labels balanced), each
    B times in random order, and the query one of them, uniformly whatever their frequencies
    (Reddy's rule: a frequent class is no likelier to be asked than a rare one in its context)."""
    n_ctx, weights = task.N - 1, class_weights(task, pool)
    equalize = task.equalized or task.distinct_labels
    classes = _context_ids(task, pool, n_seq, n_ctx // task.B, False, generator, weights, equalize)
    order = torch.rand(n_seq, n_ctx, generator=generator, device=generator.device).argsort(dim=1)
    context = classes.repeat_interleave(task.B, dim=1).gather(1, order)
    query = _query_ids(context, len(pool), "in_context", generator)
    return torch.cat([context, query[:, None]], dim=1)


def _pool_ids(
    task: TaskConfig,
    pool: ItemPool,
    n_seq: int,
    replacement: bool,
    query: QueryMode,
    generator: torch.Generator,
) -> Int[Tensor, "n_seq N"]:
    """Pool indices of the context items, then the query's, for either format."""
    if task.format == "interleaved" and query == "in_context":
        is_bursty = torch.rand(n_seq, generator=generator, device=generator.device) < task.p_bursty
        bursty = _bursty_ids(task, pool, n_seq, generator)
        if task.p_bursty >= 1:  # decided from the config, not the draw: no host sync on a GPU
            return bursty
        iid = _pool_ids(task, pool, n_seq, True, "independent", generator)
        return torch.where(is_bursty[:, None], bursty, iid)
    weights = class_weights(task, pool)
    context = _context_ids(task, pool, n_seq, task.N - 1, replacement, generator, weights, task.equalized)
    return torch.cat([context, _query_ids(context, len(pool), query, generator, weights)[:, None]], 1)


def _interleave(
    task: TaskConfig,
    vectors: Float[Tensor, "n_seq N D"],
    labels: Int[Tensor, "n_seq N"],
    item_ids: Int[Tensor, "n_seq N"],
) -> Batch:
    """Split every context (item, label) pair into an item token and a label token: x_1, l_1, ...,
    x_n, l_n, x_q. The label token is the paired format's label part on its own."""
    items = F.pad(vectors, (0, task.L))
    label_tokens = F.pad(_one_hot(labels[:, :-1], task.L), (task.D, 0))
    tokens = torch.cat([torch.stack([items[:, :-1], label_tokens], 2).flatten(1, 2), items[:, -1:]], 1)
    no_item = torch.full_like(item_ids[:, :-1], -1)
    ids = torch.cat([torch.stack([item_ids[:, :-1], no_item], 2).flatten(1, 2), item_ids[:, -1:]], 1)
    position_labels = torch.cat([labels[:, :-1].repeat_interleave(2, dim=1), labels[:, -1:]], 1)
    return Batch(tokens, labels[:, -1], ids, position_labels)


def sample_batch(
    task: TaskConfig,
    pool: ItemPool | None,
    n_seq: int,
    generator: torch.Generator,
    *,
    replacement: bool,
    query: QueryMode,
    swap_labels: bool = False,
) -> Batch:
    """``n_seq`` sequences whose context items come from ``pool`` (None: fresh items per sequence).

    ``replacement`` draws context items with replacement (repeats allowed); ``query`` says where
    the query item comes from (see ``QueryMode``). ``swap_labels`` relabels each sequence's items
    consistently, label l -> (l + r) mod L with r drawn from 1..L-1 per sequence, so the context
    contradicts what the weights learnt and the target is the label the context shows (Reddy
    2024's second ICL test).
    """
    if pool is None:
        vectors, labels, item_ids = _fresh_sequences(task, n_seq, query, generator)
    else:
        item_ids = _pool_ids(task, pool, n_seq, replacement, query, generator)
        labels = pool.labels.take(item_ids)
        if swap_labels:
            shift = torch.randint(1, task.L, (n_seq, 1), generator=generator, device=generator.device)
            labels = (labels + shift) % task.L
        elif task.format == "paired" and task.epsilon == 0:
            tokens = F.embedding(item_ids, pool.context_tokens)
            tokens[:, -1, task.D :] = 0.0  # the query's label is what is asked
            return Batch(tokens, labels[:, -1], item_ids, labels)
        # F.embedding is the same gather as pool.vectors[item_ids], 15x faster on CPU (benchmarks/).
        vectors = F.embedding(item_ids, pool.vectors)
    if task.epsilon > 0:
        noise = torch.randn(vectors.shape, generator=generator, device=generator.device) / math.sqrt(task.D)
        vectors = (vectors + task.epsilon * noise) / math.sqrt(1 + task.epsilon**2)
    if task.format == "interleaved":
        return _interleave(task, vectors, labels, item_ids)
    label_part = _one_hot(labels, task.L)
    label_part[:, -1] = 0.0
    return Batch(torch.cat([vectors, label_part], dim=-1), labels[:, -1], item_ids, labels)


def training_pool(task: TaskConfig, seed: int) -> ItemPool | None:
    """The run's K training items (None when K is infinite)."""
    return None if task.K is None else make_pool(task.K, task, stream_generator(seed, "items"))


def eval_set_names(task: TaskConfig) -> tuple[str, ...]:
    """The names of a run's evaluation sets, in the order they are made and logged."""
    return ("train", "icl", "iwl") + (REDDY_EVAL_SETS if task.reddy_eval_sets else ())


def make_eval_sets(task: TaskConfig, pool: ItemPool | None, seed: int) -> dict[str, Batch]:
    """The run's fixed evaluation sets, the same for every checkpoint of a seed.

    - ``train``: the training distribution (held-out draws of it).
    - ``icl``: brand-new items (classes) with random balanced labels, query in the context: only
      reading the context solves it. Interleaved: every sequence bursty, uniform over the new
      classes, its labels by the training contexts' rule (``task.distinct_labels``: each class its
      own label; otherwise as the classes carry them), except that a context of at least L
      classes gets every label on equally many of them, so that counting labels does not help
      (the L = 2 runs of docs/INTERLEAVED.md).
    - ``iwl``: training items, context without repeats and the query absent from it: only
      memorization solves it.

    With ``task.reddy_eval_sets``, also Reddy (2024)'s other two (made after the three above, so
    those stay the same draws):

    - ``icl_swap``: training classes drawn as in ``icl`` (query in the context; interleaved:
      bursty, labels by ``icl``'s rule, by the Zipf weights if any), every label swapped consistently in
      the sequence (``sample_batch``'s ``swap_labels``); the target is the swapped label, so
      weights alone answer wrong and only the context answers right.
    - ``iwl_iid``: training classes drawn at random (by the Zipf weights, if any) for the context
      and the query alike, so the query's class is in the context only by chance.
    """
    generator = stream_generator(seed, "eval")
    new_items = None if task.K is None else make_pool(task.K, task, generator)
    n = task.eval_size
    icl_task = swap_task = task
    if task.format == "interleaved":
        balanced = task.equalized or (task.N - 1) // task.B >= task.L
        swap_task = dataclasses.replace(task, p_bursty=1.0, equalized=balanced)
        icl_task = dataclasses.replace(swap_task, zipf_alpha=0.0)
    sets = {
        "train": sample_batch(task, pool, n, generator, **TRAINING_MODES[task.burstiness]),
        "icl": sample_batch(icl_task, new_items, n, generator, replacement=True, query="in_context"),
        "iwl": sample_batch(task, pool, n, generator, replacement=False, query="absent"),
    }
    if task.reddy_eval_sets:
        sets["icl_swap"] = sample_batch(
            swap_task, pool, n, generator, replacement=True, query="in_context", swap_labels=True
        )
        iid_task = dataclasses.replace(task, equalized=False)
        sets["iwl_iid"] = sample_batch(iid_task, pool, n, generator, replacement=True, query="independent")
    return sets
