"""Sweeps: one run directory per point of a grid of config fields, resumable, on local worker
processes or as a Slurm job array.

A sweep directory holds one run directory per grid point (named from its grid values, e.g.
``K64-seed0``) and ``index.csv``: the grid, each run's status (``STATUSES``) and its final
metrics. Running the same sweep again skips finished runs and resumes interrupted ones from their
last checkpoint (``train(..., resume=True)``), so nothing is lost or recomputed. The status of a
run is read from its directory, so the index can be rebuilt any time.

SIGTERM to a local sweep (``timeout``, ``kill``, a batch system ending the job) stops it cleanly:
every worker saves its runs where they stand, the index is written, no process is left behind,
and ``run_sweep`` raises ``TrainingStopped``; the same sweep run again continues to the result of
an uninterrupted one. A worker killed outright (``kill -9``, the out-of-memory killer) costs only
its unit's steps since their last checkpoint: the unit is trained again from there by a new
worker, and the other workers go on. Workers whose sweep process is killed save and exit.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import re
import signal
import traceback
from collections.abc import Iterable, Sequence
from contextlib import ExitStack, suppress
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from icl_mech import storage
from icl_mech.config import RunConfig, parse_value
from icl_mech.ensemble import train_ensemble
from icl_mech.errors import ConfigError, TrainingStopped
from icl_mech.live_log import check_loggers
from icl_mech.lock import DirectoryLock
from icl_mech.sweep_slurm import SlurmUnit, requeues
from icl_mech.sweep_stop import sigterm_blocked, sigterm_recorded, start_worker, stop_received
from icl_mech.threads import available_cores, requested_threads
from icl_mech.trainer import train

INDEX = "index.csv"
#: Written into a run directory when its training raised; removed when the run is retried.
ERROR = "sweep_error.txt"
#: A run's status in the index: not started; started and saved, not finished (stopped by SIGTERM,
#: killed, crashed: it resumes from its last checkpoint); being trained; done; raised an error.
STATUSES = ("pending", "interrupted", "running", "finished", "failed")
#: Final metrics copied into the index.
FINAL_METRICS = ("icl_acc", "iwl_acc", "train_acc")
#: Times a unit's worker process may die under it (killed: ``kill -9``, out of memory) in one sweep
#: command; it is trained again from its checkpoints each time, and recorded failed after the last.
WORKER_DEATHS = 2
#: Seconds a local sweep waits for a unit to end before it looks again for a SIGTERM to pass on to
#: its workers: a run keeps training until then, so a long wait let a short run finish after the stop.
STOP_POLL_S = 0.1

Grid = dict[str, list[Any]]


def parse_grid_values(text: str) -> list[Any]:
    """``"1,2,3"`` (a list), ``"0..7"`` (an inclusive integer range), or ``"64,128,...,4096"``: a
    geometric progression when LAST is FIRST times a power of SECOND/FIRST, otherwise arithmetic
    (so ``10,20,...,40`` is 10, 20, 40; write ``10,20,30,40`` for the arithmetic one)."""
    text = text.strip()
    if match := re.fullmatch(r"(-?\d+)\.\.(-?\d+)", text):
        low, high = int(match[1]), int(match[2])
        if high < low:
            raise ConfigError(f"range {text!r} is empty: expected LOW..HIGH with LOW <= HIGH")
        return list(range(low, high + 1))
    parts = [part.strip() for part in text.split(",")]
    if "..." not in parts:
        if not all(parts):
            raise ConfigError(f"grid values {text!r} hold an empty item; expected a comma list")
        return [parse_value(part) for part in parts]
    first, second, last = (parse_value(parts[i]) for i in (0, 1, -1))
    if parts[2:3] != ["..."] or len(parts) != 4 or not all(isinstance(v, int) for v in (first, second, last)) \
            or not 0 < first < second <= last:
        raise ConfigError(
            f"progression {text!r} must read FIRST,SECOND,...,LAST with increasing positive integers "
            "(e.g. 64,128,...,4096)"
        )
    if second % first == 0:
        geometric = [first * (second // first) ** i for i in range(64) if first * (second // first) ** i <= last]
        if geometric[-1] == last:
            return geometric
    arithmetic = list(range(first, last + 1, second - first))
    if arithmetic[-1] != last:
        raise ConfigError(f"progression {text!r} does not reach {last}: it stops at {arithmetic[-1]}")
    return arithmetic


def parse_grid(specs: Iterable[str]) -> Grid:
    """``["K=64,128", "seed=0..1"]`` -> ``{"K": [64, 128], "seed": [0, 1]}`` (order kept)."""
    grid: Grid = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(f"--grid expects FIELD=VALUES, got {spec!r}")
        if name in grid:
            raise ConfigError(f"--grid names {name!r} twice; give all its values in one --grid")
        grid[name] = parse_grid_values(values)
    return grid


def _format_value(value: Any) -> str:
    if value is None:
        return "inf"
    if isinstance(value, (list, tuple)):
        return "+".join(map(str, value)) or "none"
    return re.sub(r"[^A-Za-z0-9.+-]", "_", str(value))


def point_name(point: dict[str, Any]) -> str:
    """Run directory name of a grid point: ``{"K": 64, "seed": 0}`` -> ``K64-seed0``."""
    return "-".join(f"{name}{_format_value(value)}" for name, value in point.items())


@dataclass(frozen=True)
class SweepPoint:
    """One run of a sweep: its grid values, its full config and where it is trained."""

    #: The grid values of this point, by field name.
    values: dict[str, Any]
    #: The base config with the values applied.
    config: RunConfig
    #: Its run directory (inside the sweep directory).
    run_dir: Path

    @property
    def name(self) -> str:
        return self.run_dir.name


def plan_sweep(base: RunConfig, grid: Grid, out: str | Path) -> list[SweepPoint]:
    """Every point of the grid's Cartesian product; invalid configs fail here, before any training."""
    if not grid:
        raise ConfigError("a sweep needs at least one --grid FIELD=VALUES")
    out = Path(out)
    points = []
    for combination in itertools.product(*grid.values()):
        values = dict(zip(grid, combination))
        try:
            config = base.override(**values)
        except ConfigError as error:
            raise ConfigError(f"grid point {point_name(values)}: {error}") from None
        points.append(SweepPoint(values, config, out / point_name(values)))
    return points


def run_status(point: SweepPoint) -> str:
    """pending (not started), interrupted (saved a resume state and not finished, or finished
    shorter than its config now asks), finished, or failed, read from the run directory."""
    ended = storage.ended_status(point.run_dir)
    if ended is not None and (ended["stopped_early"] or ended["last_step"] >= point.config.train.steps):
        return "finished"
    if (point.run_dir / ERROR).exists():
        return "failed"
    if (point.run_dir / storage.RESUME).exists():
        return "interrupted"
    return "pending"


def _point_record(point: SweepPoint, status: str | None = None) -> dict[str, Any]:
    """A row of the index: grid values, status, last evaluated step and its metrics."""
    rows = storage.read_json_lines(point.run_dir / storage.METRICS)
    last = rows[-1] if rows else {}
    ended = storage.read_json(point.run_dir / storage.STATUS) if (point.run_dir / storage.STATUS).exists() else {}
    error = (point.run_dir / ERROR).read_text().strip().splitlines() if (point.run_dir / ERROR).exists() else []
    status = status or run_status(point)
    if status != "failed":  # e.g. refused while another process trained it, which then finished it
        error = []
    return {
        "run": point.name,
        **{name: _format_value(value) if value is None else value for name, value in point.values.items()},
        "status": status,
        "last_step": last.get("step"),
        **{metric: last.get(metric) for metric in FINAL_METRICS},
        "seconds": ended.get("seconds"),
        "requeues": requeues(point.run_dir),
        "error": error[-1] if error else "",
    }


def write_index(out: Path, points: list[SweepPoint], running: Iterable[str] = ()) -> pd.DataFrame:
    """Write ``index.csv`` for ``points`` (rows of other points already in it are kept)."""
    running = set(running)
    table = pd.DataFrame([_point_record(p, "running" if p.name in running else None) for p in points])
    table["last_step"] = table["last_step"].astype("Int64")
    path = out / INDEX
    if path.exists():
        previous = read_index(out)
        table = pd.concat([previous[~previous.run.isin(table.run)], table], ignore_index=True)
    storage.atomic_write(path, table.to_csv(index=False).encode())
    return table


def read_index(out: str | Path) -> pd.DataFrame:
    """The sweep's ``index.csv``."""
    path = Path(out) / INDEX
    if not path.exists():
        raise ConfigError(f"{path} does not exist: is {out} a sweep directory (icl-mech sweep --out)?")
    table = pd.read_csv(path)
    table["error"] = table["error"].astype("string").fillna("")  # an empty column reads as NaN
    return table


def train_unit(
    configs: list[dict], run_dirs: list[str], device: str, threads: int, capture: bool = True, log: Sequence[str] = ()
) -> list[str]:
    """Train (or resume) the runs of one work unit; a failure is written into its run directory.

    A run stopped by SIGTERM (``TrainingStopped``, not an ``Exception``) is not a failure: it
    propagates, so the worker ends without a result and the run resumes when run again (a Slurm
    requeue runs the same task again). In a local sweep, a SIGTERM recorded before training began
    (``stop_received``) stops the unit here, before it trains.

    One unit is one run, or, with ensembles, several runs of the same shape trained together by
    ``icl_mech.ensemble.train_ensemble``. Top-level so that worker processes and Slurm can run it.
    Trains on ``threads`` torch threads, and gives the caller's thread count back afterwards (a
    unit run in the calling process must not change how everything after it computes).
    ``capture`` and ``log`` as ``train``'s: False runs CUDA steps eagerly (``--eager``); ``log``
    names live logs (TensorBoard, W&B) that get every metrics row.
    """
    dirs = [Path(d) for d in run_dirs]
    if stop_received:
        raise TrainingStopped(f"stopped by SIGTERM before training {[d.name for d in dirs]}")
    callers_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    for run_dir in dirs:
        (run_dir / ERROR).unlink(missing_ok=True)
    try:
        parsed = [RunConfig.from_dict(c) for c in configs]
        if len(parsed) == 1:
            train(parsed[0], dirs[0], device=device, resume=True, progress=False, capture=capture, log=log)
        else:
            train_ensemble(parsed, dirs, device=device, resume=True, progress=False, capture=capture, log=log)
    except Exception:  # any failure is the run's result: recorded, the sweep goes on
        message = traceback.format_exc()
        for run_dir in dirs:
            run_dir.mkdir(parents=True, exist_ok=True)
            storage.atomic_write(run_dir / ERROR, message.encode())
    finally:
        torch.set_num_threads(callers_threads)
    return [str(d) for d in dirs]


def ensemble_shape(config: RunConfig) -> str:
    """What runs trained together must share: their whole config except seed and K (as JSON)."""
    values = config.to_dict()
    values["task"].pop("K")
    values["train"].pop("seed")
    return json.dumps(values, sort_keys=True)


def group_units(points: list[SweepPoint], ensemble: int) -> list[list[SweepPoint]]:
    """Work units: single points, or up to ``ensemble`` points of one shape (``ensemble_shape``)."""
    if ensemble == 1:
        return [[point] for point in points]
    shapes: dict[str, list[SweepPoint]] = {}
    for point in points:
        shapes.setdefault(ensemble_shape(point.config), []).append(point)
    return [group[i : i + ensemble] for group in shapes.values() for i in range(0, len(group), ensemble)]


@dataclass(frozen=True)
class UnitTraining:
    """How every unit of a sweep is trained: ``train_unit``'s arguments besides the unit's own."""

    #: Torch threads of each unit (``run_sweep``'s ``threads`` resolved for the executor).
    threads: int
    device: str = "cpu"
    capture: bool = True
    log: tuple[str, ...] = ()

    def args(self, unit: list[SweepPoint]) -> tuple:
        """``train_unit``'s positional arguments for ``unit``."""
        configs, run_dirs = [p.config.to_dict() for p in unit], [str(p.run_dir) for p in unit]
        return configs, run_dirs, self.device, self.threads, self.capture, self.log


def _record_failure(unit: list[SweepPoint], message: str) -> None:
    """Mark the unit's runs failed (the index shows ``message``'s last line); the next sweep
    command retries them from what they saved."""
    for point in unit:
        point.run_dir.mkdir(parents=True, exist_ok=True)
        storage.atomic_write(point.run_dir / ERROR, message.encode())


class _Progress:
    """Keeps ``index.csv`` and the progress bar current as units start and end."""

    def __init__(self, out: Path, points: list[SweepPoint], done: int, progress: bool):
        self.out, self.points, self.running = out, points, set()
        self.bar = tqdm(total=len(points), initial=done, desc=f"sweep {out.name}", unit="run", disable=not progress)
        write_index(out, points)

    def started(self, unit: list[SweepPoint]) -> None:
        self.running.update(point.name for point in unit)
        write_index(self.out, self.points, self.running)

    def ended(self, unit: list[SweepPoint], trained: bool = True) -> None:
        self.running.difference_update(point.name for point in unit)
        if trained:
            self.bar.update(len(unit))
        write_index(self.out, self.points, self.running)


def _run_inline(units: list[list[SweepPoint]], training: UnitTraining, progress: _Progress) -> bool:
    """One unit after another in this process; whether SIGTERM stopped it."""
    with sigterm_recorded(resend=True) as stop:
        for unit in units:
            if stop:
                break
            progress.started(unit)
            try:
                train_unit(*training.args(unit))
            except TrainingStopped:
                stop.append(signal.SIGTERM)
                progress.ended(unit, trained=False)
            else:
                progress.ended(unit)
        return bool(stop)


def _run_local(units: list[list[SweepPoint]], training: UnitTraining, workers: int, progress: _Progress) -> bool:
    """At most ``workers`` units at a time in spawned processes, each on ``training.threads``
    (one worker: in this process, which has nothing else to do meanwhile).

    Returns whether SIGTERM stopped it: to this process (sent on to every worker within
    ``STOP_POLL_S``, and again at every look until each unit has ended, since a worker still
    opening its runs records it and only training stops at it) or to a worker alone (the sweep
    stops with it). No new unit starts after one; every worker has ended when this returns.

    Each worker is a pool of its own, so a worker that dies (SIGKILL, out of memory) breaks only
    its pool: its unit is trained again from its checkpoints in a new one, up to
    ``WORKER_DEATHS`` times, while the other workers go on.
    """
    if workers == 1:
        return _run_inline(units, training, progress)
    queue = list(reversed(units))
    deaths: dict[str, int] = {}
    context = multiprocessing.get_context("spawn")
    with sigterm_recorded(resend=False) as stop, ExitStack() as pools:

        def new_worker() -> ProcessPoolExecutor:
            pool = ProcessPoolExecutor(1, mp_context=context, initializer=start_worker, initargs=(os.getpid(),))
            return pools.enter_context(pool)  # shut down (its worker ended) before this returns

        idle = [new_worker() for _ in range(workers)]
        in_flight: dict[Future, tuple[list[SweepPoint], ProcessPoolExecutor]] = {}
        while in_flight or queue and not stop:
            while queue and not stop and idle:
                unit, worker = queue.pop(), idle.pop()
                with sigterm_blocked():  # a worker started by submit gets its handler first
                    try:
                        future = worker.submit(train_unit, *training.args(unit))
                    except BrokenProcessPool:  # its worker died between units: take a new one
                        worker = new_worker()
                        future = worker.submit(train_unit, *training.args(unit))
                in_flight[future] = unit, worker
                progress.started(unit)
            done, _ = wait(in_flight, timeout=STOP_POLL_S, return_when=FIRST_COMPLETED)
            for future in done:
                unit, worker = in_flight.pop(future)
                try:
                    future.result()
                except TrainingStopped:
                    stop.append(signal.SIGTERM)
                    progress.ended(unit, trained=False)
                except BrokenProcessPool:  # its worker died: a new worker goes on from what it saved
                    worker = new_worker()
                    names = ", ".join(point.name for point in unit)
                    deaths[names] = deaths.get(names, 0) + 1
                    if deaths[names] < WORKER_DEATHS:
                        queue.append(unit)
                        progress.ended(unit, trained=False)
                    else:
                        _record_failure(unit, f"the worker process training {names} died {deaths[names]} times "
                                        "(killed: out of memory? kill -9?); run the sweep again to resume it")
                        progress.ended(unit)
                else:
                    progress.ended(unit)
                idle.append(worker)
            if stop:
                for process in multiprocessing.active_children():
                    with suppress(ProcessLookupError):  # it ended meanwhile
                        os.kill(process.pid, signal.SIGTERM)
        stopped = bool(stop)
    return stopped


#: Seconds between Slurm's checks of time limits (slurmctld's PERIODIC_TIMEOUT): the signal before
#: a task's time limit comes at the first check within ``signal_delay_s`` + this of the limit.
SLURM_CHECK_S = 30


@dataclass(frozen=True)
class SlurmOptions:
    """Where the job array runs; each field maps onto submitit's ``update_parameters``."""

    #: Slurm partition (``slurm_partition``); None: the cluster's default.
    partition: str | None = None
    #: Wall-clock limit of one array task in minutes (``timeout_min``).
    time_min: int = 60
    #: GPUs per array task (``gpus_per_node``).
    gpus: int = 0
    #: CPU cores per array task (``cpus_per_task``); also the task's torch threads unless the
    #: sweep's ``threads`` or ``OMP_NUM_THREADS`` say otherwise.
    cpus: int = 2
    #: Array tasks running at once (``slurm_array_parallelism``).
    parallelism: int = 64
    #: Extra sbatch options, e.g. ``(("account", "mylab"),)`` (``slurm_additional_parameters``).
    extra: tuple[tuple[str, str], ...] = ()
    #: Times a task that reaches its time limit is saved and requeued (submitit's
    #: ``max_num_timeout``); a task out of requeues ends failed, and the next sweep command resumes it.
    max_requeues: int = 3
    #: Seconds before the time limit that Slurm signals a task to save and requeue itself
    #: (``slurm_signal_delay_s``, sbatch ``--signal USR2@D``; Slurm may send it up to 30 s earlier).
    signal_delay_s: int = 90
    #: submitit cluster: None detects Slurm; "local" runs the array as local processes (tests).
    cluster: str | None = None

    def __post_init__(self) -> None:
        if self.max_requeues < 0:
            raise ConfigError(f"--slurm-max-requeues must be >= 0, got {self.max_requeues}")
        if not 0 < self.signal_delay_s < self.time_min * 60 - SLURM_CHECK_S:
            raise ConfigError(
                f"--slurm-signal-delay must be between 1 and {self.time_min * 60 - SLURM_CHECK_S - 1} s for "
                f"{self.time_min}-minute tasks (Slurm may signal up to {SLURM_CHECK_S} s early), got {self.signal_delay_s}"
            )

    def executor_parameters(self, name: str) -> dict[str, Any]:
        """The keyword arguments of ``submitit.AutoExecutor.update_parameters``."""
        parameters: dict[str, Any] = {
            "name": name,
            "timeout_min": self.time_min,
            "cpus_per_task": self.cpus,
            "slurm_array_parallelism": self.parallelism,
            "slurm_signal_delay_s": self.signal_delay_s,
        }
        if self.gpus:
            parameters["gpus_per_node"] = self.gpus
        if self.partition:
            parameters["slurm_partition"] = self.partition
        if self.extra:
            parameters["slurm_additional_parameters"] = dict(self.extra)
        return parameters


def _run_slurm(
    units: list[list[SweepPoint]], out: Path, training: UnitTraining, options: SlurmOptions, progress: _Progress
) -> None:
    """Submit all units as one job array and wait for it. A task saves and requeues itself at its
    time limit (``icl_mech.sweep_slurm.SlurmUnit``) up to ``options.max_requeues`` times; one that
    dies otherwise (out of requeues, node failure) is recorded as failed and is resumed by the next
    sweep command."""
    import submitit

    executor = submitit.AutoExecutor(
        folder=out / "slurm" / "%j",
        cluster=options.cluster,
        slurm_max_num_timeout=options.max_requeues,
        local_max_num_timeout=options.max_requeues,
    )
    executor.update_parameters(**options.executor_parameters(f"icl-mech-{out.name}"))
    arguments = list(zip(*(training.args(unit) for unit in units))) if units else []
    jobs = executor.map_array(SlurmUnit(train_unit), *arguments) if units else []
    unit_of = {job.job_id: unit for job, unit in zip(jobs, units)}
    for unit in units:
        progress.started(unit)
    for job in submitit.helpers.as_completed(jobs):
        try:
            job.result()
        except Exception as error:
            _record_failure(unit_of[job.job_id], _slurm_failure(job, error))
        progress.ended(unit_of[job.job_id])


def _slurm_failure(job: Any, error: Exception) -> str:
    """What a failed task left, ending in a line for the index: the exception the task's trace
    ends with (submitit puts the trace first, then where the logs are) and its log file."""
    raised = [line for line in str(error).splitlines() if re.match(r"[\w.]+(Error|Exception|Exit): ", line)]
    return f"{error}\nslurm job {job.job_id}: {(raised or [str(error)])[-1]} (log: {job.paths.stderr})"


def unit_threads(threads: int | None, executor: str, workers: int, slurm: SlurmOptions) -> int:
    """Torch threads of every unit: ``threads``, else ``OMP_NUM_THREADS`` (threads per process,
    so per worker, not in total: ``icl_mech.threads``), else the cores divided among the local
    ``workers``, or on Slurm the task's ``slurm.cpus``."""
    default = slurm.cpus if executor == "slurm" else max(1, available_cores() // workers)
    return requested_threads(threads) or default


def run_sweep(
    base: RunConfig,
    grid: Grid,
    out: str | Path,
    *,
    executor: str = "local",
    workers: int = 1,
    device: str = "cpu",
    capture: bool = True,
    ensemble: int = 1,
    threads: int | None = None,
    slurm: SlurmOptions | None = None,
    progress: bool = True,
    log: Sequence[str] = (),
) -> pd.DataFrame:
    """Train every grid point not yet finished into ``out`` and return the index.

    ``executor="local"`` runs ``workers`` processes on this machine; ``"slurm"`` submits one job
    array through submitit (options in ``slurm``) and waits for it. ``ensemble > 1`` trains up to
    that many points of one shape (differing only in seed and K) together as one unit.
    ``capture=False`` trains on CUDA without CUDA graphs, as ``train``'s ``capture``; ``log``
    sends every run's metrics live to TensorBoard and/or W&B, each run as its own (``train``'s).
    Every unit trains on ``unit_threads(threads, ...)`` torch threads.

    A local sweep sent SIGTERM saves every run where it stands, writes the index and raises
    ``TrainingStopped`` (its message says so, in one line) once every worker has ended.
    """
    if executor not in ("local", "slurm"):
        raise ConfigError(f"executor must be 'local' or 'slurm', got {executor!r}")
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    if ensemble < 1:
        raise ConfigError(f"--ensemble must be >= 1, got {ensemble}")
    slurm = slurm or SlurmOptions()
    training = UnitTraining(unit_threads(threads, executor, workers, slurm), device, capture, check_loggers(log))
    out = Path(out)
    points = plan_sweep(base, grid, out)
    if (blocking := storage.blocking_file(out)) is not None:
        raise ConfigError(f"{out} cannot be a sweep directory: {blocking} is a file; choose another --out")
    with DirectoryLock(out, "sweep"):  # one sweep process per directory; its runs lock themselves
        todo = [point for point in points if run_status(point) != "finished"]
        units = group_units(todo, ensemble)
        progress_tracker = _Progress(out, points, len(points) - len(todo), progress)
        stopped = False
        try:
            with progress_tracker.bar:
                if executor == "slurm":
                    _run_slurm(units, out, training, slurm, progress_tracker)
                else:
                    stopped = _run_local(units, training, workers, progress_tracker)
        finally:  # however it ended (Ctrl-C too), the index says what the run directories hold
            index = write_index(out, points)
    if stopped:
        counts = index[index.run.isin([point.name for point in points])].status.value_counts()
        raise TrainingStopped(
            f"stopped by SIGTERM, every run saved where it stood ({out / INDEX}: "
            + ", ".join(f"{counts[status]} {status}" for status in STATUSES if status in counts)
            + "); run the same sweep again to continue"
        )
    return index
