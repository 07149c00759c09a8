"""Sweeps: grid parsing, skip/resume of finished and interrupted runs, failures recorded, Slurm path."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from icl_mech import ConfigError, TrainingStopped, preset, storage, trainer
from icl_mech import sweep as sweep_module
from icl_mech.trainer import train
from icl_mech.analysis.sweep_table import load_sweeps
from icl_mech.cli import main
from icl_mech.sweep import (
    ERROR,
    SlurmOptions,
    group_units,
    parse_grid,
    plan_sweep,
    read_index,
    run_status,
    run_sweep,
    train_unit,
    unit_threads,
    write_index,
)

TINY = {"steps": 6, "eval_every": 2, "checkpoint_every": 2, "eval_size": 64, "batch_size": 16, "d_mlp": 16}


def tiny_base():
    return preset("cpu").override(**TINY)


@pytest.mark.parametrize(
    ("spec", "values"),
    [
        ("K=64,128,...,4096", [64, 128, 256, 512, 1024, 2048, 4096]),
        ("seed=0..3", [0, 1, 2, 3]),
        ("N=10,20,...,50", [10, 20, 30, 40, 50]),
        ("weight_decay_attn=0,3e-3", [0, 0.003]),
        ("K=inf,64", [None, 64]),
        ("equalized=true,false", [True, False]),
    ],
)
def test_grid_values_read_lists_ranges_and_progressions(spec, values):
    assert list(parse_grid([spec]).values()) == [values]


@pytest.mark.parametrize(
    ("specs", "named"),
    [(["K"], "FIELD=VALUES"), (["seed=3..1"], "empty"), (["K=64,96,...,4010"], "does not reach"), (["K=1,2", "K=3"], "twice")],
)
def test_bad_grid_specs_are_refused_naming_the_spec(specs, named):
    with pytest.raises(ConfigError, match=named):
        parse_grid(specs)


def test_invalid_grid_point_is_refused_before_training(tmp_path):
    with pytest.raises(ConfigError, match="grid point K3-seed0"):
        plan_sweep(tiny_base(), {"K": [64, 3], "seed": [0]}, tmp_path)
    assert not tmp_path.joinpath("K64-seed0").exists()


def test_points_are_named_by_their_grid_values(tmp_path):
    points = plan_sweep(tiny_base(), parse_grid(["K=64,inf", "weight_decay_attn=3e-3"]), tmp_path)
    assert [p.name for p in points] == ["K64-weight_decay_attn0.003", "Kinf-weight_decay_attn0.003"]
    assert points[1].config.task.K is None and points[1].config.train.weight_decay_attn == 0.003


def test_ensemble_groups_only_points_differing_in_seed_and_k(tmp_path):
    grid = parse_grid(["K=64,128", "seed=0..2", "lr=1e-3,1e-2"])
    units = group_units(plan_sweep(tiny_base(), grid, tmp_path), ensemble=4)
    assert sorted(len(u) for u in units) == [2, 2, 4, 4]
    for unit in units:
        assert len({p.config.train.lr for p in unit}) == 1


def test_a_failing_run_is_recorded_failed_and_retried_later(tmp_path):
    (point,) = plan_sweep(tiny_base(), {"K": [64]}, tmp_path)
    point.run_dir.mkdir()
    (point.run_dir / "notes.txt").write_text("not a run")  # train refuses a non-run directory
    train_unit([point.config.to_dict()], [str(point.run_dir)], "cpu", 1)
    assert run_status(point) == "failed"
    assert "not a run directory" in (point.run_dir / ERROR).read_text()
    (point.run_dir / "notes.txt").unlink()
    train_unit([point.config.to_dict()], [str(point.run_dir)], "cpu", 1)
    assert run_status(point) == "finished" and not (point.run_dir / ERROR).exists()


def test_a_unit_run_in_process_gives_back_the_callers_thread_count(tmp_path):
    (point,) = plan_sweep(tiny_base(), {"K": [64]}, tmp_path)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        train_unit([point.config.to_dict()], [str(point.run_dir)], "cpu", 1)
        assert run_status(point) == "finished" and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("flags", "omp", "expected"),
    [([], None, 2), ([], "3", 3), (["--threads", "1"], "3", 1), ([], "1,1", 1)],
    ids=["all cores", "OMP_NUM_THREADS", "--threads over OMP_NUM_THREADS", "OMP_NUM_THREADS nested"],
)
def test_a_sweep_unit_trains_on_threads_then_omp_num_threads_then_the_cores(tmp_path, monkeypatch, flags, omp, expected):
    """With one worker the unit trains in this process, so the trainer can be watched."""
    seen = []
    real_train = sweep_module.train

    def train(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real_train(*args, **kwargs)

    monkeypatch.setattr(sweep_module, "train", train)
    monkeypatch.setattr(sweep_module, "available_cores", lambda: 2)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    if omp is not None:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    tiny = [f"--set={name}={value}" for name, value in TINY.items()]
    assert main(["sweep", "--grid", "K=64", *tiny, *flags, "--out", str(tmp_path), "--quiet"]) == 0
    assert seen == [expected]


@pytest.mark.parametrize(
    ("threads", "omp", "executor", "workers", "expected"),
    [
        (None, None, "local", 4, 2),  # 8 cores over 4 workers
        (None, None, "local", 16, 1),  # never below one
        (None, "3", "local", 4, 3),  # OMP_NUM_THREADS is per worker, not divided among them
        (5, "3", "local", 4, 5),
        (None, None, "slurm", 1, 6),  # a Slurm task's cores
        (None, "3", "slurm", 1, 3),
    ],
)
def test_omp_num_threads_and_threads_count_per_worker(monkeypatch, threads, omp, executor, workers, expected):
    monkeypatch.setattr(sweep_module, "available_cores", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    if omp is not None:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    assert unit_threads(threads, executor, workers, SlurmOptions(cpus=6)) == expected


@pytest.mark.slow
def test_rerunning_a_sweep_skips_finished_runs_and_resumes_interrupted_ones(tmp_path):
    base, grid = tiny_base(), {"K": [64], "seed": [0, 1]}
    fresh, interrupted = plan_sweep(base, grid, tmp_path)
    # The second point was interrupted after step 4: its checkpoints up to 4 exist, no status.
    train(interrupted.config.override(steps=4), interrupted.run_dir, progress=False)
    (interrupted.run_dir / storage.STATUS).unlink()
    kept = storage.checkpoint_path(interrupted.run_dir, 2)
    kept_mtime = kept.stat().st_mtime_ns
    assert run_status(interrupted) == "interrupted"

    index = run_sweep(base, grid, tmp_path, workers=1, progress=False)
    assert list(index.status) == ["finished", "finished"]
    assert list(index.last_step) == [6, 6]
    assert kept.stat().st_mtime_ns == kept_mtime  # resumed from step 4, not retrained
    steps = [row["step"] for row in storage.read_json_lines(interrupted.run_dir / storage.METRICS)]
    assert steps == [0, 1, 2, 4, 6]  # every evaluated step once, nothing lost or duplicated
    assert read_index(tmp_path)[["run", "status", "last_step"]].values.tolist() == [
        ["K64-seed0", "finished", 6], ["K64-seed1", "finished", 6]
    ]

    mtimes = {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*.safetensors")}
    again = run_sweep(base, grid, tmp_path, workers=1, progress=False)
    assert list(again.status) == ["finished", "finished"]
    assert {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*.safetensors")} == mtimes


@pytest.mark.slow
def test_slurm_path_runs_a_two_point_grid_through_submitit_local_executor(tmp_path):
    index = run_sweep(
        tiny_base(), {"seed": [0, 1]}, tmp_path, executor="slurm", slurm=SlurmOptions(cluster="local", cpus=1), progress=False
    )
    assert list(index.status) == ["finished", "finished"]
    assert (tmp_path / "seed1" / storage.STATUS).exists()
    assert any((tmp_path / "slurm").rglob("*_submitted.pkl"))  # it went through submitit


def test_sweep_command_reports_bad_grid_in_one_line(capsys, tmp_path):
    assert main(["sweep", "--grid", "K=64,96,...,4010", "--out", str(tmp_path)]) == 2
    assert "does not reach 4010" in capsys.readouterr().err


def test_index_keeps_rows_of_points_from_an_earlier_grid(tmp_path):
    first = plan_sweep(tiny_base(), {"seed": [0]}, tmp_path)
    second = plan_sweep(tiny_base(), {"seed": [1]}, tmp_path)
    write_index(tmp_path, first)
    table = write_index(tmp_path, second)
    assert sorted(table.run) == ["seed0", "seed1"]
    assert sorted(read_index(tmp_path).run) == ["seed0", "seed1"]


def test_an_ensemble_unit_trains_every_member_into_its_own_run_directory(tmp_path):
    points = plan_sweep(tiny_base(), {"K": [64, 128], "seed": [0, 1]}, tmp_path)
    (unit,) = group_units(points, ensemble=4)
    train_unit([p.config.to_dict() for p in unit], [str(p.run_dir) for p in unit], "cpu", 1)
    assert [run_status(p) for p in points] == ["finished"] * 4
    assert storage.read_json(points[3].run_dir / storage.CONFIG)["task"]["K"] == 128


@pytest.mark.sigterm
def test_sigterm_before_training_stops_a_one_worker_sweep_once_training_begins(tmp_path, monkeypatch):
    """With one worker the units train in the sweep process; a SIGTERM that comes while a unit
    opens its runs (before the trainer's own handler) is resent until training stops at it."""
    base = tiny_base().override(steps=2000, eval_every=50, checkpoint_every=500)  # many seconds
    real_build_model = trainer.build_model

    def build_model(config, device):
        if config.train.seed == 0 and config.task.K == 64:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_build_model(config, device)

    monkeypatch.setattr(trainer, "build_model", build_model)
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingStopped, match=r"stopped by SIGTERM, every run saved where it stood \(.*index.csv: "
                       r"2 pending, 2 interrupted\); run the same sweep again to continue"):
        run_sweep(base, {"K": [64, 128], "seed": [0, 1]}, tmp_path, workers=1, ensemble=2, progress=False)
    assert signal.getsignal(signal.SIGTERM) == handler
    index = read_index(tmp_path)
    assert list(index.status) == ["interrupted", "interrupted", "pending", "pending"]
    # stopped in training (only training writes resume state), at the step it reached: which one
    # depends on when the resent signal lands, step 0 included (before the first update)
    saved = storage.load_tensors(tmp_path / "K64-seed0" / storage.RESUME)[1]["step"]
    assert 0 <= int(saved) < 2000
    # every run it stopped says so, at the step saved; the pending ones have no status yet
    for run in ("K64-seed0", "K64-seed1"):
        status = storage.read_json(tmp_path / run / storage.STATUS)
        assert (status["state"], status["last_step"]) == (storage.INTERRUPTED, int(saved))
    assert not [path for path in tmp_path.glob(f"K128-*/{storage.STATUS}")]
    with pytest.raises(ConfigError, match="no finished run directories"):  # interrupted runs are not results
        load_sweeps([tmp_path])


def test_a_sweep_ended_by_ctrl_c_leaves_no_run_marked_running(tmp_path, monkeypatch):
    def stop_reason(history, train_cfg):
        if history[-1]["step"] == 4:  # checkpointed at 0, 1, 2 before
            raise KeyboardInterrupt
        return None

    monkeypatch.setattr(trainer, "stop_reason", stop_reason)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(tiny_base(), {"seed": [0, 1]}, tmp_path, progress=False)
    assert list(read_index(tmp_path).status) == ["interrupted", "pending"]
