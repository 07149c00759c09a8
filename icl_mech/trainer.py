"""Training: the readout's loss on the query logits (``icl_mech.readout``), dense checkpoints,
evaluation, resume.

The loop is the only place that trains; it knows nothing of plotting or the command line.
Order at every step t: evaluate (at eval steps) -> checkpoint (at checkpoint steps) -> update.
So the metrics and the checkpoint of step t both describe the model after t updates, and the
data of update t+1 comes from the generator state saved with checkpoint t.
The run directory is locked by the process training it (``icl_mech.lock``), from before its
first write to the end, so it has one writer. Its files are written by a background thread
(``icl_mech.writer``) from snapshots, in the loop's order; on CUDA the update and the evaluation
pass run as CUDA graphs (``icl_mech.graphs``), and the host waits for the device only to read
metrics at evaluation steps.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from icl_mech import storage
from icl_mech.checkpointing import checkpoint_write, load_optimizer_state, restore
from icl_mech.config import RunConfig, TrainConfig
from icl_mech.devices import current, resolve_device
from icl_mech.errors import RunError, TrainingStopped, WriteError
from icl_mech.graphs import captures, replayable
from icl_mech.live_log import live_logs
from icl_mech.lock import LOCK, DirectoryLock
from icl_mech.model import build_model, query_logits
from icl_mech.readout import loss_and_accuracy
from icl_mech.run import Run, load_run
from icl_mech.sampler import (
    TRAINING_MODES,
    Batch,
    ItemPool,
    make_eval_sets,
    sample_batch,
    stream_generator,
    training_pool,
)
from icl_mech.stopping import stop_reason
from icl_mech.theory.residual import item_queries, mlp_residual, target_residual
from icl_mech.theory.residual_columns import IWL_RESIDUAL, RESIDUALS
from icl_mech.writer import BackgroundWriter

#: Fields a resumed run may change: it can be trained longer, or stopped by another rule.
RESUMABLE_CHANGES = ("steps", "stop_icl_acc", "stop_plateau_steps", "stop_plateau_tol", "stop_plateau_iwl_acc")


def checkpoint_steps(total: int, every: int) -> list[int]:
    """0, 1, 2, 4, ... (log-spaced) below ``every``, then every ``every`` steps, and ``total``."""
    log_spaced = [0] + [2**i for i in range(every.bit_length()) if 2**i < min(every, total + 1)]
    return sorted(set(log_spaced) | set(range(0, total + 1, every)) | {total})


@torch.no_grad()
def evaluate(model: HookedTransformer, batch: Batch) -> tuple[float, float]:
    """Loss and accuracy of the query prediction on a whole evaluation set."""
    loss, accuracy = loss_and_accuracy(query_logits(model, batch.tokens), batch.targets)
    return loss.item(), accuracy.item()


def make_optimizer(
    named_parameters: Iterable[tuple[str, Tensor]], train: TrainConfig, capturable: bool = False
) -> torch.optim.Optimizer:
    """SGD or Adam with one weight decay for attention parameters and another for the rest.

    Takes ``model.named_parameters()``, or an ensemble's stacked parameters under the same names
    (every update rule here acts elementwise, so one optimizer over stacked parameters updates each
    member exactly as its own optimizer would). Parameters of the sub-circuits in ``train.frozen``
    are left out, so they keep their initial weights. ``capturable`` keeps Adam's step count on
    the device, as a CUDA graph of the update needs (``icl_mech.graphs``).
    """
    groups: dict[bool, list[Tensor]] = {True: [], False: []}
    for name, parameter in named_parameters:
        frozen = any(f".{circuit}." in name for circuit in train.frozen)
        if parameter.requires_grad and not frozen:
            groups[".attn." in name].append(parameter)
    param_groups = [
        {"params": groups[True], "weight_decay": train.weight_decay_attn},
        {"params": groups[False], "weight_decay": train.weight_decay},
    ]
    # fused: one pass over each parameter per update instead of a Python loop over parameters
    # (the default on CPU) or one pass per arithmetic op (foreach); same update rule. Adam's
    # update is memory-bound, so on CPU this is 4x faster, most visible in ensembles.
    if train.optimizer == "sgd":
        return torch.optim.SGD(param_groups, lr=train.lr, fused=True)
    return torch.optim.Adam(param_groups, lr=train.lr, fused=True, capturable=capturable)


def _check_run_dir(config: RunConfig, run_dir: Path, resume: bool) -> bool | None:
    """Whether ``run_dir`` may be trained into, reading only: True when there is state to resume,
    False for a new run, None when the run is already finished."""
    if (blocking := storage.blocking_file(run_dir)) is not None:
        raise RunError(f"{run_dir} cannot be a run directory: {blocking} is a file; choose another --out")
    config_path = run_dir / storage.CONFIG
    if config_path.exists():
        if not resume:
            raise RunError(f"{run_dir} already holds a run; pass --resume to continue it, or another --out")
        saved = RunConfig.from_dict(storage.read_json(config_path))
        kept = {name: getattr(config.train, name) for name in RESUMABLE_CHANGES}
        if saved.override(**kept) != config:
            differing = [
                f"{section}.{key}"
                for section, values in config.to_dict().items()
                for key, value in values.items()
                if saved.to_dict()[section][key] != value and key not in RESUMABLE_CHANGES
            ]
            raise RunError(f"cannot resume {run_dir}: its saved config differs in {differing}")
        storage.read_json_lines(run_dir / storage.METRICS)  # a damaged log is refused here, not truncated
    elif run_dir.exists() and any(path.name != LOCK for path in run_dir.iterdir()):
        raise RunError(f"{run_dir} exists and is not a run directory; choose another --out")
    status = storage.ended_status(run_dir)
    if status is not None and _finished(config, status, run_dir):
        return None
    has_state = (run_dir / storage.RESUME).exists()
    if not has_state and storage.checkpointed_steps(run_dir):
        raise RunError(
            f"{run_dir} has checkpoints but no {storage.RESUME} to continue from "
            "(shipped reference runs keep only their checkpoints); train into another --out"
        )
    return has_state


def _finished(config: RunConfig, status: dict, run_dir: Path) -> bool:
    """Whether a run whose status.json is ``status`` has nothing left to train under ``config``:
    it reached ``steps``, or the stopping rule ended it and still ends it at that step (a resume
    may change the rule, or turn it off, and then the run goes on)."""
    if status["last_step"] >= config.train.steps:
        return True
    if not status["stopped_early"]:
        return False
    history = [row for row in storage.read_json_lines(run_dir / storage.METRICS) if row["step"] <= status["last_step"]]
    return stop_reason(history, config.train) is not None


def _lock_run_dir(config: RunConfig, run_dir: Path, resume: bool, locks: ExitStack) -> bool | None:
    """Check ``run_dir`` (before writing anything, so a refused run changes nothing), lock it for
    this process until ``locks`` closes, and check again under the lock (another writer may have
    changed it meanwhile). Returns what ``_check_run_dir`` does. A finished run is left as it
    is, unlocked: nothing will be written to it (shipped runs stay untouched)."""
    if _check_run_dir(config, run_dir, resume) is None:
        return None
    locks.enter_context(DirectoryLock(run_dir))
    return _check_run_dir(config, run_dir, resume)


def _write_run_dir(config: RunConfig, run_dir: Path, metrics: list[dict]) -> None:
    """The run's config, its checkpoint folder and its metrics up to the step training starts
    from."""
    with storage.naming_write_failures(run_dir / storage.CHECKPOINTS):
        (run_dir / storage.CHECKPOINTS).mkdir(exist_ok=True)
    storage.write_json(run_dir / storage.CONFIG, config.to_dict())
    storage.atomic_write(run_dir / storage.METRICS, "".join(json.dumps(row) + "\n" for row in metrics).encode())


@dataclass
class Member:
    """One run directory being trained, and where it stands. ``train`` trains one member;
    ``icl_mech.ensemble.train_ensemble`` trains several in lockstep through the same loop."""

    config: RunConfig
    run_dir: Path
    #: The live model: checkpoints and evaluations read it (in an ensemble its parameters are
    #: views into the stacked ones the optimizer updates).
    model: HookedTransformer
    pool: ItemPool | None
    eval_sets: dict[str, Batch]
    data_rng: torch.Generator
    #: Step of the saved state training continues from (0 for a new run).
    start: int
    #: The start step's metrics and checkpoint are already on disk.
    resumed: bool
    #: Metrics rows written so far (the stopping rule reads them).
    history: list[dict] = field(default_factory=list)
    #: Why the run ended before its steps (``icl_mech.stopping.stop_reason``), or None.
    stop_reason: str | None = None
    done: bool = False

    @property
    def stopped_early(self) -> bool:
        """The stopping rule ended the run before its steps."""
        return self.stop_reason is not None


@dataclass
class Stepping:
    """How the loop updates the members it steps together: one optimizer over their parameters,
    one loss for one batch per member whose gradient is each member's own, and the optimizer
    ``state_dict`` of the member at a position among them (saved with its checkpoints)."""

    optimizer: torch.optim.Optimizer
    loss_of: Callable[[list[Batch]], Tensor]
    state_of: Callable[[int], dict]


#: Builds the Stepping of members from their optimizer ``state_dict``s (None or empty: a new run),
#: with a ``capturable`` optimizer for CUDA graphs; called again with the members still training
#: when some stop, where the update is not captured.
StepTogether = Callable[[list[Member], list[dict | None], bool], Stepping]


def open_member(
    config: RunConfig, run_dir: Path, device: torch.device, resume: bool, locks: ExitStack
) -> tuple[Member, dict | None] | None:
    """Lock and prepare ``run_dir`` for training: the member and the optimizer state to restore
    (None for a new run), or None when a resumed run has nothing left to train. The lock is held
    until ``locks`` closes: another process trying to train the run meanwhile is refused."""
    has_state = _lock_run_dir(config, run_dir, resume, locks)
    if has_state is None:
        return None
    # Items and evaluation sets come from CPU streams, so a seed's sets are the same on every
    # device; training batches are drawn where the model is, from a generator there.
    pool = training_pool(config.task, config.train.seed)
    eval_sets = {k: v.to(device) for k, v in make_eval_sets(config.task, pool, config.train.seed).items()}
    pool = None if pool is None else pool.to(device)
    model = build_model(config, device)
    data_rng = stream_generator(config.train.seed, "train", device)
    start, optimizer_state = restore(run_dir, model, data_rng) if has_state else (0, None)
    metrics = storage.read_json_lines(run_dir / storage.METRICS)
    kept_rows = [row for row in metrics if has_state and row["step"] <= start]
    _write_run_dir(config, run_dir, kept_rows)
    member = Member(config, run_dir, model, pool, eval_sets, data_rng, start, has_state, kept_rows)
    return member, optimizer_state


def residual_items(member: Member) -> tuple[Tensor, Tensor] | None:
    """The query tokens and labels of a member's K training items, over which its evaluation logs
    c1, the MLP's residual (``icl_mech.theory.residual``), and beside it the IWL-set residual;
    None where there are no residuals to log:
    K = infinity (no items to memorize) or the interleaved format (its query token carries a
    position, so the attention-free path is not the paired model's phi)."""
    if member.pool is None or member.config.task.format != "paired":
        return None
    return item_queries(member.pool), member.pool.labels


class _Evaluation:
    """Every member's loss and accuracy on each of its evaluation sets at one step, and the
    residuals c1 and iwl_residual where the member has training items (``residual_items``), read
    back to the host in one transfer.
    On CUDA the pass over all members is one captured graph (the sets never change, so the graph's
    inputs are fixed); elsewhere only the members asked for are evaluated."""

    def __init__(self, members: list[Member], device: torch.device, capture: bool):
        self.members = members
        self.items = [residual_items(member) for member in members]
        self.columns = [f"{name}_{what}" for name in members[0].eval_sets for what in ("loss", "acc")]
        if any(items is not None for items in self.items):
            self.columns.extend(RESIDUALS)
        self.captured = captures(device, capture)
        self._output: dict[str, Tensor] = {}
        if self.captured:
            self._evaluate_all = replayable(lambda: self._output.update(all=self._metrics(range(len(members)))), device)

    @torch.no_grad()
    def _metrics(self, indices: Iterable[int]) -> Float[Tensor, "members columns"]:
        rows = []
        for index in indices:
            member, items = self.members[index], self.items[index]
            logits = {name: query_logits(member.model, batch.tokens) for name, batch in member.eval_sets.items()}
            values = [
                value for name, batch in member.eval_sets.items() for value in loss_and_accuracy(logits[name], batch.targets)
            ]
            if IWL_RESIDUAL in self.columns:  # NaN for a member without items, dropped from its row
                if items:
                    values += [mlp_residual(member.model, *items), target_residual(logits["iwl"], member.eval_sets["iwl"].targets)]
                else:
                    values += [torch.full((), float("nan"), device=values[0].device)] * len(RESIDUALS)
            rows.append(torch.stack(values))
        return torch.stack(rows)

    def __call__(self, indices: list[int]) -> dict[int, dict[str, float]]:
        """The metrics of the members at ``indices``, by index, as a metrics row holds them."""
        if not indices:
            return {}
        if self.captured:
            self._evaluate_all()
            values = self._output["all"][indices]
        else:
            values = self._metrics(indices)
        rows = {index: dict(zip(self.columns, row)) for index, row in zip(indices, values.tolist())}
        for index, row in rows.items():
            if self.items[index] is None:
                for column in RESIDUALS:
                    row.pop(column, None)
        return rows


def _update(members: list[Member], stepping: Stepping, keep_gradients: bool) -> None:
    """One optimizer update of every member, each on a batch drawn from its own data RNG, with no
    host synchronization (so it can be captured). ``keep_gradients`` zeroes the gradients in place
    instead of freeing them, as a graph, which owns their memory, needs."""
    train_cfg = members[0].config.train
    batches = [
        sample_batch(m.config.task, m.pool, train_cfg.batch_size, m.data_rng, **TRAINING_MODES[m.config.task.burstiness])
        for m in members
    ]
    loss = stepping.loss_of(batches)
    stepping.optimizer.zero_grad(set_to_none=not keep_gradients)
    loss.backward()
    stepping.optimizer.step()


def train_members(
    members: list[Member],
    optimizer_states: list[dict | None],
    step_together: StepTogether,
    *,
    progress: bool = True,
    capture: bool = True,
    log: Sequence[str] = (),
) -> None:
    """The training loop, for one run or an ensemble stepping together.

    Members share the step counter and the schedule (their TrainConfigs differ at most in seed),
    and are updated together as ``step_together`` builds it from their ``optimizer_states``. Each
    step samples one batch per member from its own data RNG. A member that stops early is finished
    and no longer evaluated or saved; the others go on without it (restacked without it; in a
    captured ensemble its update keeps running instead, so the graph stays as recorded and the
    others' step time as it was).

    ``capture`` runs the update and the evaluation pass as CUDA graphs when the members are on
    CUDA (``icl_mech.graphs``); the caller makes their device the current one
    (``icl_mech.devices.current``).

    A member's status.json is removed when training starts (a finished run being continued, an
    interrupted one resumed) and written when it ends. SIGTERM (what Slurm sends before it kills a
    preempted or requeued job) lets the current step finish, saves every member still training at
    the step reached (scheduled or not; no metrics row is added, so a resumed run logs exactly what
    an uninterrupted one does) with an "interrupted" status, and raises ``TrainingStopped``.
    A failed write raises ``WriteError`` saying how to resume; what was written before is intact.

    ``log`` names live logs (``icl_mech.live_log.LOGGERS``) that get every metrics row as it is
    written, each member as a run of its own; one that fails warns and is switched off.
    """
    train_cfg, start = members[0].config.train, members[0].start
    device = torch.device(members[0].model.cfg.device)
    total = train_cfg.steps
    saves = set(checkpoint_steps(total, train_cfg.checkpoint_every))
    evals = set(range(0, total + 1, train_cfg.eval_every)) | saves
    capturing = captures(device, capture)
    stepped = list(members)
    stepping = step_together(stepped, optimizer_states, capturing)
    # after step_together: stacking re-points the members' parameters, and a captured evaluation
    # reads them at the addresses they have when it is recorded
    evaluation = _Evaluation(members, device, capture)
    update: Callable[[], None] | None = None  # recorded at the first update, after step start's saves

    def state_of(member: Member) -> dict:
        return stepping.state_of(stepped.index(member))

    for member in members:
        with storage.naming_write_failures(member.run_dir / storage.STATUS):
            (member.run_dir / storage.STATUS).unlink(missing_ok=True)
    began = time.perf_counter()
    step = start
    name = members[0].run_dir.name if len(members) == 1 else f"ensemble of {len(members)}"
    with tqdm(total=total, initial=start, desc=name, disable=not progress) as bar, \
            _sigterm_requests_stop() as stop_requested, _resume_hint_on_write_failure(members), \
            BackgroundWriter() as writer, live_logs(log, [(m.config, m.run_dir, m.start) for m in members]) as live:
        while True:
            # a resumed member's start step is already recorded (its metrics and checkpoint)
            fresh = [not (member.done or member.resumed and step == start) for member in members]
            metrics = evaluation([index for index in range(len(members)) if fresh[index]]) if step in evals else {}
            rows = {}
            for index, values in metrics.items():
                member, row = members[index], {"step": step, **values}
                member.history.append(row)
                member.stop_reason = stop_reason(member.history, train_cfg) if step < total else None
                rows[member.run_dir / storage.METRICS] = row
                live.log(index, row)
                bar.set_postfix(icl=f"{row['icl_acc']:.2f}", iwl=f"{row['iwl_acc']:.2f}")
            if rows:  # one write for every member's row: 64 queued one by one would fill the writer's queue
                writer.submit(partial(_append_rows, rows))
            for index, member in enumerate(members):
                if member.done:
                    continue
                if fresh[index] and (step in saves or member.stopped_early):
                    writer.submit(
                        checkpoint_write(member.run_dir, step, member.model, state_of(member), member.data_rng)
                    )
                if step >= total or member.stopped_early:
                    member.done = True
                    writer.submit(partial(_write_status, member, step, time.perf_counter() - began, storage.FINISHED))
            if all(member.done for member in members):
                break
            if stop_requested:
                on_disk = step in saves or step == start and members[0].resumed
                _save_and_stop(members, step, on_disk, state_of, writer, time.perf_counter() - began)
            if not capturing and any(member.done for member in stepped):
                still = [member for member in stepped if not member.done]
                stepping = step_together(still, [state_of(member) for member in still], False)
                stepped, update = still, None
            if update is None:
                update = replayable(
                    partial(_update, stepped, stepping, capturing),
                    device,
                    generators=[member.data_rng for member in stepped],
                    parameters=[parameter for group in stepping.optimizer.param_groups for parameter in group["params"]],
                    optimizer=stepping.optimizer,
                    capture=capture,
                )
            update()
            step += 1
            bar.update(1)


@contextmanager
def _sigterm_requests_stop() -> Iterator[list[int]]:
    """While training, SIGTERM appends to the yielded list instead of killing the process; the
    loop checks it between steps. Signals can only be caught in the main thread: elsewhere (a
    notebook's worker thread) SIGTERM keeps its usual meaning."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        yield received
    finally:  # give back the caller's handler (submitit's, in a Slurm job)
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _how_to_resume(members: list[Member]) -> str:
    dirs = [str(member.run_dir) for member in members]
    if len(dirs) == 1:
        return f"continue with: icl-mech train --resume --out {dirs[0]}"
    return f"continue each of {dirs} with icl-mech train --resume --out DIR, or run the same sweep again"


@contextmanager
def _resume_hint_on_write_failure(members: list[Member]) -> Iterator[None]:
    """A WriteError from the loop, with what is kept and how to go on added to its one line."""
    try:
        yield
    except WriteError as error:
        raise WriteError(
            f"{error}; training stopped, and the checkpoints and metrics written before are intact: "
            f"once the cause is gone, {_how_to_resume(members)}"
        ) from None


def _save_and_stop(
    members: list[Member],
    step: int,
    on_disk: bool,
    state_of: Callable[[Member], dict],
    writer: BackgroundWriter,
    seconds: float,
) -> None:
    """Save every unfinished member at ``step`` (unless its checkpoint and resume state there are
    already ``on_disk``) and write its "interrupted" status (so every run of a stopped sweep says
    where it stands), wait for every write, and raise ``TrainingStopped``."""
    for member in members:
        if member.done:
            continue
        if not on_disk:
            writer.submit(checkpoint_write(member.run_dir, step, member.model, state_of(member), member.data_rng))
        writer.submit(partial(_write_status, member, step, seconds, storage.INTERRUPTED))
    writer.flush()
    raise TrainingStopped(f"stopped by SIGTERM at step {step}, saved there; {_how_to_resume(members)}")


def _append_rows(rows: dict[Path, dict]) -> None:
    """Append each metrics row to its log, in order (before any checkpoint of the same step, which
    the writer runs after this: a resumed run takes the rows up to its checkpoint as written)."""
    for path, row in rows.items():
        storage.append_json_line(path, row)


def _write_status(member: Member, step: int, seconds: float, state: str) -> None:
    storage.write_json(
        member.run_dir / storage.STATUS,
        {
            "state": state,
            "last_step": step,
            "stopped_early": member.stopped_early,
            "stop_reason": member.stop_reason,
            "seconds": round(seconds, 3),
            "steps_per_second": round((step - member.start) / seconds, 2) if seconds > 0 else None,
            "device": str(member.model.cfg.device),
        },
    )


def _step_alone(members: list[Member], optimizer_states: list[dict | None], capturable: bool) -> Stepping:
    """One run's Stepping: its own optimizer, and ``query_logits``'s loss on its batch."""
    (member,), (optimizer_state,) = members, optimizer_states
    optimizer = make_optimizer(member.model.named_parameters(), member.config.train, capturable)
    if optimizer_state is not None:
        load_optimizer_state(optimizer, optimizer_state, capturable)

    def loss_of(batches: list[Batch]) -> Tensor:
        (batch,) = batches
        return loss_and_accuracy(query_logits(member.model, batch.tokens), batch.targets)[0]

    return Stepping(optimizer, loss_of, lambda position: optimizer.state_dict())


def train(
    config: RunConfig,
    run_dir: str | Path,
    *,
    device: str = "cpu",
    resume: bool = False,
    progress: bool = True,
    capture: bool = True,
    log: Sequence[str] = (),
) -> Run:
    """Train a run into ``run_dir`` (or continue it with ``resume``) and return it loaded.

    ``resume=True`` continues the run in ``run_dir`` and starts it if there is none (what a sweep
    wants; ``icl-mech train --resume`` requires a run). ``run_dir`` is locked while it trains: a
    second process training it meanwhile gets ``RunLockedError`` naming this one. On CUDA the
    update and the evaluations run as CUDA graphs unless ``capture`` is False (eager, to compare).
    ``log`` sends every metrics row live to TensorBoard and/or W&B (``icl_mech.live_log``).
    """
    torch_device = resolve_device(device)
    with current(torch_device), ExitStack() as locks:
        opened = open_member(config, Path(run_dir), torch_device, resume, locks)
        if opened is not None:
            member, optimizer_state = opened
            train_members([member], [optimizer_state], _step_alone, progress=progress, capture=capture, log=log)
    return load_run(run_dir)
