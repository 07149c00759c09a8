"""A sweep on a real one-node Slurm: a job requeued mid-run (SIGTERM, as for preemption) saves the
step it reached, and its requeued copy resumes from there to an uninterrupted run's metrics.

The test starts and stops its own Slurm (Debian's slurmctld, slurmd, slurm-client and munge,
installed with apt-get when missing) with every file under a temporary directory, and skips,
saying why, where that cannot be done.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from icl_mech import load_run, storage
from icl_mech.sweep import read_index, train_unit

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
PROGRAMS = ("slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "munged")
#: A run of some seconds: checkpoints log-spaced up to 512, then every 1000 steps.
SETS = {"K": 64, "steps": 3000, "eval_every": 100, "checkpoint_every": 1000, "eval_size": 64, "batch_size": 16, "d_mlp": 16}


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
        "AuthType=auth/munge", f"AuthInfo=socket={root}/munge.sock", "CredType=cred/munge",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "MpiDefault=none",
        f"StateSaveLocation={root}/state", f"SlurmdSpoolDir={root}/spool",
        f"SlurmctldPidFile={root}/slurmctld.pid", f"SlurmdPidFile={root}/slurmd.pid",
        f"SlurmctldLogFile={root}/slurmctld.log", f"SlurmdLogFile={root}/slurmd.log",
        "SchedulerType=sched/builtin", "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU",
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

        # The job saves the step it reached and ends; Slurm holds the requeued copy back for two
        # minutes (its BeginTime), which the test cuts short.
        logs = out / "slurm" / task
        stopped = _wait_for(
            lambda: re.search(r"stopped by SIGTERM at step (\d+), saved there", "".join(p.read_text() for p in logs.glob("*.err"))),
            "the SIGTERM checkpoint",
        )
        step = int(stopped[1])
        saved = {path: path.stat().st_mtime_ns for path in (run_dir / storage.CHECKPOINTS).iterdir()}
        assert storage.checkpoint_path(run_dir, step) in saved and step % SETS["checkpoint_every"] != 0
        _wait_for(lambda: [task, "PENDING"] in _squeue(slurm_env, "%i", "%T"), "the job to be requeued")
        subprocess.run(["scontrol", "update", f"jobid={task}", "starttime=now"], env=slurm_env, check=True)
        output, _ = sweep.communicate(timeout=600)
    finally:
        sweep.kill()
    assert sweep.returncode == 0, output
    assert list(read_index(out).status) == ["finished", "finished"]
    # Resumed from the SIGTERM checkpoint: nothing saved up to it was written again.
    assert {path: path.stat().st_mtime_ns for path in saved} == saved

    # The same run, uninterrupted, on the same thread count (--slurm-cpus 1 trains on 1 thread).
    config = json.loads((run_dir / storage.CONFIG).read_text())
    train_unit([config], [str(tmp_path / "reference")], "cpu", 1)
    assert storage.read_json_lines(run_dir / storage.METRICS) == storage.read_json_lines(tmp_path / "reference" / storage.METRICS)
    requeued, uninterrupted = load_run(run_dir).state_dict(3000), load_run(tmp_path / "reference").state_dict(3000)
    assert all(torch.equal(requeued[name], uninterrupted[name]) for name in uninterrupted)
