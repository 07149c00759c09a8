"""examples/reproduce_gpu.sh at toy size on the CPU (SMOKE=1): every claim to its runs and figures,
one part of a claim stopped by SIGTERM and continued by the same command, and its results kept
small (examples/keep_results.sh) with the figures made again from the copy alone."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from icl_mech import storage
from icl_mech.cli import main
from icl_mech.sweep import read_index
from processes import alive, descendants

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
#: Each claim, its number of toy runs, and a figure those runs allow (toy runs reach no ICL: no
#: K*, so no threshold_scaling).
EXPERIMENTS = {"claim1": (6, "transition"), "claim3b": (6, "transition"), "claim4": (4, "transience"), "claim6": (2, "transience")}
STOPPED = "reproduce_gpu.sh: stopped by SIGTERM, every run saved where it stood; run the same command again to continue"


def one_core() -> None:
    """Train on one core, so one torch thread: on a shared two-core machine, two threads per tiny
    step wait on each other and run ten times slower."""
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def reproduce(out: Path, *args: str) -> subprocess.Popen:
    """``SMOKE=1 bash examples/reproduce_gpu.sh OUT ARGS`` with this environment's icl-mech."""
    env = {**os.environ, "SMOKE": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.Popen(
        ["bash", str(EXAMPLES / "reproduce_gpu.sh"), str(out), *args],
        env=env, preexec_fn=one_core, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def metrics(sweep: Path) -> dict[str, list[dict]]:
    return {path.parent.name: storage.read_json_lines(path) for path in sorted(sweep.glob(f"*/{storage.METRICS}"))}


@pytest.fixture(scope="module")
def paper(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("paper")
    process = reproduce(out)
    _, stderr = process.communicate(timeout=900)
    assert process.returncode == 0, stderr
    return out


@pytest.mark.slow
def test_smoke_runs_every_experiment_to_finished_runs_figures_and_a_command_log(paper):
    for experiment, (runs, figure) in EXPERIMENTS.items():
        assert list(read_index(paper / experiment).status) == ["finished"] * runs, experiment
        assert (paper / experiment / "figures" / f"{figure}.png").is_file(), experiment
        log = [line.split("\t") for line in (paper / experiment / "commands.log").read_text().splitlines()]
        assert [fields[2] for fields in log] == ["exit 0"] * len(log)
        assert {fields[4].split()[1] for fields in log} == {"sweep", "figures"}
        assert all("--preset paper --device cpu --ensemble 64" in f[4] for f in log if f[4].startswith("icl-mech sweep"))
    k = int((paper / "claim4" / "K").read_text())  # claim 1's K* if inside its grid, else the fallback
    assert k % 2 == 0 and all(f"K{k}-" in run for run in read_index(paper / "claim4").run)


@pytest.mark.slow
def test_sigterm_to_the_script_alone_stops_its_sweep_and_the_same_command_continues(paper, tmp_path):
    """One part of a claim (claim1-high: its largest K), stopped and continued: what was saved says
    where each run stands, and the part's runs end as the whole claim's same runs did."""
    process = reproduce(tmp_path, "claim1-high")
    deadline = time.time() + 300
    while not (tmp_path / "claim1" / "index.csv").exists():  # the sweep has begun
        assert time.time() < deadline and process.poll() is None, "the script ended before it could be stopped"
        time.sleep(0.05)
    children = descendants(process.pid)
    process.send_signal(signal.SIGTERM)  # to bash alone, not its process group
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 143
    assert stderr.splitlines()[-1] == STOPPED
    time.sleep(1)
    assert not [pid for pid in children if alive(pid)], "a process outlived the script"
    index = read_index(tmp_path / "claim1")
    assert "running" not in set(index.status)
    for run in index[index.status == "interrupted"].run:  # saved by training: its status says so
        assert storage.read_json(tmp_path / "claim1" / run / storage.STATUS)["state"] == storage.INTERRUPTED

    rerun = reproduce(tmp_path, "claim1-high")
    _, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    assert list(read_index(tmp_path / "claim1").run) == ["N10-K128-seed0", "N10-K128-seed1"]
    assert list(read_index(tmp_path / "claim1").status) == ["finished"] * 2
    whole = metrics(paper / "claim1")
    assert metrics(tmp_path / "claim1") == {run: whole[run] for run in ("N10-K128-seed0", "N10-K128-seed1")}


def test_an_unknown_experiment_is_one_error_line():
    process = subprocess.run(["bash", str(EXAMPLES / "reproduce_gpu.sh"), "/nonexistent", "claim2"], capture_output=True, text=True)
    assert process.returncode == 2
    assert process.stderr == (
        "reproduce_gpu.sh: unknown experiment 'claim2'; expected a claim (claim1 claim3b claim4 claim6) or a part "
        "(claim1-low claim1-high claim3b-n25-50 claim3b-n200 claim4-seeds0-31 claim4-seeds32-63 claim6-decay "
        "claim6-control)\n"
    )


@pytest.mark.slow
def test_kept_results_hold_no_checkpoints_and_make_the_same_figures_offline(paper, tmp_path):
    results = tmp_path / "results" / "paper"
    for experiment in ("claim1", "claim3b"):
        subprocess.run(["bash", str(EXAMPLES / "keep_results.sh"), str(paper / experiment), str(results / experiment)], check=True)
    kept = results / "claim3b"
    assert {path.name for path in kept.rglob("*") if path.is_file()} == {
        "README.md", "index.csv", "commands.log", storage.CONFIG, storage.METRICS, storage.STATUS
    }
    assert metrics(kept) == metrics(paper / "claim3b")
    readme = (kept / "README.md").read_text()
    assert "torch " in readme and "icl-mech sweep --preset paper" in readme and "Wall time: " in readme
    command = f"icl-mech figures --sweep {kept} --sweep {results / 'claim1'} --out /tmp/figures/claim3b"
    assert command in readme  # the command that made claim 3b's figures, reading the copies

    shutil.move(paper / "claim3b", tmp_path / "moved")  # nothing of the original is reachable
    try:
        assert main(["figures", "--sweep", str(kept), "--sweep", str(results / "claim1"), "--out", str(tmp_path / "figures")]) == 0
    finally:
        shutil.move(tmp_path / "moved", paper / "claim3b")
    assert (tmp_path / "figures" / "transition.png").is_file()
    again, first = (pd.read_csv(d / "transition.csv") for d in (tmp_path / "figures", paper / "claim3b" / "figures"))
    pd.testing.assert_frame_equal(again, first)


def test_keeping_a_directory_that_is_no_sweep_is_one_error_line(tmp_path):
    process = subprocess.run(["bash", str(EXAMPLES / "keep_results.sh"), str(tmp_path), str(tmp_path / "kept")], capture_output=True, text=True)
    assert process.returncode == 2 and not (tmp_path / "kept").exists()
    assert process.stderr == f"keep_results.sh: {tmp_path}/index.csv does not exist: is {tmp_path} a sweep directory?\n"
