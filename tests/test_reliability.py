"""One writer per run, failed writes named and resumable, SIGTERM saves where training stands."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from icl_mech import RunLockedError, TrainingStopped, load_run, preset, storage, train, trainer
from icl_mech.cli import main
from icl_mech.ensemble import train_ensemble
from icl_mech.sweep import ERROR, group_units, plan_sweep, read_index, run_status, train_unit
from icl_mech.threads import available_cores
from processes import alive, descendants

#: A run of a few seconds: 30 steps, evaluated every 5, checkpointed at 0, 1, 2, 4, 8, 10, 20, 30.
TINY = {"K": 64, "steps": 30, "eval_every": 5, "checkpoint_every": 10, "eval_size": 64, "batch_size": 16, "d_mlp": 16}
TINY_ARGS = [f"--set={key}={value}" for key, value in TINY.items() if key != "steps"] + ["--quiet"]
#: A process that locks the directories it is given, says so, and sleeps until killed.
HOLD_LOCKS = (
    "import sys, time; from icl_mech.lock import DirectoryLock\n"
    "for directory in sys.argv[1:]: DirectoryLock(directory).__enter__()\n"
    "print('locked', flush=True); time.sleep(600)"
)


def tiny_config(**overrides):
    return preset("cpu").override(**{**TINY, **overrides})


def snapshot(root):
    """Every file under ``root`` with its bytes and mtime: equal snapshots mean nothing changed."""
    return {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in root.rglob("*") if path.is_file()}


def rows(run_dir):
    return [json.loads(line) for line in (run_dir / storage.METRICS).read_text().splitlines()]


def weights(run_dir, step):
    return load_run(run_dir).state_dict(step)


def assert_same_weights(a, b):
    assert a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The tiny run trained without interruption, in this process (so on its thread count)."""
    return train(tiny_config(), tmp_path_factory.mktemp("reference") / "run", progress=False).path


def test_a_locked_run_refuses_trainers_ensembles_and_sweeps_and_changes_nothing(tmp_path, capsys):
    run_dir, sweep_dir = tmp_path / "run", tmp_path / "sweep"
    train(tiny_config(steps=4), run_dir, progress=False)
    sweep_dir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCKS, str(run_dir), str(sweep_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = snapshot(tmp_path)
        named = f"pid {holder.pid} on host {socket.gethostname()} since "
        assert main(["train", "--resume", "--steps", "8", "--out", str(run_dir), "--quiet"]) == 2
        (line,) = capsys.readouterr().err.splitlines()
        assert f"run directory {run_dir} is in use by {named}" in line
        with pytest.raises(RunLockedError, match=re.escape(named)):
            train_ensemble([tiny_config(steps=8)], [run_dir], resume=True, progress=False)
        assert main(["sweep", "--grid", "seed=0,1", "--out", str(sweep_dir), "--quiet"]) == 2
        (line,) = capsys.readouterr().err.splitlines()
        assert f"sweep directory {sweep_dir} is in use by {named}" in line
        assert snapshot(tmp_path) == before
        (point,) = plan_sweep(tiny_config(steps=8), {"seed": [0]}, tmp_path)
        train_unit([point.config.to_dict()], [str(run_dir)], "cpu", 1)  # a sweep worker records the refusal
        assert named in (run_dir / ERROR).read_text().splitlines()[-1]
    finally:
        holder.kill()  # SIGKILL: the kernel releases its locks, nothing is left to clean up
        holder.wait()
    assert main(["train", "--resume", "--steps", "8", "--out", str(run_dir), "--quiet"]) == 0
    assert [row["step"] for row in rows(run_dir)] == [0, 1, 2, 4, 5, 8]


@pytest.mark.slow
def test_a_second_trainer_on_a_training_run_fails_at_once_naming_the_first(tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = ["train", *TINY_ARGS, "--steps", "100000", "--out", str(run_dir)]
    first = subprocess.Popen([sys.executable, "-m", "icl_mech", *args])
    try:
        deadline = time.time() + 300
        while not storage.checkpoint_path(run_dir, 2).exists():
            assert time.time() < deadline and first.poll() is None, "the first trainer ended early"
            time.sleep(0.05)
        # the config alone: the first trainer renames its other files meanwhile (a whole snapshot
        # can list a temporary file that is gone when it is read)
        config = run_dir / storage.CONFIG
        config_before = config.read_bytes(), config.stat().st_mtime_ns
        assert main([*args, "--resume"]) == 2 and first.poll() is None  # the second trainer, this process
        (line,) = capsys.readouterr().err.splitlines()
        assert re.fullmatch(
            rf"icl-mech train: error: run directory {re.escape(str(run_dir))} is in use by pid {first.pid} on host "
            rf"{re.escape(socket.gethostname())} since \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d \w+; "
            r"wait for it to end or stop it \(one writer per directory\)",
            line,
        ), line
        assert (config.read_bytes(), config.stat().st_mtime_ns) == config_before  # the second wrote nothing
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    steps = [row["step"] for row in rows(run_dir)]
    assert steps == sorted(set(steps))  # one writer: every evaluated step once, in order
    # The killed trainer left no stale lock: the run resumes (to 3 steps, or just ends if past them).
    assert train(tiny_config(steps=3), run_dir, resume=True, progress=False).status["last_step"] >= 3


def fail_writes(monkeypatch, target: str, nth: int) -> None:
    """Make the ``nth`` write of a file whose name contains ``target`` fail with ENOSPC part way:
    half of a metrics line gets written, a checkpoint's temporary file is written but not synced."""
    real_write, real_fsync = os.write, os.fsync
    seen = {"count": 0}

    def failing(fd: int) -> bool:
        if target not in os.readlink(f"/proc/self/fd/{fd}"):
            return False
        seen["count"] += 1
        return seen["count"] >= nth

    def write(fd, data):
        if failing(fd):
            real_write(fd, bytes(data)[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    def fsync(fd):
        if failing(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    if target == storage.METRICS:
        monkeypatch.setattr(storage.os, "write", write)
    else:
        monkeypatch.setattr(storage.os, "fsync", fsync)


@pytest.mark.parametrize(
    ("target", "nth"),
    [
        (storage.METRICS, 5),  # the row of step 5, cut in half
        ("step_00000020", 1),  # a scheduled checkpoint
        (storage.RESUME, 7),  # the resume state of step 20, after its model checkpoint was written
        (storage.STATUS, 1),  # the end of the run, after its last checkpoint
    ],
)
def test_a_failed_write_stops_with_one_line_and_resume_continues_exactly(
    target, nth, reference, tmp_path, monkeypatch, capsys
):
    run_dir = tmp_path / "run"
    fail_writes(monkeypatch, target, nth)
    assert main(["train", *TINY_ARGS, "--steps", "30", "--out", str(run_dir)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert re.fullmatch(
        rf"icl-mech train: error: cannot write {run_dir}/\S*{re.escape(target)}\S*: No space left on device "
        rf"\(ENOSPC\); training stopped, .* continue with: icl-mech train --resume --out {run_dir}",
        line,
    ), line
    assert (run_dir / storage.METRICS).read_text().endswith("}\n")  # whole lines only
    assert not list(run_dir.rglob("*.tmp")) and not (run_dir / storage.STATUS).exists()
    monkeypatch.undo()  # the disk has space again

    assert main(["train", "--resume", "--out", str(run_dir), "--quiet"]) == 0
    assert rows(run_dir) == rows(reference)
    assert load_run(run_dir).steps == load_run(reference).steps
    assert_same_weights(weights(run_dir, 30), weights(reference, 30))


def sigterm_on_metrics_row(monkeypatch, step: int) -> None:
    """Send this process SIGTERM once the metrics row of ``step`` is made (mid-step; the row is
    written by the writer thread, the stopping rule reads it on the training thread)."""
    real_stop_reason = trainer.stop_reason

    def stop_reason(history, train_cfg):
        if history[-1]["step"] == step:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_stop_reason(history, train_cfg)

    monkeypatch.setattr(trainer, "stop_reason", stop_reason)


@pytest.mark.sigterm
def test_sigterm_saves_the_step_reached_and_a_sweep_worker_resumes_it_exactly(reference, tmp_path, monkeypatch):
    (point,) = plan_sweep(tiny_config(), {"seed": [0]}, tmp_path)
    sigterm_on_metrics_row(monkeypatch, 15)  # 15: evaluated, not a checkpoint step
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingStopped, match=f"stopped by SIGTERM at step 15, saved there; .*--out {point.run_dir}"):
        train_unit([point.config.to_dict()], [str(point.run_dir)], "cpu", torch.get_num_threads())
    assert signal.getsignal(signal.SIGTERM) == handler  # the caller's handler is given back
    assert load_run(point.run_dir).steps == [0, 1, 2, 4, 8, 10, 15]
    assert [row["step"] for row in rows(point.run_dir)][-1] == 15
    assert run_status(point) == "interrupted" and not (point.run_dir / ERROR).exists()  # stopped, not failed
    assert load_run(point.run_dir).status == {
        "state": storage.INTERRUPTED, "last_step": 15, "stopped_early": False, "stop_reason": None,
        **{key: load_run(point.run_dir).status[key] for key in ("seconds", "steps_per_second", "device")},
    }
    monkeypatch.undo()

    train_unit([point.config.to_dict()], [str(point.run_dir)], "cpu", torch.get_num_threads())
    assert run_status(point) == "finished" and load_run(point.run_dir).status["state"] == storage.FINISHED
    assert rows(point.run_dir) == rows(reference)  # the unscheduled checkpoint logged no extra row
    assert_same_weights(weights(point.run_dir, 30), weights(reference, 30))


@pytest.mark.slow
def test_sigterm_to_the_train_command_exits_143_saying_how_to_resume(tmp_path):
    args = [sys.executable, "-m", "icl_mech", "train", *TINY_ARGS, "--steps", "600", "--set=eval_every=50", "--set=checkpoint_every=100"]
    uninterrupted = subprocess.run([*args, "--out", str(tmp_path / "reference")], capture_output=True, text=True)
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    run_dir = tmp_path / "run"
    process = subprocess.Popen([*args, "--out", str(run_dir)], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not storage.checkpoint_path(run_dir, 32).exists():
        assert time.time() < deadline and process.poll() is None, "the run ended before it could be stopped"
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 143
    (line,) = stderr.splitlines()
    stopped = int(re.fullmatch(
        rf"icl-mech train: stopped by SIGTERM at step (\d+), saved there; continue with: icl-mech train --resume --out {run_dir}",
        line,
    )[1])
    assert 32 <= stopped < 600 and stopped in load_run(run_dir).steps

    resumed = subprocess.run([*args, "--out", str(run_dir), "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert rows(run_dir) == rows(tmp_path / "reference")
    assert_same_weights(weights(run_dir, 600), weights(tmp_path / "reference", 600))


@pytest.mark.slow
def test_sigterm_to_a_sweep_stops_every_worker_resumably_and_the_same_command_finishes_it(tmp_path):
    grid, fixed = {"K": [64, 128, 256], "seed": [0, 1]}, {**TINY, "steps": 300, "checkpoint_every": 50}
    args = ["sweep", "--grid=K=64,128,256", "--grid=seed=0..1", *(f"--set={k}={v}" for k, v in fixed.items())]
    args += ["--workers", "2", "--ensemble", "2", "--quiet"]
    sweep_dir = tmp_path / "sweep"
    # The same three units trained without interruption in this process, on a worker's thread count.
    points = plan_sweep(tiny_config(**fixed), grid, tmp_path / "reference")
    for unit in group_units(points, ensemble=2):
        train_unit([p.config.to_dict() for p in unit], [str(p.run_dir) for p in unit], "cpu", max(1, available_cores() // 2))

    process = subprocess.Popen([sys.executable, "-m", "icl_mech", *args, "--out", str(sweep_dir)], stderr=subprocess.PIPE, text=True)
    deadline, children = time.time() + 300, set()
    # one of the two units in flight is past its first checkpoints, so neither has ended and
    # the third has not started
    while not any(storage.checkpoint_path(sweep_dir / run, 16).exists() for run in ("K64-seed0", "K128-seed0")):
        assert time.time() < deadline and process.poll() is None, "the sweep ended before it could be stopped"
        children |= descendants(process.pid)
        time.sleep(0.05)
    children |= descendants(process.pid)
    process.send_signal(signal.SIGTERM)  # to the sweep process alone: it stops its workers itself
    _, stderr = process.communicate(timeout=300)

    assert process.returncode == 143
    assert len(children) >= 3  # two workers and the resource tracker
    deadline = time.time() + 30  # the tracker ends once every process holding its pipe has
    while any(alive(pid) for pid in children) and time.time() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in children if alive(pid)], "a worker or the resource tracker outlived the sweep"
    (line,) = stderr.splitlines()
    assert re.fullmatch(
        rf"icl-mech sweep: stopped by SIGTERM, every run saved where it stood \({sweep_dir}/index.csv: "
        r"(\d) pending, (\d) interrupted\); run the same sweep again to continue",
        line,
    )
    status = dict(read_index(sweep_dir)[["run", "status"]].values)
    leader, laggard = ("K64", "K128") if status["K64-seed0"] == "interrupted" else ("K128", "K64")
    assert [status[f"{leader}-seed{seed}"] for seed in (0, 1)] == ["interrupted"] * 2
    assert status[f"{laggard}-seed0"] == status[f"{laggard}-seed1"] in ("interrupted", "pending")
    assert [status[f"K256-seed{seed}"] for seed in (0, 1)] == ["pending"] * 2
    for run, state in status.items():  # what comes back from a stopped sweep says where each run stands
        if state == "interrupted":
            saved = int(storage.load_tensors(sweep_dir / run / storage.RESUME)[1]["step"])
            ended = storage.read_json(sweep_dir / run / storage.STATUS)
            assert (ended["state"], ended["last_step"]) == (storage.INTERRUPTED, saved), run
        else:
            assert not (sweep_dir / run / storage.STATUS).exists(), run

    assert main([*args, "--out", str(sweep_dir)]) == 0
    assert list(read_index(sweep_dir).status) == ["finished"] * 6
    for point in points:
        run_dir = sweep_dir / point.name
        assert rows(run_dir) == rows(point.run_dir)
        assert_same_weights(weights(run_dir, 300), weights(point.run_dir, 300))
        ended, reference_ended = (storage.read_json(d / storage.STATUS) for d in (run_dir, point.run_dir))
        assert (ended["last_step"], ended["stop_reason"]) == (reference_ended["last_step"], reference_ended["stop_reason"])
