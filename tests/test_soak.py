"""A local sweep under fire: a seeded chaos thread kill -9s random workers, and once the sweep
process itself, at random moments; running the same command again until it finishes ends with
every run bit-identical to an undisturbed sweep's, no run directory damaged and no process left.

The seed is in the test id; ``ICL_MECH_SOAK_SEED=N`` replays another kill schedule (the moments
are seeded delays, so a replay hits the same stages of the sweep up to the machine's timing).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

from icl_mech import load_run, preset, storage
from icl_mech.sweep import plan_sweep, read_index, train_unit
from icl_mech.threads import available_cores
from processes import alive, descendants

SOAK_SEED = int(os.environ.get("ICL_MECH_SOAK_SEED", "30"))
#: 16 runs of one to two seconds each on one thread, evaluated every 20 steps and checkpointed at
#: 0, 1, 2, 4, ..., 32 and every 50 steps: a kill at any moment lands in some write.
GRID = {"seed": list(range(16))}
FIXED = {"K": 64, "steps": 600, "eval_every": 20, "checkpoint_every": 50, "eval_size": 64, "batch_size": 16, "d_mlp": 16}
#: Kills: this many workers, and the sweep process once, in a seeded order.
WORKER_KILLS = 5
#: Seconds from one kill (or the start) to the next, drawn uniformly, a kill of a worker waiting
#: for one to exist: long enough for a new worker to be training at times, short enough that
#: every kill lands well before the sweep is done.
KILL_GAP_S = (0.3, 2.0)


def _workers(sweep_pid: int) -> list[int]:
    """The sweep's worker processes (not its resource tracker), from /proc."""
    found = []
    for pid in descendants(sweep_pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as file:
                if b"spawn_main" in file.read():
                    found.append(pid)
        except OSError:  # ended meanwhile
            pass
    return sorted(found)


def _kill_worker(sweep_pid: int, pid: int) -> bool:
    """SIGKILL ``pid`` if it is still one of the sweep's workers, through a pidfd, so that a worker
    that ended meanwhile cannot have its pid reused by someone else's process and killed."""
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        if pid not in _workers(sweep_pid):
            return False
        signal.pidfd_send_signal(handle, signal.SIGKILL)
        return True
    finally:
        os.close(handle)


class Chaos(threading.Thread):
    """Kills, at seeded moments, a random worker of the sweep command running now (or the command
    itself), and remembers every process the sweeps started, to look for orphans afterwards."""

    def __init__(self, seed: int):
        super().__init__(daemon=True)
        self.rng = random.Random(seed)
        self.plan = ["worker"] * WORKER_KILLS + ["sweep"]
        self.rng.shuffle(self.plan)
        self.sweep: subprocess.Popen | None = None
        self.seen: set[int] = set()
        self.kills: list[str] = []
        self.began = time.time()

    def watch(self) -> None:
        if self.sweep is not None and self.sweep.poll() is None:
            self.seen |= descendants(self.sweep.pid)

    def run(self) -> None:
        for target in self.plan:
            deadline = time.time() + self.rng.uniform(*KILL_GAP_S)
            choice = self.rng.random()
            while True:
                self.watch()
                sweep = self.sweep
                workers = _workers(sweep.pid) if sweep is not None and sweep.poll() is None else []
                if time.time() >= deadline and workers:
                    if target == "sweep":  # our own child: its pid stays ours until we reap it
                        pid = sweep.pid
                        sweep.send_signal(signal.SIGKILL)
                        break
                    pid = workers[int(choice * len(workers))]
                    if _kill_worker(sweep.pid, pid):
                        break
                time.sleep(0.05)
            self.kills.append(f"{time.time() - self.began:.1f}s {target} {pid}")


@pytest.mark.slow
@pytest.mark.parametrize("seed", [SOAK_SEED], ids=lambda seed: f"seed={seed}")
def test_a_sweep_whose_workers_and_itself_are_killed_at_random_finishes_bit_identical(seed, tmp_path):
    points = plan_sweep(preset("cpu").override(**FIXED), GRID, tmp_path / "sweep")
    command = [sys.executable, "-m", "icl_mech", "sweep", "--grid", "seed=0..15", "--workers", "2", "--quiet",
               *(f"--set={key}={value}" for key, value in FIXED.items()), "--out", str(tmp_path / "sweep")]

    # The undisturbed sweep's runs, trained meanwhile in this process on a worker's thread count.
    def train_reference() -> None:
        for point in points:
            run_dir = tmp_path / "reference" / point.name
            train_unit([point.config.to_dict()], [str(run_dir)], "cpu", max(1, available_cores() // 2))

    reference = threading.Thread(target=train_reference)
    reference.start()
    chaos = Chaos(seed)
    chaos.start()
    attempts = []
    try:
        while len(attempts) < 20:
            chaos.sweep = sweep = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            _, stderr = sweep.communicate(timeout=300)
            attempts.append((sweep.returncode, stderr))
            if sweep.returncode == 0:
                break
    finally:
        sweep.kill()  # a sweep that hung (its workers then leave by themselves)
        reference.join()
    context = f"seed {seed}; kills: {chaos.kills}; sweep commands exited {[code for code, _ in attempts]}"
    assert len(chaos.kills) == WORKER_KILLS + 1 and sweep.returncode == 0, context
    # A killed worker is replaced and its unit goes on: no command ends in a traceback.
    assert not [stderr for _, stderr in attempts if "Traceback" in stderr], context
    assert set(read_index(tmp_path / "sweep").status) == {"finished"}, context

    for point in points:
        ran, undisturbed = point.run_dir, tmp_path / "reference" / point.name
        run = load_run(ran)  # config, metrics and every checkpoint whole
        for step in run.steps:
            storage.load_tensors(storage.checkpoint_path(ran, step))
        assert (ran / storage.METRICS).read_bytes() == (undisturbed / storage.METRICS).read_bytes(), context
        final = storage.checkpoint_path(ran, FIXED["steps"]).relative_to(ran)
        assert (ran / final).read_bytes() == (undisturbed / final).read_bytes(), context

    deadline = time.time() + 60  # a killed sweep's workers save where they stand, then exit
    while any(alive(pid) for pid in chaos.seen) and time.time() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in chaos.seen if alive(pid)], f"orphans left; {context}"
