"""Task, model and training configs: one frozen dataclass each, validated on construction.

A run's saved ``config.json`` is exactly ``RunConfig.to_dict()``; ``RunConfig.from_dict`` reads it
back. Every field has a one-line doc (the ``#:`` comment above it), as TransformerLens does for
``HookedTransformerConfig``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin

from icl_mech.errors import ConfigError

Burstiness = Literal["bursty", "iid", "no_repeats"]
BURSTINESS_MODES = ("bursty", "iid", "no_repeats")
#: Sequence formats: "paired" puts item and label in one token; "interleaved" (Reddy 2024) gives
#: each its own token, x_1, l_1, ..., x_n, l_n, x_q, so reading the context takes an induction head.
FORMATS = ("paired", "interleaved")
OPTIMIZERS = ("sgd", "adam")
#: ModelConfig.attention: the transformer's own attention, or the theory's reduced network.
ATTENTIONS = ("full", "reduced")
#: Sub-circuits that TrainConfig.frozen can hold at their initial weights.
FREEZABLE = ("attn", "mlp")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


class _ConfigDict:
    """``to_dict`` / ``from_dict`` round trip shared by the three configs."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(values) - known)
        _require(
            not unknown,
            f"unknown {cls.__name__} field(s) {unknown}; expected some of {sorted(known)}",
        )
        hints = typing.get_type_hints(cls)
        for name, value in values.items():
            expected = _expected_kind(hints[name])
            _require(expected is None or expected[0](value), f"{name} must be {expected and expected[1]}, got {value!r}")
        try:
            return cls(**values)
        except TypeError as error:
            raise ConfigError(f"{cls.__name__}: {error}") from None


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


_KINDS = {
    int: (_is_integer, "an integer"),
    float: (_is_number, "a number"),
    bool: (lambda value: isinstance(value, bool), "true or false"),
    str: (lambda value: isinstance(value, str), "a string"),
}


def _expected_kind(hint: Any) -> tuple[Callable[[Any], bool], str] | None:
    """A test of a field's value against its annotation and what to call it in an error, so that
    ``--set lr=fast`` is refused by name; None for the fields ``__post_init__`` checks itself."""
    if get_origin(hint) is Literal:
        return _KINDS[str]
    if hint in _KINDS:
        return _KINDS[hint]
    options = get_args(hint)
    if type(None) in options and len(options) == 2:  # X | None
        (inner,) = (option for option in options if option is not type(None))
        test, name = _KINDS[inner]
        return (lambda value: value is None or test(value)), f"{name} or None"
    return None


def _can_equalize(n_items: int, n_labels: int) -> bool:
    """Whether ``n_items`` context items can show every label equally often: a multiple of L,
    or fewer than L (then each its own label, as in Reddy's no-repeats contexts)."""
    return n_items % n_labels == 0 or n_items < n_labels


#: Reddy (2024)'s two more evaluation sets, made when ``TaskConfig.reddy_eval_sets`` is on: ICL
#: with the labels of training classes swapped, IWL on classes drawn at random.
REDDY_EVAL_SETS = ("icl_swap", "iwl_iid")


@dataclass(frozen=True)
class TaskConfig(_ConfigDict):
    """The synthetic in-context classification task (PAPER.md, "paired" format)."""

    #: Task diversity: number of training items. None means infinite (fresh items every sequence).
    K: int | None = 1024
    #: Tokens per sequence: N - 1 context (item, label) tokens, then the query token.
    N: int = 20
    #: Item dimension; items are drawn from N(0, I_D / D).
    D: int = 63
    #: Number of labels; the K items (classes) carry them in equal numbers. L = 2 is read out by
    #: one logit under the logistic loss, L > 2 by L logits under softmax cross-entropy
    #: (icl_mech.readout).
    L: int = 2
    #: Within-item noise: each occurrence is (x + epsilon * N(0, I/D)) / sqrt(1 + epsilon^2).
    epsilon: float = 0.0
    #: Training contexts. "bursty": drawn with replacement, query forced into the context;
    #: "iid": with replacement, query independent; "no_repeats": without replacement, query independent.
    burstiness: Burstiness = "bursty"
    #: Each context holds equal numbers of every label (the paper's contextual-statistics test).
    equalized: bool = False
    #: Sequences in each fixed evaluation set (train-distribution, ICL and IWL).
    eval_size: int = 2000
    #: "paired" (item and label in one token) or "interleaved" (separate item and label tokens).
    format: str = "paired"
    #: Interleaved only: a bursty context holds (N-1)/B classes, each B times.
    B: int = 1
    #: Interleaved only: probability that a training sequence is bursty (else items are iid).
    p_bursty: float = 1.0
    #: Interleaved only: Zipf exponent of class frequencies, p(class k) ~ (k+1)^-zipf_alpha.
    zipf_alpha: float = 0.0
    #: Interleaved only: the classes of a bursty context carry distinct labels, in training and in
    #: the ICL sets alike (Reddy's ``no_repeats``); non-bursty contexts draw classes freely, as his.
    distinct_labels: bool = False
    #: Also evaluate on Reddy (2024)'s other two sets: "icl_swap" (training classes, their labels
    #: swapped in the context) and "iwl_iid" (classes drawn at random, query's class not forced
    #: into the context). Needs a finite K.
    reddy_eval_sets: bool = False

    def __post_init__(self) -> None:
        _require(_is_integer(self.L) and self.L >= 2, f"L must be an integer >= 2, got {self.L!r}")
        if self.K is not None:
            _require(
                isinstance(self.K, int) and self.K >= 2,
                f"K must be an integer >= 2 or None (infinite), got {self.K!r}",
            )
            _require(
                self.K % self.L == 0,
                f"K={self.K} must be a multiple of L={self.L}: items carry the labels in equal numbers",
            )
            _require(
                self.K >= self.N,
                f"K={self.K} must be >= N={self.N}: the IWL set needs N-1 distinct context items "
                "plus a query absent from them",
            )
        _require(self.N >= 2, f"N must be >= 2 (context plus query), got {self.N!r}")
        _require(self.D >= 1, f"D must be >= 1, got {self.D!r}")
        _require(self.epsilon >= 0, f"epsilon must be >= 0, got {self.epsilon!r}")
        _require(
            self.burstiness in BURSTINESS_MODES,
            f"burstiness must be one of {BURSTINESS_MODES}, got {self.burstiness!r}",
        )
        if self.equalized:
            _require(
                _can_equalize(self.N - 1, self.L),
                f"equalized contexts need N-1={self.N - 1} to be a multiple of L={self.L} or below it "
                "(then every context item has its own label)",
            )
        _require(
            not self.reddy_eval_sets or self.K is not None,
            "reddy_eval_sets needs a finite K: its sets are made of the training classes",
        )
        _require(self.eval_size >= 1, f"eval_size must be >= 1, got {self.eval_size!r}")
        _require(self.format in FORMATS, f"format must be one of {FORMATS}, got {self.format!r}")
        if self.format == "interleaved":
            self._check_interleaved()
        else:
            _require(
                (self.B, self.p_bursty, self.zipf_alpha, self.distinct_labels) == (1, 1.0, 0.0, False),
                "B, p_bursty, zipf_alpha and distinct_labels apply to format='interleaved' only; "
                f"got B={self.B!r}, p_bursty={self.p_bursty!r}, zipf_alpha={self.zipf_alpha!r}, "
                f"distinct_labels={self.distinct_labels!r}",
            )

    def _check_interleaved(self) -> None:
        _require(self.K is not None, "format='interleaved' needs a finite K (a set of training classes)")
        _require(
            isinstance(self.B, int) and self.B >= 1 and (self.N - 1) % self.B == 0,
            f"B must be an integer >= 1 dividing N-1={self.N - 1}, got {self.B!r}",
        )
        classes = (self.N - 1) // self.B
        _require(
            classes >= 2 and _can_equalize(classes, self.L),
            f"(N-1)/B={classes} classes per bursty context must be at least 2 and a multiple of "
            f"L={self.L} or below it: the ICL set gives every label to equally many of them (or "
            "each class its own label)",
        )
        _require(
            not self.distinct_labels or classes <= self.L,
            f"distinct_labels needs at most L={self.L} classes per bursty context, got (N-1)/B={classes}",
        )
        _require(0 <= self.p_bursty <= 1, f"p_bursty must be in [0, 1], got {self.p_bursty!r}")
        _require(self.zipf_alpha >= 0, f"zipf_alpha must be >= 0, got {self.zipf_alpha!r}")

    @property
    def d_token(self) -> int:
        """Width of a token: the item vector followed by the one-hot label."""
        return self.D + self.L

    @property
    def seq_len(self) -> int:
        """Positions per sequence: N paired tokens, or N-1 (item, label) token pairs plus the query."""
        return 2 * self.N - 1 if self.format == "interleaved" else self.N


@dataclass(frozen=True)
class ModelConfig(_ConfigDict):
    """The transformer: a HookedTransformer whose width is the task's token width (D + L)."""

    #: Transformer blocks (the paper's minimal model has one).
    n_layers: int = 1
    #: Attention heads per block; d_head = d_model / n_heads.
    n_heads: int = 1
    #: Hidden width of each block's ReLU MLP.
    d_mlp: int = 512
    #: Drop the MLPs (attention-only transformer).
    attn_only: bool = False
    #: Attention logits are q.k / attn_scale; the paper uses 1.0 (no 1/sqrt(d_head)).
    attn_scale: float = 1.0
    #: "full": the transformer's attention; "reduced": the theory's reduced network, the same MLP
    #: on the query plus a scalar match sharpness beta and readout w over the context's labels
    #: (icl_mech.theory.reduced_network; one block, paired format, L = 2).
    attention: str = "full"

    def __post_init__(self) -> None:
        _require(self.attention in ATTENTIONS, f"attention must be one of {ATTENTIONS}, got {self.attention!r}")
        _require(
            self.attention == "full" or (self.n_layers, self.n_heads, self.attn_only) == (1, 1, False),
            "attention='reduced' is one block with one head and an MLP (the MLP is the theory's phi); got "
            f"n_layers={self.n_layers!r}, n_heads={self.n_heads!r}, attn_only={self.attn_only!r}",
        )
        _require(self.n_layers >= 1, f"n_layers must be >= 1, got {self.n_layers!r}")
        _require(self.n_heads >= 1, f"n_heads must be >= 1, got {self.n_heads!r}")
        _require(self.d_mlp >= 1, f"d_mlp must be >= 1, got {self.d_mlp!r}")
        _require(self.attn_scale > 0, f"attn_scale must be > 0, got {self.attn_scale!r}")


@dataclass(frozen=True)
class TrainConfig(_ConfigDict):
    """Optimisation, evaluation cadence and checkpoint schedule."""

    #: Optimizer steps in the run.
    steps: int = 6000
    #: Sequences per step.
    batch_size: int = 128
    #: "sgd" (plain, as the paper) or "adam".
    optimizer: str = "adam"
    #: Learning rate.
    lr: float = 1e-3
    #: Weight decay of every parameter outside attention (MLP, LayerNorms, unembedding).
    weight_decay: float = 0.0
    #: Weight decay of attention parameters (the paper raises it to 3e-3 to show transience).
    weight_decay_attn: float = 0.0
    #: Evaluate on the fixed sets every this many steps (and at every checkpoint).
    eval_every: int = 100
    #: Checkpoints at 0, 1, 2, 4, ... below this, then every this many steps, and at the end.
    checkpoint_every: int = 250
    #: Stop early once ICL accuracy reaches this (None: never).
    stop_icl_acc: float | None = None
    #: Stop early once IWL accuracy and train loss have set no new best over this many steps, a
    #: multiple of eval_every (None: never). The whole rule is in icl_mech/stopping.py.
    stop_plateau_steps: int | None = None
    #: Plateau: over stop_plateau_steps, best IWL accuracy rose and best train loss fell (relative) by less than this.
    stop_plateau_tol: float = 0.01
    #: A plateau ends the run only with IWL accuracy at least this (not the chance plateau before ICL).
    stop_plateau_iwl_acc: float = 0.8
    #: Seed of the items, evaluation sets, data order and initialisation.
    seed: int = 0
    #: Sub-circuits kept at their initial weights ("attn", "mlp"): the kinetics probe retrains
    #: with one of them frozen and compares the other's learning curve.
    frozen: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _require(self.steps >= 0, f"steps must be >= 0, got {self.steps!r}")
        _require(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size!r}")
        _require(
            self.optimizer in OPTIMIZERS,
            f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}",
        )
        _require(self.lr > 0 and math.isfinite(self.lr), f"lr must be > 0, got {self.lr!r}")
        _require(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay!r}")
        _require(
            self.weight_decay_attn >= 0,
            f"weight_decay_attn must be >= 0, got {self.weight_decay_attn!r}",
        )
        _require(self.eval_every >= 1, f"eval_every must be >= 1, got {self.eval_every!r}")
        _require(
            self.checkpoint_every >= 1,
            f"checkpoint_every must be >= 1, got {self.checkpoint_every!r}",
        )
        if self.stop_icl_acc is not None:
            _require(
                0 < self.stop_icl_acc <= 1,
                f"stop_icl_acc must be in (0, 1] or None, got {self.stop_icl_acc!r}",
            )
        if self.stop_plateau_steps is not None:
            _require(
                self.stop_plateau_steps > 0 and self.stop_plateau_steps % self.eval_every == 0,
                f"stop_plateau_steps must be a positive multiple of eval_every ({self.eval_every}) "
                f"or None, got {self.stop_plateau_steps!r}",
            )
        _require(self.stop_plateau_tol >= 0, f"stop_plateau_tol must be >= 0, got {self.stop_plateau_tol!r}")
        _require(
            0 <= self.stop_plateau_iwl_acc <= 1,
            f"stop_plateau_iwl_acc must be in [0, 1], got {self.stop_plateau_iwl_acc!r}",
        )
        frozen = (self.frozen,) if isinstance(self.frozen, str) else tuple(self.frozen)
        _require(
            set(frozen) <= set(FREEZABLE),
            f"frozen must hold some of {FREEZABLE}, got {self.frozen!r}",
        )
        object.__setattr__(self, "frozen", frozen)  # JSON gives a list; keep equality with tuples


_SECTIONS = {"task": TaskConfig, "model": ModelConfig, "train": TrainConfig}


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run; saved as the run directory's config.json."""

    #: The task sampled for training and evaluation.
    task: TaskConfig = field(default_factory=TaskConfig)
    #: The HookedTransformer's shape.
    model: ModelConfig = field(default_factory=ModelConfig)
    #: Optimisation and checkpointing.
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        _require(
            self.model.attention == "full" or (self.task.format, self.task.L) == ("paired", 2),
            "attention='reduced' reads one label +1/-1 per paired token: it needs format='paired' and L=2, "
            f"got format={self.task.format!r}, L={self.task.L!r}",
        )

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {name: getattr(self, name).to_dict() for name in _SECTIONS}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        _require(
            isinstance(values, dict) and set(values) <= set(_SECTIONS),
            f"a run config is a mapping with sections {sorted(_SECTIONS)}, got {values!r}",
        )
        return cls(**{name: kind.from_dict(values.get(name, {})) for name, kind in _SECTIONS.items()})

    def override(self, **values: Any) -> RunConfig:
        """A copy with fields replaced by bare name (``K=64, lr=0.1``), whichever section holds them."""
        sections = {name: getattr(self, name).to_dict() for name in _SECTIONS}
        for key, value in values.items():
            owners = [name for name, fields in sections.items() if key in fields]
            _require(
                bool(owners),
                f"unknown config field {key!r}; expected one of "
                f"{sorted(k for fields in sections.values() for k in fields)}",
            )
            sections[owners[0]][key] = value
        return RunConfig.from_dict(sections)


def parse_value(text: str) -> Any:
    """A command-line value as the config expects it: int, float, bool, None/inf, else the string."""
    lowered = text.strip().lower()
    if lowered in ("none", "null", "inf", "infinite"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
