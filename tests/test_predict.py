"""`icl-mech predict` on fake sweeps whose memorization law and ICL times are known exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from icl_mech import preset
from icl_mech.analysis import memorization, prediction
from icl_mech.analysis.icl_time import icl_time_table
from icl_mech.analysis.sweep_table import Levels
from icl_mech.cli import main
from drawn_figures import record_saved_figures, tick_labels
from fake_runs import write_run

#: The fake law: the memorization integral of K items reaches I_K = A K^NU (T1; their IWL-set
#: residual stays at 1/2 for 2 A K^NU steps, then 0), and their IWL accuracy crosses 0.9 at
#: T_MEM K^NU steps; ICL takes T_ICL[N] steps at K = inf.
A, NU, T_MEM = 4.0, 0.75, 4.0
T_ICL = {10: 600, 20: 1200, 40: 2400}
STEPS = np.arange(0, 6001, 10)


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    """Frozen-attention runs at N = 20 whose IWL accuracy rises linearly, crossing 0.9 at exactly
    T_MEM K^NU, and whose IWL-set residual integrates to A K^NU; K = inf runs (2 seeds) whose ICL
    accuracy jumps to 1 at T_ICL[N] +- 10 steps."""
    root = tmp_path_factory.mktemp("predict")
    base = preset("cpu")
    for k in (128, 256, 512, 1024, 2048):
        for seed in (0, 1):
            iwl = np.minimum(1.0, 0.5 + 0.4 * STEPS / (T_MEM * k**NU))
            residual = np.where(STEPS < 2 * A * k**NU, 0.5, 0.0)
            config = base.override(K=k, seed=seed, frozen="attn")
            write_run(root / "mem" / f"K{k}-seed{seed}", config, STEPS, np.full(STEPS.size, 0.5), iwl, iwl_residual=residual)
    for n, t_icl in T_ICL.items():
        for seed, shift in ((0, -10), (1, 10)):
            icl = np.where(STEPS >= t_icl + shift, 1.0, 0.5)
            config = base.override(K=None, N=n, seed=seed)
            write_run(root / "kinf" / f"N{n}-seed{seed}", config, STEPS, icl, np.full(STEPS.size, 0.5))
    for n, k_star in ((10, 300), (20, 800)):  # a transition sweep: ICL above k_star, not below
        for k in (100, 200, 400, 1600, 3200):
            final = 0.97 if k > k_star else 0.52
            config = base.override(K=k, N=n)
            write_run(root / "transition" / f"N{n}-K{k}", config, STEPS, np.full(STEPS.size, final), np.full(STEPS.size, 0.5))
    return root


def test_measured_thresholds_are_drawn_beside_the_prediction(sweeps, tmp_path, capsys):
    args = ["--sweep", str(sweeps / "mem"), "--sweep", str(sweeps / "kinf"), "--N", "10,20"]
    assert main(["predict", *args, "--measured", str(sweeps / "transition"), "--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "predict.csv").set_index("N")
    assert 200 < table.loc[10, "K_star"] < 400 and 800 < table.loc[20, "K_star"] < 1600
    assert "measured K* " in capsys.readouterr().out


@pytest.mark.parametrize(("n_values", "x_labels"), [("10,20,40", ["10", "20", "40"]), ("20", ["20"])])
def test_predict_plot_labels_every_n_and_k_star_within_a_decade(sweeps, tmp_path, monkeypatch, n_values, x_labels):
    """K* from 800 to 5100 (or 1990 to 2030 at one N) spans under a decade: matplotlib's decade
    labels alone left one label or none to read K* by."""
    figures = record_saved_figures(monkeypatch, prediction)
    args = ["--sweep", str(sweeps / "mem"), "--sweep", str(sweeps / "kinf"), "--N", n_values]
    assert main(["predict", *args, "--out", str(tmp_path)]) == 0
    axis = figures["predict"].axes[0]
    assert tick_labels(axis.xaxis) == x_labels
    assert len(tick_labels(axis.yaxis)) >= 3
    low, high = axis.get_xlim()
    assert low >= 5 and high <= 80  # not 1 to 100 around a single N


def test_memorization_scaling_labels_every_k_and_the_steps(sweeps, tmp_path, monkeypatch):
    figures = record_saved_figures(monkeypatch, memorization)
    assert main(["figures", "--sweep", str(sweeps / "mem"), "--only", "memorization", "--out", str(tmp_path)]) == 0
    scaling = figures["memorization"].axes[1]
    assert tick_labels(scaling.xaxis) == ["128", "256", "512", "1024", "2048"]
    assert len(tick_labels(scaling.yaxis)) >= 3  # t_mem 152 to 1217: one decade


def test_predict_solves_the_theorys_threshold_condition_with_an_interval(sweeps, tmp_path, capsys):
    args = ["--sweep", str(sweeps / "mem"), "--sweep", str(sweeps / "kinf"), "--N", "10,20,40"]
    assert main(["predict", *args, "--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "predict.csv")
    assert (tmp_path / "predict.png").read_bytes().startswith(b"\x89PNG")
    assert table.nu.iloc[0] == pytest.approx(NU, abs=0.01) and (table.horizon == STEPS[-1]).all()
    expected = (np.array(list(T_ICL.values())) / (2 * A)) ** (1 / NU)  # 2 A K*^nu = t_ICL(N) (T4)
    np.testing.assert_allclose(table.K_star_predicted, expected, rtol=0.03)
    assert (table.K_star_predicted_low <= table.K_star_predicted).all()
    assert (table.K_star_predicted <= table.K_star_predicted_high).all()
    # Doubling t_ICL multiplies K* by 2^(1/nu): the slope of K* against N is 1/nu here.
    assert np.diff(np.log(table.K_star_predicted)).mean() / np.log(2) == pytest.approx(1 / NU, rel=0.02)
    assert capsys.readouterr().out.startswith("N=10: t_ICL 600 -> predicted K* ")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--N", "10,x"], "--N expects context lengths"),
        (["--N", "30"], "K=inf whole-model runs at N=30"),
    ],
)
def test_bad_predict_input_is_one_line_exit_2_and_writes_nothing(sweeps, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    args = ["predict", "--sweep", str(sweeps / "mem"), "--sweep", str(sweeps / "kinf"), *extra, "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err
    assert not out.exists()


def test_predict_without_memorization_runs_names_what_is_missing(sweeps, tmp_path, capsys):
    assert main(["predict", "--sweep", str(sweeps / "kinf"), "--N", "20", "--out", str(tmp_path / "o")]) == 2
    assert "frozen-attention runs" in capsys.readouterr().err


def test_predict_on_memorization_runs_without_the_iwl_residual_says_to_train_them_again(sweeps, tmp_path, capsys):
    base = preset("cpu")
    for k in (128, 256):
        config = base.override(K=k, frozen="attn")
        write_run(tmp_path / "old" / f"K{k}", config, STEPS, np.full(STEPS.size, 0.5), np.full(STEPS.size, 1.0))
    args = ["predict", "--sweep", str(tmp_path / "old"), "--sweep", str(sweeps / "kinf"), "--N", "20"]
    assert main([*args, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no iwl_residual in its metrics" in err and "train it again" in err
    assert not (tmp_path / "o").exists()


def test_icl_time_table_runs_the_dip_test_on_each_k_with_enough_seeds():
    split = np.r_[np.full(8, 0.52), np.full(8, 0.97)] + np.linspace(0, 0.01, 16)
    table = pd.DataFrame({
        "K": [512.0] * 16 + [64.0] * 3, "seed": [*range(16), *range(3)],
        "icl_acc": [*split, 0.5, 0.5, 0.5], "t_icl": [np.nan] * 8 + [1000.0] * 8 + [np.nan] * 3,
    })
    summary = icl_time_table(table, Levels()).set_index("K")
    assert summary.loc[512, "dip_p"] < 0.01 and summary.loc[512, "bimodal"]
    assert np.isnan(summary.loc[64, "dip"])
