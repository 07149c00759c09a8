"""A sweep's work unit as a Slurm array task that outlives its time limit.

Slurm ends a job at its time limit. submitit asks Slurm for a signal (``--signal USR2@D``) D
seconds before it; ``SlurmUnit`` turns that signal into the stop training already knows (SIGTERM:
the current step finishes, every run of the unit is saved at the step reached,
``TrainingStopped``), then hands over to submitit's own checkpoint-and-requeue: it pickles the
same unit again (``checkpoint``, as ``submitit.helpers.Checkpointable`` does), runs
``scontrol requeue`` and exits, and the requeued task resumes every run from where it stood.
submitit requeues a task for its time limit at most ``max_num_timeout`` times
(``SlurmOptions.max_requeues``); after that the task ends with an error, its runs saved, and the
next sweep command resumes them.

Every task that trains a run appends a line to the run's ``slurm_jobs.jsonl`` when it ends (job
id, how many times Slurm had requeued it, host, how it ended), whatever requeued it (its time
limit, preemption, ``scontrol requeue``): the sweep's index counts the requeues from there.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import submitit

from icl_mech import storage
from icl_mech.errors import TrainingStopped
from icl_mech.sweep_stop import sigterm_recorded

#: A run's log of the Slurm tasks that trained it: one JSON line per task that ended.
JOBS = "slurm_jobs.jsonl"
#: The signal Slurm sends a submitit task before its time limit (USR2 unless
#: SUBMITIT_PREEMPT_SIGNAL names another).
TIME_LIMIT_SIGNAL = signal.Signals[f"SIG{submitit.JobEnvironment.USR_SIG}"]


def _record_task(run_dirs: Sequence[str], ended: str) -> None:
    """Append this task to the ``JOBS`` log of each run it trained (a directory that holds no
    run yet is left alone: a file in it would make it refuse to become one)."""
    try:
        job_id = submitit.JobEnvironment().job_id
    except RuntimeError:  # called outside a submitit task
        return
    line = {
        "job": job_id,
        "restarts": int(os.environ.get("SLURM_RESTART_COUNT", 0)),
        "host": socket.gethostname(),
        "ended": ended,
        "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    for run_dir in map(Path, run_dirs):
        if (run_dir / storage.CONFIG).is_file():
            storage.append_json_line(run_dir / JOBS, line)


def requeues(run_dir: Path) -> int:
    """How many times Slurm requeued the tasks that trained ``run_dir`` (0 for a local run):
    for each task, the largest restart count it recorded."""
    restarts: dict[str, int] = {}
    for line in storage.read_json_lines(run_dir / JOBS):
        restarts[line["job"]] = max(restarts.get(line["job"], 0), line["restarts"])
    return sum(restarts.values())


class SlurmUnit(submitit.helpers.Checkpointable):
    """``train_unit`` in a Slurm array task, requeued by submitit when the task's time limit
    comes (module docstring). Takes the function rather than importing it: ``icl_mech.sweep``
    submits this class."""

    def __init__(self, train_unit: Callable[..., list[str]]):
        self.train_unit = train_unit

    def __call__(self, configs: list[dict], run_dirs: list[str], *args: Any) -> list[str]:
        requeue = signal.getsignal(TIME_LIMIT_SIGNAL)  # submitit's checkpoint-and-requeue
        time_limit: list[int] = []

        def stop_for_time_limit(signum: int, frame: object) -> None:
            time_limit.append(signum)
            signal.raise_signal(signal.SIGTERM)  # training saves where it stands and stops

        try:
            # SIGTERM outside training (the task starting up) is kept for training to stop at
            with sigterm_recorded(resend=True):
                signal.signal(TIME_LIMIT_SIGNAL, stop_for_time_limit)
                try:
                    result = self.train_unit(configs, run_dirs, *args)
                finally:
                    signal.signal(TIME_LIMIT_SIGNAL, requeue)
        except TrainingStopped as stopped:
            _record_task(run_dirs, "time limit" if time_limit else "stopped by SIGTERM")
            if not time_limit or not callable(requeue):
                raise
            print(f"{stopped}; the task's time limit is near: requeueing it", file=sys.stderr, flush=True)
            requeue(TIME_LIMIT_SIGNAL, None)  # exits (requeued), or raises once out of requeues
            raise
        _record_task(run_dirs, "trained")
        return result
