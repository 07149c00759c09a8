"""`icl-mech trajectory` (probes/trajectory.py): several runs' query logits over training in their
joint principal components, on the shipped reference runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from icl_mech import storage
from icl_mech.cli import main
from icl_mech.run import load_run
from probes.trajectory import principal_components, trajectory_pca

REFERENCE = Path(__file__).resolve().parents[1] / "checkpoints" / "reference"


def test_points_along_one_direction_put_all_their_variance_on_the_first_component():
    direction = torch.randn(50, generator=torch.Generator().manual_seed(0))
    positions = torch.linspace(-2, 3, 12)
    scores, shares = principal_components(positions[:, None] * direction + 7.0)
    assert shares[0] == pytest.approx(1.0, abs=1e-9) and len(shares) <= 5
    # The first coordinate is the position along the line (up to sign and the line's length).
    assert abs(torch.corrcoef(torch.stack([scores[:, 0], positions.double()]))[0, 1]) == pytest.approx(1.0, abs=1e-9)


def test_icl_and_memorizing_runs_share_one_space_and_one_component_follows_icl_minus_iwl():
    runs = [load_run(REFERENCE / name) for name in ("icl", "memorize")]
    result = trajectory_pca(runs, probe_size=200, progress=False)
    assert len(result.points) == sum(len(run.steps) for run in runs)
    assert list(result.points.run.unique()) == ["icl", "memorize"]
    assert sum(result.explained) <= 1 + 1e-9 and result.explained == sorted(result.explained, reverse=True)
    best = abs(result.correlation[result.separating - 1])
    assert best == max(abs(r) for r in result.correlation) and best > 0.5
    # The two runs end apart on the separating axis, the ICL run on the side of high ICL - IWL.
    column = f"pc{result.separating}"
    ends = result.points.groupby("run")[column].last()
    sign = 1 if result.correlation[result.separating - 1] > 0 else -1
    assert sign * (ends["icl"] - ends["memorize"]) > 0


def test_the_order_of_the_runs_changes_no_number():
    runs = [load_run(REFERENCE / name) for name in ("icl", "memorize", "near")]
    given, swapped = (trajectory_pca(order, probe_size=50, progress=False) for order in (runs, runs[::-1]))
    assert given.explained == swapped.explained and given.correlation == swapped.correlation
    assert list(dict.fromkeys(swapped.points.run)) == ["near", "memorize", "icl"]  # listed as given
    key = ["run", "step"]
    assert given.points.sort_values(key).reset_index(drop=True).equals(swapped.points.sort_values(key).reset_index(drop=True))


def test_trajectory_command_writes_json_csv_and_plot(tmp_path, capsys):
    out = tmp_path / "trajectory"
    args = ["trajectory", "--run", str(REFERENCE / "icl"), "--run", str(REFERENCE / "transient"),
            "--probe-size", "100", "--out", str(out), "--json", "--quiet"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["runs"] == ["icl", "transient"] and 1 <= summary["separating_component"] <= 5
    assert json.loads((out / "trajectory.json").read_text()) == summary
    assert all((out / name).stat().st_size > 0 for name in ("trajectory.csv", "trajectory.png"))


def test_runs_of_other_sequence_shapes_are_refused_in_one_line(tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(REFERENCE / "memorize", other)
    config = json.loads((other / storage.CONFIG).read_text())
    config["task"]["N"] = 10
    (other / storage.CONFIG).write_text(json.dumps(config))
    assert main(["trajectory", "--run", str(REFERENCE / "memorize"), "--run", str(other), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "other sequences" in error
