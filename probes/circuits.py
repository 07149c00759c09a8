"""Which hook points make up a named sub-circuit ("induction", "mlp", ...).

A circuit is a list of ``Site``s: a hook name, plus a head index when the site is one attention
head's output (``blocks.L.attn.hook_z`` holds every head separately, so any set of heads in any
layers can be ablated alone), or plus the senders whose contribution to it is replaced when the
site is a path (an edge into an MLP: what the MLP reads from them, nothing else). ``CIRCUITS`` maps each circuit name to the function that finds its
sites in a model; the names, which are the ``--circuit`` choices of the commands, are
``probes.circuit_names.CIRCUIT_NAMES`` (a parser imports no torch), so a new circuit is one new
name there and its finder here.

Detected heads must reach ``DETECTION_THRESHOLD`` on their score. In the interleaved format the
score marks whether the circuit has formed at all (before the jump, the best "induction" head is
any head at all, often layer 0's previous-token head), so a detection that finds none refuses
(``BelowThreshold``, one line naming the best head and its score) unless the caller asks for the
best head anyway (``best_below_threshold``), which then warns naming it. In the paired format the
circuit is the one layer's attention, and a working head's match score spreads over the copies
of the query's item (the shipped transient run: 0.19 at ICL accuracy 0.88), so there the best
head is taken, with the same warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformer_lens import HookedTransformer
from transformer_lens.utilities import get_act_name

from icl_mech.errors import ConfigError, RunError
from icl_mech.sampler import Batch
from probes.circuit_names import CIRCUIT_NAMES, Head
from probes.head_scores import HEAD_SCORES
from probes.interleaved_scores import INTERLEAVED_SCORES, label_tokens

#: Heads whose score reaches this count as part of a detected circuit.
DETECTION_THRESHOLD = 0.5


@dataclass(frozen=True)
class Site:
    """One activation an ablation replaces: a whole hook, or one head's slice of ``hook_z``."""

    #: TransformerLens hook name, e.g. ``blocks.0.attn.hook_z`` or ``blocks.0.hook_mlp_out``.
    hook_name: str
    #: Head index for ``hook_z`` sites (dimension -2 of the activation); None for a whole hook.
    head: int | None = None
    #: For a path site: the hooks whose contribution to ``hook_name`` (a ``hook_mlp_in``) is
    #: replaced, the rest of it kept; empty for an ordinary site.
    senders: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.senders:
            return f"{self.hook_name} <- {' + '.join(self.senders)}"
        return self.hook_name if self.head is None else f"{self.hook_name}[head {self.head}]"


def head_sites(model: HookedTransformer, heads: Sequence[Head]) -> list[Site]:
    """The ``hook_z`` sites of ``heads``, checked against the model's shape."""
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    for layer, head in heads:
        if not (0 <= layer < n_layers and 0 <= head < n_heads):
            raise ConfigError(
                f"head {layer}.{head} does not exist: the model has {n_layers} layer(s) of {n_heads} head(s)"
            )
    return [Site(get_act_name("z", layer), head) for layer, head in heads]


class BelowThreshold(RunError):
    """No head of the searched layers reaches the detection threshold: the circuit is not found.
    Carries the best head and its score, for a caller that takes it anyway."""

    def __init__(self, score: str, threshold: float, layers: Sequence[int], best: Head, best_score: float):
        self.best, self.best_score = best, best_score
        self.summary = (
            f"no head in layer(s) {', '.join(map(str, layers))} reaches {score} score {threshold} "
            f"(the best: head {best[0]}.{best[1]}, {best_score:.2f})"
        )
        super().__init__(
            f"{self.summary}: the circuit has not formed in this checkpoint; name its heads with "
            "--heads LAYER.HEAD, or take the best with --best-below-threshold"
        )


class BelowThresholdWarning(UserWarning):
    """The best head was taken although it does not reach the detection threshold."""


def detect_heads(
    model: HookedTransformer,
    batch: Batch,
    score: str,
    threshold: float = DETECTION_THRESHOLD,
    layers: Sequence[int] | None = None,
) -> list[Head]:
    """Heads (of ``layers``, default all) whose ``HEAD_SCORES[score]`` (or ``INTERLEAVED_SCORES``)
    on ``batch`` reaches ``threshold``; ``BelowThreshold`` if none does."""
    scores = {**HEAD_SCORES, **INTERLEAVED_SCORES}[score](model, batch)
    layers = range(model.cfg.n_layers) if layers is None else layers
    outside = torch.ones(len(scores), dtype=torch.bool)
    outside[list(layers)] = False
    scores[outside] = -torch.inf
    found = (scores >= threshold).nonzero().tolist()
    if not found:
        best = divmod(int(scores.argmax()), model.cfg.n_heads)
        raise BelowThreshold(score, threshold, layers, best, scores[best].item())
    return [(layer, head) for layer, head in found]


def detected_or_best(
    model: HookedTransformer, batch: Batch, score: str, layers: Sequence[int], best_below_threshold: bool
) -> list[Head]:
    """``detect_heads``, or, when none reaches the threshold and ``best_below_threshold``, the
    best head, with a ``BelowThresholdWarning`` naming it and its score."""
    try:
        return detect_heads(model, batch, score, layers=layers)
    except BelowThreshold as below:
        if not best_below_threshold:
            raise
        warnings.warn(f"{below.summary}; taking it", BelowThresholdWarning, stacklevel=2)
        return [below.best]


def induction_sites(
    model: HookedTransformer, batch: Batch, heads: Sequence[Head] | None, best_below_threshold: bool = False
) -> list[Site]:
    """The heads that read the label of the query's item from the context: the named ``heads``,
    or those detected by their induction score on ``batch`` (attention from the query to where
    the context shows its item's label; the match score on a paired batch). In the interleaved
    format they are searched above layer 0, which holds the previous-token head the induction
    head reads from."""
    if heads:
        return head_sites(model, heads)
    if not label_tokens(batch).any():  # paired: the one layer's attention (module docstring)
        return head_sites(model, detected_or_best(model, batch, "induction", range(model.cfg.n_layers), True))
    if model.cfg.n_layers < 2:
        raise RunError("the interleaved induction circuit needs two layers or more; this model has one")
    above_first = range(1, model.cfg.n_layers)
    return head_sites(model, detected_or_best(model, batch, "induction", above_first, best_below_threshold))


def previous_token_sites(
    model: HookedTransformer, batch: Batch, heads: Sequence[Head] | None, best_below_threshold: bool = False
) -> list[Site]:
    """The heads that let each label token carry the item before it (the first half of the
    interleaved format's induction circuit): the named ``heads``, or those detected by their
    label previous-token score on ``batch`` below the last layer (their output must reach a
    later layer's keys)."""
    if heads:
        return head_sites(model, heads)
    if not label_tokens(batch).any():
        raise RunError("the previous-token circuit exists in interleaved runs only (this run is paired)")
    if model.cfg.n_layers < 2:
        raise RunError("the previous-token circuit needs two layers or more; this model has one")
    below_last = range(model.cfg.n_layers - 1)
    return head_sites(model, detected_or_best(model, batch, "label_previous_token", below_last, best_below_threshold))


def _check_mlp(model: HookedTransformer, heads: Sequence[Head] | None, circuit: str) -> None:
    if heads:
        raise ConfigError(f"--heads selects attention heads; the {circuit} circuit is every MLP layer")
    if model.cfg.attn_only:
        raise RunError(f"the {circuit} circuit does not exist: this run's model is attention-only")


def mlp_sites(
    model: HookedTransformer, batch: Batch, heads: Sequence[Head] | None, best_below_threshold: bool = False
) -> list[Site]:
    """Every MLP layer's output (the memorizing path)."""
    _check_mlp(model, heads, "mlp")
    return [Site(get_act_name("mlp_out", layer)) for layer in range(model.cfg.n_layers)]


def memorization_path_sites(
    model: HookedTransformer, batch: Batch, heads: Sequence[Head] | None, best_below_threshold: bool = False
) -> list[Site]:
    """What every MLP reads directly from the token's own input (``blocks.0.hook_resid_pre``,
    carried to it by the residual stream): in one layer, the MLP computes
    MLP(LN2(resid_pre[other] + attn_out)) while its attention input and the bypass stay intact."""
    _check_mlp(model, heads, "memorization-path")
    embedding = get_act_name("resid_pre", 0)
    return [Site(get_act_name("mlp_in", layer), senders=(embedding,)) for layer in range(model.cfg.n_layers)]


def icl_path_sites(
    model: HookedTransformer, batch: Batch, heads: Sequence[Head] | None, best_below_threshold: bool = False
) -> list[Site]:
    """What every MLP reads directly from the attention outputs of its own and earlier layers
    (``blocks.l.hook_attn_out``): in one layer, MLP(LN2(resid_pre + attn_out[other])), the head's
    output kept on the residual stream that bypasses the MLP."""
    _check_mlp(model, heads, "icl-path")
    return [
        Site(get_act_name("mlp_in", layer), senders=tuple(get_act_name("attn_out", l) for l in range(layer + 1)))
        for layer in range(model.cfg.n_layers)
    ]


CircuitFinder = Callable[[HookedTransformer, Batch, Sequence[Head] | None, bool], list[Site]]

#: Circuit name -> function(model, batch used for detection, heads named by the user, whether to
#: take the best head when none reaches the threshold) -> sites.
CIRCUITS: dict[str, CircuitFinder] = dict(
    zip(
        CIRCUIT_NAMES,
        (induction_sites, mlp_sites, previous_token_sites, memorization_path_sites, icl_path_sites),
        strict=True,
    )
)


def circuit_sites(
    name: str,
    model: HookedTransformer,
    batch: Batch,
    heads: Sequence[Head] | None = None,
    best_below_threshold: bool = False,
) -> list[Site]:
    """The sites of circuit ``name`` in ``model`` (``best_below_threshold``: module docstring)."""
    if name not in CIRCUITS:
        raise ConfigError(f"unknown circuit {name!r}; expected one of {sorted(CIRCUITS)}")
    return CIRCUITS[name](model, batch, heads, best_below_threshold)
