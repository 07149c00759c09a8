"""`icl-mech figures` on a tiny real sweep writes every analysis' PNG and CSV; K* on fake sweeps
whose transition is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from icl_mech import preset
from icl_mech.analysis import FIGURES, icl_time, plotting, threshold_scaling, transition
from icl_mech.cli import main
from icl_mech.trainer import train
from drawn_figures import record_saved_figures, tick_labels
from fake_runs import write_run

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
    # phase diagrams take sweeps over one or two fields (tests/test_reddy_analyses.py); this one varies
    # four. Toy runs reach no ICL, so no N has a K* to scale (tests below read fake runs that do).
    assert printed.count("skipped") == 2 and "phase: skipped: phase needs" in printed
    assert "threshold_scaling: skipped: threshold_scaling needs a K*" in printed
    assert "N=9, equalized=False, weight_decay_attn=0.0: no K reached ICL (mean final ICL >= 0.75, half way " \
        "from chance to 1), so K* > 64 (outside the swept K)" in printed
    for name in set(FIGURES) - {"phase", "threshold_scaling"}:
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
        assert not pd.read_csv(tmp_path / f"{name}.csv").empty
    transition = pd.read_csv(tmp_path / "transition.csv")
    assert set(transition.condition) >= {"N=5, equalized=False, weight_decay_attn=0.0", "N=9, equalized=False, weight_decay_attn=0.0"}
    assert transition.K_star.isna().all() and transition.K_star_bound.str.startswith("> ").all()  # none reached ICL
    assert set(pd.read_csv(tmp_path / "memorization.csv").K) == {16, 32}
    assert (transition.uncommitted == transition.runs).all()  # no stopping rule: all ended at the budget


@pytest.mark.slow
def test_figures_only_an_analysis_without_its_runs_is_an_error(tiny_sweep, tmp_path, capsys):
    assert main(["figures", "--sweep", str(tiny_sweep), "--out", str(tmp_path), "--only", "memorization"]) == 2
    assert "memorization needs frozen-attention runs" in capsys.readouterr().err
    assert not (tmp_path / "memorization.png").exists()


#: Fake runs' final ICL accuracy by K: a transition between 200 and 400 at N = 10 and between 400
#: and 1600 at N = 20 (K*(N) known to lie there).
FINAL_ICL = {
    10: {50: 0.5, 100: 0.52, 200: 0.55, 400: 0.96, 1600: 0.98, 3200: 0.99, 6400: 0.99},
    20: {50: 0.5, 100: 0.5, 200: 0.51, 400: 0.53, 1600: 0.97, 3200: 0.98, 6400: 0.99},
}


def fake_transition_sweep(root: Path, ks: tuple[int, ...]) -> Path:
    """Two seeds per (N, K) of ``FINAL_ICL``, restricted to ``ks``, whose accuracies are final from step 0."""
    steps = np.arange(0, 101, 50)
    for n, finals in FINAL_ICL.items():
        for k in ks:
            for seed, shift in ((0, -0.01), (1, 0.01)):
                config = preset("cpu").override(N=n, K=k, seed=seed)
                icl = np.full(steps.size, min(1.0, finals[k] + shift))
                write_run(root / f"N{n}-K{k}-seed{seed}", config, steps, icl, np.full(steps.size, 0.5))
    return root


def test_k_star_inside_the_swept_k_is_fitted_and_scaled_against_n(tmp_path, capsys):
    sweep = fake_transition_sweep(tmp_path / "sweep", (100, 200, 400, 1600, 3200))
    assert main(["figures", "--sweep", str(sweep), "--out", str(tmp_path / "figures")]) == 0
    transition = pd.read_csv(tmp_path / "figures" / "transition.csv").set_index("N")
    assert 200 < transition.loc[10, "K_star"] < 400 and 400 < transition.loc[20, "K_star"] < 1600
    assert transition.K_star_bound.isna().all()  # an empty column reads back as NaN
    assert (tmp_path / "figures" / "threshold_scaling.png").read_bytes().startswith(b"\x89PNG")
    printed = capsys.readouterr().out
    scaling = pd.read_csv(tmp_path / "figures" / "threshold_scaling.csv").iloc[0]
    assert scaling.slope_boot_low <= scaling.slope <= scaling.slope_boot_high and scaling.boot_dropped == 0
    assert (f"threshold_scaling: slope {scaling.slope:.2f}, 95% bootstrap over seeds within each K "
            f"[{scaling.slope_boot_low:.2f}, {scaling.slope_boot_high:.2f}] (2000 draws, 0 dropped") in printed
    assert "vs predicted 1/nu = 1.43 (paper nu 0.70)" in printed  # no memorization runs in the sweep


def test_predicted_slope_reads_t1s_nu_from_c1_and_the_t_mem_fit_beside_it(tmp_path, capsys):
    """Memorization runs whose IWL-set residual makes I_K(H) = A K^0.5 (T1) while IWL accuracy
    reaches 0.9 at t_mem = 2 K^0.8: both exponents are measured, each with its 1/nu."""
    sweep = fake_transition_sweep(tmp_path / "sweep", (100, 200, 400, 1600, 3200))
    horizon = 40_000
    steps = np.linspace(0, horizon, 401)
    for k in (128, 256, 512, 1024):
        config = preset("cpu").override(K=k, frozen="attn")
        iwl = np.clip(0.5 + 0.4 * steps / (2 * k**0.8), 0, 1)
        write_run(sweep / f"mem-K{k}", config, steps, np.full(steps.size, 0.5), iwl, iwl_residual=np.full(steps.size, 3 * k**0.5 / horizon))
    assert main(["figures", "--sweep", str(sweep), "--out", str(tmp_path / "figures"), "--only", "threshold_scaling"]) == 0
    assert "vs predicted 1/nu = 2.00 (T1 nu 0.50), 1.25 (t_mem nu 0.80)" in capsys.readouterr().out
    scaling = pd.read_csv(tmp_path / "figures" / "threshold_scaling.csv").iloc[0]
    assert (scaling.nu_source, scaling.nu_T1, scaling.nu_t_mem) == ("T1", pytest.approx(0.5), pytest.approx(0.8))


def test_log_k_and_n_axes_label_every_swept_value(tmp_path, monkeypatch):
    """Matplotlib alone labels only the decades: "10^3" for the whole of K = 100 to 3200."""
    figures = record_saved_figures(monkeypatch, transition, threshold_scaling, icl_time)
    sweep = fake_transition_sweep(tmp_path / "sweep", (100, 200, 400, 1600, 3200))
    assert main(["figures", "--sweep", str(sweep), "--out", str(tmp_path / "figures"), "--icl-level", "0.9"]) == 0
    assert tick_labels(figures["transition"].axes[0].xaxis) == ["100", "200", "400", "1600", "3200"]
    assert tick_labels(figures["icl_time"].axes[1].xaxis) == ["100", "200", "400", "1600", "3200"]
    scaling = figures["threshold_scaling"].axes[0]
    assert tick_labels(scaling.xaxis) == ["10", "20"]
    assert len(tick_labels(scaling.yaxis)) >= 2  # K* from 278 to 803: under a decade, still labelled


def test_swept_values_too_close_to_label_apart_are_thinned_and_a_lone_value_is_centred():
    figure = Figure()
    axis = figure.subplots()
    axis.set_xscale("log")
    plotting.tick_swept(axis.xaxis, [256, 512, 1024, 1722, 1820, 2048, 4096, 4096, np.inf])
    # 1820 and 2048 lie within a tenth of the axis of 1722: labelled, they would overprint it
    assert list(axis.xaxis.get_majorticklocs()) == [256, 512, 1024, 1722, 4096]
    axis.set_yscale("log")
    plotting.tick_swept(axis.yaxis, [20])
    assert axis.get_ylim() == (10, 40)


@pytest.mark.parametrize(
    ("ks", "bound", "why"),
    [
        ((50, 100, 200), "> 200", "no K reached ICL"),  # the grid stops below both transitions
        ((1600, 3200, 6400), "< 1600", "every K reached ICL"),  # ... starts above both
    ],
)
def test_a_k_star_outside_the_swept_k_is_not_reported_but_bounded(tmp_path, capsys, ks, bound, why):
    """A sigmoid fitted to runs on one side of the transition puts K* anywhere, with an interval
    that looks tight; figures gives the bound the runs support instead."""
    sweep = fake_transition_sweep(tmp_path / "sweep", ks)
    assert main(["figures", "--sweep", str(sweep), "--only", "transition", "--out", str(tmp_path / "figures")]) == 0
    printed = capsys.readouterr().out
    assert printed.count(f"{why} (mean final ICL >= 0.75, half way from chance to 1), so K* {bound}") == 2
    assert "K*=" not in printed
    transition = pd.read_csv(tmp_path / "figures" / "transition.csv")
    assert transition.K_star.isna().all() and transition.K_star_low.isna().all()
    assert list(transition.K_star_bound) == [bound] * 2
