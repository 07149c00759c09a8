"""How many torch CPU threads a process (a training run, a sweep's worker, an LLC estimate)
uses: ``--threads``, else ``OMP_NUM_THREADS``, else its share of this process's cores.

``OMP_NUM_THREADS`` keeps the meaning OpenMP gives it, the threads of ONE process: a sweep's
workers each train on that many, as would any OpenMP program started once per worker. That is
what a user who set it for a shared machine asked for; dividing it over workers, or ignoring it
for all the cores, would oversubscribe or starve the machine behind their back.
"""

from __future__ import annotations

import os

from icl_mech.errors import ConfigError

ENVIRONMENT = "OMP_NUM_THREADS"


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. under ``taskset`` or Slurm)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def requested_threads(threads: int | None = None) -> int | None:
    """Threads per process the user asked for: ``threads`` (``--threads``), else
    ``OMP_NUM_THREADS`` (its first level when it lists nested ones, ``4,2``), else None."""
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {threads}")
        return threads
    text = os.environ.get(ENVIRONMENT, "").strip()
    if not text:
        return None
    first = text.split(",")[0].strip()
    if not first.isdigit() or int(first) < 1:
        raise ConfigError(f"{ENVIRONMENT}={text!r} is not a positive integer; set it to e.g. 1, or unset it")
    return int(first)



def use_requested_threads(threads: int | None = None) -> None:
    """Set torch's CPU threads for this process to what the user asked for (``requested_threads``);
    leave torch's own default (every core) when they asked for nothing."""
    if (chosen := requested_threads(threads)) is not None:
        import torch

        torch.set_num_threads(chosen)
