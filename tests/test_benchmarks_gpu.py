"""``python -m benchmarks --device cuda``: its machinery on the CPU at toy sizes, its arithmetic on
made-up timings, and its one-line refusal without CUDA (nothing here times anything)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import gpu
from benchmarks.__main__ import TOLERANCE, main
from graph_emulation import emulate_graphs
from icl_mech import trainer

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where there is no CUDA")
def test_cuda_table_without_cuda_says_so_in_one_line_and_exits_2():
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--device", "cuda"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert "no CUDA device here" in result.stderr and "python -m benchmarks" in result.stderr


def test_cpu_table_timing_options_are_refused_for_the_cuda_table(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--device", "cuda", "--clock", "cpu"])
    assert exit_info.value.code == 2
    assert "--clock cpu and --repeats are the CPU table's" in capsys.readouterr().err


@pytest.mark.slow
def test_cuda_table_runs_every_row_on_the_cpu_at_toy_sizes_showing_each_as_it_is_measured(monkeypatch):
    sizes, shown, runs_when_shown = gpu.QUICK, [], []
    timed = gpu.training_seconds

    def counted(*args, **kwargs):
        runs_when_shown.append(None)
        return timed(*args, **kwargs)

    monkeypatch.setattr(gpu, "training_seconds", counted)
    measured = gpu.measure(sizes, "cpu", show=lambda line: shown.append((line, len(runs_when_shown))))
    assert measured.authors_steps == sizes.authors_epochs * sizes.config.train.eval_every
    assert measured.authors_loading == f"{sizes.authors_workers} workers"  # memory is pinned on CUDA only
    assert measured.authors_seconds > 0
    for fit, lengths in ((measured.single, sizes.single), (measured.ensemble, sizes.ensemble)):
        assert fit.short_steps == lengths.short
        assert fit.long_steps == lengths.short + lengths.quantum  # no time budget at toy sizes: one more
        assert fit.short_seconds > 0 and fit.long_seconds > 0
    assert measured.prologue is None and measured.metrics_write > 0  # no graphs on the CPU; fsyncs anywhere
    runs = [(line, count) for line, count in shown if line.endswith(("ms per step", "ms per member-step"))]
    assert [line.split(":")[0].split(",")[0] for line, _ in runs] == [
        "authors' loop", "icl_mech train", "icl_mech train", "icl_mech train_ensemble", "icl_mech train_ensemble"
    ]
    # each timed run shown before the next one started (warm-up runs, then short and long, per row)
    assert [count for _, count in runs] == [0, 2, 3, 5, 6]
    report = gpu.format_report(measured, TOLERANCE, check=False).splitlines()
    assert report[2] == "  generator prologue: not measured (no CUDA graphs off CUDA)"
    assert report[3].startswith("  metrics writes: ") and "the 2 rows of one evaluation (every 4 steps)" in report[3]
    assert [line.split("  ")[0] for line in report[-3:]] == [
        "one paper run (469,000 steps), per step", "icl_mech over the authors' loop, per step",
        "64-run paper sweep, per member-step",
    ]
    assert "MISSED" not in "\n".join(report)


def test_two_lengths_fit_start_up_and_per_step_and_project_a_paper_run():
    fit = gpu.TwoLengths(short_steps=4690, short_seconds=3 + 4690e-4, long_steps=46900, long_seconds=3 + 46900e-4)
    assert fit.per_step == pytest.approx(1e-4)
    assert fit.start_up == pytest.approx(3)
    assert fit.projected(gpu.PAPER_STEPS) == pytest.approx(3 + 46.9)


@pytest.mark.parametrize(
    ("lengths", "seconds_per_step", "long_steps"),
    [
        (gpu.FULL.single, 0.3e-3, 4690 + 12 * 4690),  # 40 s / 0.73 ms (2 s start-up included): 55,100 extra steps
        (gpu.FULL.single, 5e-3, 4690 + 2 * 4690),  # 40 s / 5.4 ms: 7,400 extra steps
        (gpu.FULL.ensemble, 30e-3, 2345 + 3 * 469),  # 40 s / 30.9 ms: 1,300 extra steps
    ],
)
def test_long_run_takes_about_its_seconds_at_the_short_runs_speed(lengths, seconds_per_step, long_steps):
    assert lengths.long_steps(2.0 + seconds_per_step * lengths.short) == long_steps


def test_long_run_is_never_longer_than_a_paper_run():
    assert gpu.FULL.single.long_steps(short_seconds=1e-3) == gpu.PAPER_STEPS


def _measured(run_ms_per_step: float, authors_ms_per_step: float, member_ms_per_step: float) -> gpu.Measured:
    """Made-up timings without start-up: a run and an E=64 ensemble step at the given speeds."""
    def fit(ms: float) -> gpu.TwoLengths:
        return gpu.TwoLengths(1000, ms, 11000, 11 * ms)

    return gpu.Measured(
        gpu.FULL, "4 workers, pinned memory", 938, 938e-3 * authors_ms_per_step,
        single=fit(run_ms_per_step), ensemble=fit(member_ms_per_step * gpu.FULL.members),
        prologue=(0.7e-3, 0.1e-3), metrics_write=0.4690,
    )


def test_targets_on_time_are_met_and_a_sweep_projects_to_thirty_minutes():
    measured = _measured(run_ms_per_step=0.5, authors_ms_per_step=15.0, member_ms_per_step=0.06)
    assert gpu.missed(measured, TOLERANCE) == []
    report = gpu.format_report(measured, TOLERANCE)
    assert "0.500 ms = 3.9 min" in report and "30.0x" in report and "0.060 ms = 30.0 min" in report
    assert "MISSED" not in report
    # the E=64 step of 3.84 ms: 0.6 ms of generator prologue, 1 ms of metrics writes per step
    assert "generator prologue: 0.600 ms per step (15.6%): a replay drawing from 64 registered generators 0.700 ms, " \
        "from one 0.100 ms" in report
    assert "metrics writes: 1.000 ms per step (26.0%) on the writer thread, 469.0 ms for the 64 rows" in report


def test_targets_missed_by_more_than_the_tolerance_are_marked():
    measured = _measured(run_ms_per_step=0.55, authors_ms_per_step=10.0, member_ms_per_step=0.1)
    # 0.55 ms is 10% over its bound (tolerated); 18x and 0.1 ms are 40% short of theirs
    assert gpu.missed(measured, TOLERANCE) == [
        "icl_mech over the authors' loop, per step", "64-run paper sweep, per member-step"
    ]
    marked = [line for line in gpu.format_report(measured, TOLERANCE).splitlines() if line.endswith("MISSED")]
    assert [line.split("  ")[0] for line in marked] == gpu.missed(measured, TOLERANCE)


def test_a_timed_run_that_recorded_no_graphs_is_refused_not_reported(monkeypatch):
    """Where the trainer should capture, a run that recorded fewer than its two graphs would be an
    eager timing reported as the captured path's: the table stops with ``NotCaptured``. The
    emulated graphs (on the CPU) record two and pass."""
    configs = [gpu.QUICK.config]
    emulate_graphs(monkeypatch)
    assert gpu.training_seconds(configs, 4, "cpu") > 0
    monkeypatch.setattr(trainer, "captures", lambda device, capture: False)  # its evaluation runs eagerly
    with pytest.raises(gpu.NotCaptured, match=r"recorded 1 CUDA graphs, not 2 \(update and evaluation\)"):
        gpu.training_seconds(configs, 4, "cpu")
