"""`icl-mech figures` on a tiny real sweep writes every analysis' PNG and CSV."""

from __future__ import annotations

import pandas as pd
import pytest

from icl_mech import preset
from icl_mech.analysis import FIGURES
from icl_mech.cli import main
from icl_mech.trainer import train

#: Runs a few seconds each: every kind of run an analysis reads, at toy size.
TINY = {"steps": 10, "eval_every": 5, "checkpoint_every": 10, "eval_size": 64, "batch_size": 32, "d_mlp": 64, "lr": 1e-2}


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    base = preset("cpu").override(**TINY)
    grid = [
        *({"N": n, "K": k} for n in (5, 9) for k in (16, 32, 64)),  # transition and K*(N)
        *({"N": 5, "K": k, "equalized": True} for k in (16, 32, 64)),  # equalized contexts
        {"N": 5, "K": 16, "weight_decay_attn": 0.01},  # transience
        *({"N": 5, "K": k, "frozen": "attn", "steps": 40} for k in (16, 32)),  # memorization
    ]
    for index, fields in enumerate(grid):
        train(base.override(**fields), out / f"run{index}", progress=False)
    return out


@pytest.mark.slow
def test_figures_on_a_tiny_sweep_write_every_png_and_csv(tiny_sweep, tmp_path, capsys):
    # Toy runs do not reach the paper's accuracies; loose levels let every analysis find its runs.
    levels = ["--icl-level", "0", "--memorized-level", "0.65"]
    assert main(["figures", "--sweep", str(tiny_sweep), "--out", str(tmp_path), *levels]) == 0
    printed = capsys.readouterr().out
    # phase diagrams take sweeps over one or two fields (tests/test_reddy_analyses.py); this one varies four
    assert printed.count("skipped") == 1 and "phase: skipped: phase needs" in printed
    for name in set(FIGURES) - {"phase"}:
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
        assert not pd.read_csv(tmp_path / f"{name}.csv").empty
    transition = pd.read_csv(tmp_path / "transition.csv")
    assert set(transition.condition) >= {"N=5, equalized=False, weight_decay_attn=0.0", "N=9, equalized=False, weight_decay_attn=0.0"}
    assert set(pd.read_csv(tmp_path / "memorization.csv").K) == {16, 32}
    assert (transition.uncommitted == transition.runs).all()  # no stopping rule: all ended at the budget


@pytest.mark.slow
def test_figures_only_an_analysis_without_its_runs_is_an_error(tiny_sweep, tmp_path, capsys):
    assert main(["figures", "--sweep", str(tiny_sweep), "--out", str(tmp_path), "--only", "memorization"]) == 2
    assert "memorization needs frozen-attention runs" in capsys.readouterr().err
    assert not (tmp_path / "memorization.png").exists()
