"""``python -m benchmarks`` runs end to end (at toy sizes: CI never times anything)."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_benchmark_prints_a_row_per_comparison_with_ratio_and_target():
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick"], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("comparison"))
    rows = lines[header + 2 : header + 11]
    assert [row.split()[0] for row in rows] == [
        "training", "training", "ensemble", "probes", "LLC,", "LLC,", "LLC,", "LLC", "evaluation",
    ]
    assert all(row.rstrip().endswith("x") and "authors' loop" in rows[0] for row in rows)
    assert "MISSED" not in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("members", [1, 3])
def test_profile_prints_flops_phases_and_operators(members):
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.profile_step", "--steps", "2", "--N", "10", "--rows", "5",
         "--members", str(members)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    step_mflop, member_mflop = (float(part.split()[0]) for part in out.split("one step: ")[1].split(", ")[:2])
    assert step_mflop > 0 and step_mflop == pytest.approx(members * member_mflop, rel=0.01)
    phases = [line.split()[0] for line in out.splitlines() if line.rstrip().endswith("%") and "GFLOP" not in line]
    assert phases == ["sample", "forward", "backward", "optimizer"]
    assert "of the matmul rate" in out and "aten::" in out
