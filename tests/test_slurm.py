"""A sweep on a real one-node Slurm: a job requeued mid-run (SIGTERM, as for preemption) saves the
step it reached, and its requeued copy resumes from there to an uninterrupted run's metrics; a run
longer than its tasks' time limit is saved and requeued at each limit with no user action, and
ends as the uninterrupted run does.

The test starts and stops its own Slurm (Debian's slurmctld, slurmd, slurm-client and munge,
installed with apt-get when missing) with every file under a temporary directory, and skips,
saying why, where that cannot be done.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import torch

from icl_mech import load_run, preset, storage, trainer
from icl_mech.sweep import plan_sweep, read_index, train_unit
from icl_mech.sweep_slurm import JOBS, TIME_LIMIT_SIGNAL, SlurmUnit

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
PROGRAMS = ("slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "munged")
#: A run of some seconds: checkpoints log-spaced up to 512, then every 1000 steps.
SETS = {"K": 64, "steps": 3000, "eval_every": 100, "checkpoint_every": 1000, "eval_size": 64, "batch_size": 16, "d_mlp": 16}
#: The time-limit test's run, its steps sized on this machine to ``LIMIT_TRAINING_S`` seconds.
LIMIT_SETS = {key: value for key, value in SETS.items() if key != "steps"} | {"checkpoint_every": 5000}
#: Seconds of training of the time-limit test's run. Slurm checks time limits every 30 s and
#: signals a task at the first check that finds at most 30 s + its signal delay (1 s here) left,
#: so a one-minute task is signalled 29 to 59 s after it starts (a requeued one about 50 s after),
#: and trains for at most about 56 s of it after its imports: two tasks train at most about 112 s,
#: and 150 s needs a third however the checks fall, with a third to spare for a step time measured
#: too long (one measured at 1.41 ms once trained at about 1.2 ms in the tasks).
LIMIT_TRAINING_S = 150


def _install_or_skip() -> None:
    if all(shutil.which(program) for program in PROGRAMS):
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip(f"a one-node Slurm needs Debian's {', '.join(PACKAGES)}: not installed, and no apt-get as root")
    installed = subprocess.run(
        ["apt-get", "install", "-y", "-q", *PACKAGES],
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, capture_output=True, text=True,
    )
    if installed.returncode != 0:
        pytest.skip(f"apt-get install {' '.join(PACKAGES)} failed: {installed.stderr.strip().splitlines()[-1:]}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _slurm_conf(root: Path) -> str:
    """One node, this machine's CPUs, root runs everything, every file under ``root``."""
    return "\n".join([
        "ClusterName=iclmech", "SlurmctldHost=localhost", "SlurmUser=root", "SlurmdUser=root",
        f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
        # cred_expire (seconds, at least 5; default 120) is also how long Slurm holds a requeued job
        # back before it may start again, which the tests would otherwise wait out at every requeue
        "AuthType=auth/munge", f"AuthInfo=socket={root}/munge.sock,cred_expire=5", "CredType=cred/munge",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "MpiDefault=none",
        f"StateSaveLocation={root}/state", f"SlurmdSpoolDir={root}/spool",
        f"SlurmctldPidFile={root}/slurmctld.pid", f"SlurmdPidFile={root}/slurmd.pid",
        f"SlurmctldLogFile={root}/slurmctld.log", f"SlurmdLogFile={root}/slurmd.log",
        "SchedulerType=sched/builtin", "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU",
        # a requeued job becomes eligible once its hold ends, an event no scheduling pass waits for:
        # the periodic pass (default every 60 s) starts it, so it runs every second here
        "SchedulerParameters=sched_interval=1",
        "ReturnToService=2", "JobCompType=jobcomp/none", "AccountingStorageType=accounting_storage/none",
        "JobAcctGatherType=jobacct_gather/none", "SlurmdParameters=config_overrides",
        f"NodeName=localhost CPUs={os.cpu_count()} RealMemory=1000 State=UNKNOWN",
        "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
    ]) + "\n"


def _wait_for(condition, what: str, seconds: float = 300):
    deadline = time.time() + seconds
    while not (value := condition()):
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


@pytest.fixture(scope="module")
def slurm_env():
    """The environment of a running one-node Slurm (SLURM_CONF set); stopped afterwards."""
    _install_or_skip()
    root = Path(tempfile.mkdtemp(prefix="slurm-", dir="/tmp"))  # short: a socket path has 108 bytes
    root.chmod(0o755)
    for folder in ("state", "spool"):
        (root / folder).mkdir()
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    (root / "slurm.conf").write_text(_slurm_conf(root))
    env = {**os.environ, "SLURM_CONF": str(root / "slurm.conf")}
    try:
        subprocess.run(
            ["munged", "--force", f"--socket={root}/munge.sock", f"--key-file={key}", f"--log-file={root}/munged.log",
             f"--pid-file={root}/munged.pid", f"--seed-file={root}/munged.seed"], check=True,
        )
        subprocess.run(["slurmctld", "-c"], env=env, check=True)
        subprocess.run(["slurmd", "-N", "localhost"], env=env, check=True)
        _wait_for(lambda: "idle" in subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True).stdout,
                  "the Slurm node to be idle", 60)
        yield env
    finally:
        subprocess.run(["scancel", "--user=root"], env=env, capture_output=True)
        for name in ("slurmd", "slurmctld", "munged"):  # the daemons this fixture started, by their pid files
            pid_file = root / f"{name}.pid"
            if pid_file.exists():
                os.kill(int(pid_file.read_text()), signal.SIGTERM)
        shutil.rmtree(root, ignore_errors=True)


def _squeue(env: dict, *fields: str) -> list[list[str]]:
    listing = subprocess.run(["squeue", "-h", "-o", " ".join(fields)], env=env, capture_output=True, text=True, check=True)
    return [line.split() for line in listing.stdout.splitlines()]


@pytest.mark.slow
def test_a_requeued_slurm_job_resumes_from_its_sigterm_checkpoint_to_the_uninterrupted_metrics(slurm_env, tmp_path):
    out = tmp_path / "sweep"
    sets = [f"--set={key}={value}" for key, value in SETS.items()]
    sweep = subprocess.Popen(
        [str(Path(sys.executable).parent / "icl-mech"), "sweep", "--grid", "seed=0,1", *sets, "--out", str(out),
         "--executor", "slurm", "--slurm-partition", "debug", "--slurm-cpus", "1", "--quiet"],
        env=slurm_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    run_dir = out / "seed0"
    try:
        _wait_for(lambda: storage.checkpoint_path(run_dir, 8).exists(), "seed0 to start training")
        (task,) = [job for job, in _squeue(slurm_env, "%i") if job.endswith("_0")]
        subprocess.run(["scontrol", "requeue", task], env=slurm_env, check=True)

        # The job saves the step it reached and ends; Slurm starts the requeued copy by itself.
        logs = out / "slurm" / task
        stopped = _wait_for(
            lambda: re.search(r"stopped by SIGTERM at step (\d+), saved there", "".join(p.read_text() for p in logs.glob("*.err"))),
            "the SIGTERM checkpoint",
        )
        step = int(stopped[1])
        saved = {path: path.stat().st_mtime_ns for path in (run_dir / storage.CHECKPOINTS).iterdir()}
        assert storage.checkpoint_path(run_dir, step) in saved and step % SETS["checkpoint_every"] != 0
        output, _ = sweep.communicate(timeout=600)
    finally:
        sweep.kill()
    assert sweep.returncode == 0, output
    assert list(read_index(out).status) == ["finished", "finished"]
    assert list(read_index(out).requeues) == [1, 0]  # Slurm's requeue of seed0's task, in the index
    # Resumed from the SIGTERM checkpoint: nothing saved up to it was written again.
    assert {path: path.stat().st_mtime_ns for path in saved} == saved

    # The same run, uninterrupted, on the same thread count (--slurm-cpus 1 trains on 1 thread).
    config = json.loads((run_dir / storage.CONFIG).read_text())
    train_unit([config], [str(tmp_path / "reference")], "cpu", 1)
    assert storage.read_json_lines(run_dir / storage.METRICS) == storage.read_json_lines(tmp_path / "reference" / storage.METRICS)
    requeued, uninterrupted = load_run(run_dir).state_dict(3000), load_run(tmp_path / "reference").state_dict(3000)
    assert all(torch.equal(requeued[name], uninterrupted[name]) for name in uninterrupted)


def _seconds_per_step(config) -> float:
    """This machine's time for one step of ``config`` on one thread, as a Slurm task with one CPU
    trains it: the difference of two runs, so that setting up does not count, each the fastest of
    two, so that a moment of load does not lengthen it (too long a step time sizes the run too
    short to reach a third task)."""
    with tempfile.TemporaryDirectory() as scratch:

        def fastest(steps: int) -> float:
            seconds = []
            for repeat in range(2):
                began = time.perf_counter()
                train_unit([config.override(steps=steps).to_dict()], [f"{scratch}/{steps}-{repeat}"], "cpu", 1)
                seconds.append(time.perf_counter() - began)
            return min(seconds)

        return (fastest(600) - fastest(100)) / 500


@pytest.mark.slow
def test_a_run_longer_than_its_time_limit_is_requeued_by_itself_and_ends_as_the_uninterrupted_run(slurm_env, tmp_path):
    base = preset("cpu").override(**LIMIT_SETS)
    seconds_per_step = _seconds_per_step(base)
    steps = math.ceil(LIMIT_TRAINING_S / seconds_per_step / LIMIT_SETS["eval_every"]) * LIMIT_SETS["eval_every"]
    out = tmp_path / "sweep"
    (point,) = plan_sweep(base.override(steps=steps), {"seed": [0]}, out)
    sets = [f"--set={key}={value}" for key, value in {**LIMIT_SETS, "steps": steps}.items()]
    # One-minute tasks, signalled 1 s (plus Slurm's up to 30) before the limit: submitit's default
    # delay, 90 s, is longer than the whole task. Up to 10 requeues: a loaded machine trains slower.
    sweep = subprocess.Popen(
        [str(Path(sys.executable).parent / "icl-mech"), "sweep", "--grid", "seed=0", *sets, "--out", str(out),
         "--executor", "slurm", "--slurm-partition", "debug", "--slurm-cpus", "1", "--slurm-time", "1",
         "--slurm-signal-delay", "1", "--slurm-max-requeues", "10", "--quiet"],
        env=slurm_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    # The same run uninterrupted, on one thread as the tasks train, meanwhile on the other core.
    reference = threading.Thread(
        target=train_unit, args=([point.config.to_dict()], [str(tmp_path / "reference")], "cpu", 1)
    )
    reference.start()
    try:
        output, _ = sweep.communicate(timeout=900)
    finally:
        sweep.kill()
        reference.join()
    assert sweep.returncode == 0, output

    tasks = storage.read_json_lines(point.run_dir / JOBS)
    (requeues,) = read_index(out).requeues
    context = f"{steps} steps at {seconds_per_step * 1000:.2f} ms; tasks: {tasks}"
    assert list(read_index(out).status) == ["finished"] and requeues >= 2, context  # three tasks at least
    assert [task["restarts"] for task in tasks] == list(range(requeues + 1)), context
    assert [task["ended"] for task in tasks] == ["time limit"] * requeues + ["trained"], context
    # Every task but the last saved the step it reached when the signal came, and was requeued.
    logs = "".join(path.read_text() for path in (out / "slurm").glob("*/*_log.err"))
    stops = [int(step) for step in re.findall(r"stopped by SIGTERM at step (\d+), saved there;.*time limit is near", logs)]
    assert len(stops) == requeues and stops == sorted(stops), logs
    assert all(storage.checkpoint_path(point.run_dir, step).exists() for step in stops)

    reference_dir = tmp_path / "reference"
    assert (point.run_dir / storage.METRICS).read_bytes() == (reference_dir / storage.METRICS).read_bytes()
    final = storage.checkpoint_path(point.run_dir, steps).relative_to(point.run_dir)
    assert (point.run_dir / final).read_bytes() == (reference_dir / final).read_bytes()


@pytest.mark.sigterm
def test_the_time_limit_signal_saves_the_step_reached_then_hands_the_task_to_submitits_requeue(tmp_path, monkeypatch):
    """Without a cluster: what a task does when Slurm's signal before the time limit comes."""
    config = preset("cpu").override(**{**LIMIT_SETS, "steps": 30, "eval_every": 5, "checkpoint_every": 10})
    run_dir = tmp_path / "run"
    requeued = []

    def submitits_requeue(signum, frame):  # stands in for submitit's checkpoint-and-requeue, which exits
        requeued.append(signum)
        raise SystemExit(-1)

    real_stop_reason = trainer.stop_reason

    def signal_at_step_15(history, train_cfg):  # mid-run, at an evaluated step that is no checkpoint
        if history[-1]["step"] == 15:
            os.kill(os.getpid(), TIME_LIMIT_SIGNAL)
        return real_stop_reason(history, train_cfg)

    monkeypatch.setattr(trainer, "stop_reason", signal_at_step_15)
    previous = signal.signal(TIME_LIMIT_SIGNAL, submitits_requeue)
    try:
        with pytest.raises(SystemExit):
            SlurmUnit(train_unit)([config.to_dict()], [str(run_dir)], "cpu", 1)
        assert signal.getsignal(TIME_LIMIT_SIGNAL) is submitits_requeue  # given back to submitit
    finally:
        signal.signal(TIME_LIMIT_SIGNAL, previous)
    assert requeued == [TIME_LIMIT_SIGNAL]  # handed over once, after saving
    assert load_run(run_dir).steps[-1] == 15 and storage.read_json_lines(run_dir / storage.METRICS)[-1]["step"] == 15
