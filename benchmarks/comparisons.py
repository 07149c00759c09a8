"""The measured comparisons of issues 5 and 19. Each returns a ``Comparison``: what was timed, the
baseline's and our seconds (median over repeats), and the speedup the target asks for.

Sizes are arguments so the smoke test can run everything in seconds; ``python -m benchmarks``
passes the real ones (N=100, batch 128, E=16, 100 checkpoints).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.authors_baseline import authors_steps
from icl_mech.config import RunConfig
from icl_mech.ensemble import StackedMembers, train_ensemble
from icl_mech.model import build_model, full_query_logits, query_logits
from icl_mech.presets import preset
from icl_mech.readout import loss_and_accuracy
from icl_mech.run import load_run
from icl_mech.sampler import TRAINING_MODES, Batch, make_eval_sets, sample_batch, stream_generator, training_pool
from icl_mech.theory.residual import item_queries, mlp_residual
from icl_mech.trainer import evaluate, make_optimizer, train
from probes.head_scores import match_score
from probes.llc import (
    SGLDSettings, devinterp_sampler_llc, estimate_llc, estimate_llcs, llc_run, query_loss, restricted_parameters, run_draw,
    stack_size,
)
from probes.over_time import ablate_run, over_checkpoints


@dataclass(frozen=True)
class Comparison:
    name: str
    baseline: str
    baseline_seconds: float
    ours: str
    ours_seconds: float
    unit: str
    #: The speedup (baseline / ours) the issue asks for.
    target: float

    @property
    def ratio(self) -> float:
        return self.baseline_seconds / self.ours_seconds


#: How time is measured: "wall" (time.perf_counter) or "cpu" (this process's CPU time, which on a
#: machine shared with other jobs counts only our own work; it leaves out time spent waiting on disk).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]


def median_seconds(runs: dict[str, Callable[[], object]], repeats: int, warm_up: bool = True) -> dict[str, float]:
    """Median time of each of ``runs`` over ``repeats`` rounds in which every run takes one turn.

    Taking turns shares the machine's drift between the sides of a ratio: on this VM the same work
    runs 30% slower or faster from one minute to the next, which timing one side's repeats after
    the other's would put into the ratio. ``warm_up`` calls a run once untimed before each of its
    turns, for measurements short enough that the previous turn's cold caches would show."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run_once in runs.items():
            if warm_up:
                run_once()
            began = clock()
            run_once()
            times[name].append(clock() - began)
    return {name: statistics.median(values) for name, values in times.items()}


def _per_step(steps: Iterator[None], n_steps: int) -> Callable[[], None]:
    def run_once() -> None:
        for _ in range(n_steps):
            next(steps)
    return run_once


class LibraryStep:
    """The library's training step (icl_mech.trainer.train_members, without its evaluation and
    checkpoints), split into its phases so the profile can time each: sample a batch, query
    logits and logistic loss, backward, optimizer step."""

    def __init__(self, config: RunConfig, logits_fn=query_logits) -> None:
        self.config = config
        self.logits_fn = logits_fn
        self.pool = training_pool(config.task, config.train.seed)
        self.model = build_model(config)
        self.optimizer = make_optimizer(self.model.named_parameters(), config.train)
        self.data_rng = stream_generator(config.train.seed, "train")

    def sample(self) -> Batch:
        task = self.config.task
        return sample_batch(
            task, self.pool, self.config.train.batch_size, self.data_rng, **TRAINING_MODES[task.burstiness]
        )

    def loss(self, batch: Batch) -> torch.Tensor:
        return loss_and_accuracy(self.logits_fn(self.model, batch.tokens), batch.targets)[0]

    def backward(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()

    def update(self) -> None:
        self.optimizer.step()

    def __call__(self) -> None:
        self.backward(self.loss(self.sample()))
        self.update()


class EnsembleStep(LibraryStep):
    """``train_ensemble``'s step for seeds 0..E-1 of ``config``: one batch per member from its own
    data stream, the members' summed loss through ``StackedMembers``, one optimizer over the stack."""

    def __init__(self, config: RunConfig, n_members: int) -> None:
        self.config = config
        self.members = [LibraryStep(config.override(seed=seed)) for seed in range(n_members)]
        self.stacked = StackedMembers([member.model for member in self.members])
        self.optimizer = make_optimizer(self.stacked.params.items(), config.train)

    def sample(self) -> list[Batch]:
        return [member.sample() for member in self.members]

    def loss(self, batches: list[Batch]) -> torch.Tensor:
        return self.stacked.loss(batches)


def library_steps(config: RunConfig, logits_fn=query_logits) -> Iterator[None]:
    """The library's training step, one per ``next``."""
    step = LibraryStep(config, logits_fn)
    while True:
        step()
        yield


def training_step(n_steps: int, repeats: int, N: int = 100) -> list[Comparison]:
    """Ours vs the authors' loop, and ours vs the HookedTransformer's full forward; per step."""
    config = preset("paper").override(N=N, eval_size=1)  # no evaluation here: skip making the sets
    runs = {
        "authors": _per_step(authors_steps(n_steps * repeats * 2, N=N), n_steps),
        "ours": _per_step(library_steps(config), n_steps),
        "full": _per_step(library_steps(config, full_query_logits), n_steps),
    }
    authors_s, ours_s, full_s = (seconds / n_steps for seconds in median_seconds(runs, repeats).values())
    return [
        Comparison(f"training step, paper preset (N={N}, batch 128)", "authors' loop", authors_s,
                   "icl_mech", ours_s, "ms", 10.0),
        Comparison(f"training step, fast path vs full forward (N={N})", "HookedTransformer forward", full_s,
                   "query_logits", ours_s, "ms", 10.0),
    ]


def ensemble(n_members: int, n_steps: int, repeats: int, **overrides) -> Comparison:
    """E runs trained one after the other with ``train`` vs together with ``train_ensemble``: the
    first ``n_steps`` of the cpu preset (and ``overrides``) with its own evaluation and checkpoint
    schedule, so the fixed costs per run weigh what they weigh in a real sweep's runs."""
    config = preset("cpu").override(steps=n_steps, **overrides)
    configs = [config.override(seed=seed) for seed in range(n_members)]

    def sequential() -> None:
        with tempfile.TemporaryDirectory() as folder:
            for index, member in enumerate(configs):
                train(member, Path(folder) / f"run{index}", progress=False)

    def together() -> None:
        with tempfile.TemporaryDirectory() as folder:
            train_ensemble(configs, [Path(folder) / f"run{i}" for i in range(n_members)], progress=False)

    seconds = median_seconds({"sequential": sequential, "together": together}, repeats, warm_up=False)
    return Comparison(
        f"ensemble E={n_members}, cpu preset's first {n_steps} steps", f"{n_members} sequential runs",
        seconds["sequential"], "train_ensemble", seconds["together"], "s", 4.0,
    )


def probes(n_checkpoints: int, repeats: int, **overrides) -> Comparison:
    """Ablation (attention head, mean) + attention match scores over every checkpoint of a dense
    run, against ten times one evaluation pass (ICL set) per checkpoint."""
    with tempfile.TemporaryDirectory() as folder:
        config = preset("cpu").override(
            steps=n_checkpoints - 1, eval_every=n_checkpoints, checkpoint_every=1, **overrides
        )
        run = train(config, Path(folder) / "dense", progress=False)
        icl_set = run.eval_sets()["icl"]

        def evaluation_passes() -> None:
            for _, model in run.models():
                evaluate(model, icl_set)

        def probe_passes() -> None:
            ablate_run(run, "induction", "mean", progress=False)
            over_checkpoints(run, lambda model: {"match": match_score(model, icl_set).max().item()}, progress=False)

        seconds = median_seconds({"evaluation": evaluation_passes, "probes": probe_passes}, repeats, warm_up=False)
        return Comparison(
            f"probes over {len(run.steps)} checkpoints: ablation + attention scores",
            "10 x one evaluation pass", 10 * seconds["evaluation"], "probes", seconds["probes"], "s", 1.0,
        )


def c1_in_evaluation(repeats: int, **overrides) -> Comparison:
    """The trainer's evaluation (loss and accuracy on the three sets) with and without c1, the
    MLP's residual over the K training items, at the ``cpu`` preset's K by default (4096, the
    largest its transition sweeps use, where c1 costs most). No target: the row says what c1
    costs an evaluation (1 / ratio)."""
    config = preset("cpu").override(**overrides)
    model, pool = build_model(config), training_pool(config.task, config.train.seed)
    eval_sets = make_eval_sets(config.task, pool, config.train.seed)
    queries = item_queries(pool)

    def evaluation() -> None:
        for batch in eval_sets.values():
            evaluate(model, batch)

    def with_c1() -> None:
        evaluation()
        mlp_residual(model, queries, pool.labels).item()

    seconds = median_seconds({"without": evaluation, "with": with_c1}, repeats)
    return Comparison(
        f"evaluation with c1 over K={config.task.K} items (cost: 1/ratio)",
        "without c1", seconds["without"], "with c1", seconds["with"], "s", 0.0,
    )


REFERENCE = Path(__file__).resolve().parents[1] / "checkpoints" / "reference"


def llc_sampler(n_steps: int, repeats: int) -> Comparison:
    """One LLC estimate of the shipped ICL run's last checkpoint (every weight, training data, the
    default chains and batch, ``n_steps`` SGLD steps, no burn-in): devinterp's high-level ``llc()``
    (chains one after the other over a fixed set of 8192 training sequences) against our loop
    (``estimate_llc``: chains vmapped, fresh sequences every step)."""
    run = load_run(REFERENCE / "icl")
    model = run.model()
    settings = SGLDSettings(draws=n_steps, burn_in=0)
    draw = run_draw(run, "train")
    tokens, targets = draw(8192, torch.Generator().manual_seed(0))
    seconds = median_seconds(
        {
            "devinterp": lambda: devinterp_sampler_llc(model, tokens, targets, settings),
            "ours": lambda: estimate_llc(model, query_loss, draw, settings),
        },
        repeats, warm_up=False,
    )
    return Comparison(
        f"LLC, {settings.chains} chains x {n_steps} SGLD steps", "devinterp llc()", seconds["devinterp"],
        "estimate_llc", seconds["ours"], "s", 1.0,
    )


def llc_stacked(settings: SGLDSettings, repeats: int, run_name: str = "icl") -> Comparison:
    """Every checkpoint of a shipped run, whole model, training data: each checkpoint's chains
    alone, one checkpoint after another (``estimate_llc``), against the stacks ``llc_run`` makes
    on this device (``estimate_llcs`` over ``stack_size`` checkpoints at a time), the same
    estimates. No target: the row says what stacking gains at these settings."""
    run = load_run(REFERENCE / run_name)
    models = [run.model(step) for step in run.steps]
    draw, names = run_draw(run, "train"), restricted_parameters(models[0], "full")
    stack = stack_size("cpu", len(models), settings)

    def stacked() -> None:
        for start in range(0, len(models), stack):
            estimate_llcs(models[start : start + stack], query_loss, draw, settings, [names])

    seconds = median_seconds(
        {"loop": lambda: [estimate_llc(model, query_loss, draw, settings, names) for model in models], "stacked": stacked},
        repeats, warm_up=False,
    )
    return Comparison(
        f"LLC, stacked: {run_name}, {len(models)} ckpts, {settings.chains}x{settings.batch_size} seqs, by {stack}",
        "one checkpoint at a time", seconds["loop"], "stacked", seconds["stacked"], "s", 0.0,
    )


def llc_restrictions_in_step(settings: SGLDSettings, repeats: int, run_name: str = "near") -> Comparison:
    """Every checkpoint of a shipped run, training data, the three weight restrictions: sampled one
    restriction after another (each in ``llc_run``'s stacks of checkpoints), against in step with
    each other (``estimate_llcs`` given all three), which draws each step's batches and takes the
    loss at w* on them once for the three. The same estimates."""
    run = load_run(REFERENCE / run_name)
    models = [run.model(step) for step in run.steps]
    draw = run_draw(run, "train")
    restrictions = [restricted_parameters(models[0], name) for name in ("full", "attn", "mlp")]
    stack = stack_size("cpu", len(models), settings)
    stacks = [models[start : start + stack] for start in range(0, len(models), stack)]
    seconds = median_seconds(
        {
            "apart": lambda: [estimate_llcs(chosen, query_loss, draw, settings, [names]) for names in restrictions for chosen in stacks],
            "in_step": lambda: [estimate_llcs(chosen, query_loss, draw, settings, restrictions) for chosen in stacks],
        },
        repeats, warm_up=False,
    )
    return Comparison(
        f"LLC, 3 restrictions in step: {run_name}, {len(models)} ckpts, {settings.chains}x{settings.batch_size} seqs",
        "one restriction at a time", seconds["apart"], "in step", seconds["in_step"], "s", 0.0,
    )


#: The budget of issue 28: one reference run, every checkpoint, three weight restrictions, in a
#: minute on 2 cores.
LLC_BUDGET_SECONDS = 60.0


def llc_reference_run(settings: SGLDSettings = SGLDSettings()) -> Comparison:
    """``llc_run`` with ``settings`` (default: the defaults) on every checkpoint of the shipped
    run with the most checkpoints (reference/near, 18), three restrictions, training data, timed
    once against the one-minute budget."""
    run = load_run(REFERENCE / "near")
    began = clock()
    llc_run(run, settings=settings, progress=False)
    seconds = clock() - began
    return Comparison(
        f"LLC defaults, reference/near: {len(run.steps)} checkpoints x 3 restrictions", "budget",
        LLC_BUDGET_SECONDS, "llc_run", seconds, "s", 1.0,
    )
