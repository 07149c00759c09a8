"""``icl-mech theory`` on a tiny sweep trained here: as trained (nothing acquires ICL in a few
steps), and with metrics logs rewritten so that every prediction has a known answer."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from icl_mech import load_run, storage
from icl_mech.analysis import theory_beta0
from icl_mech.analysis.theory_beta0 import beta0_agreement
from icl_mech.errors import ConfigError
from icl_mech.cli import main
from icl_mech.ensemble import train_ensemble
from icl_mech.theory.beta0 import SEQUENCES, initial_match_sharpness, match_sharpness
from icl_mech.theory.early_flow import early_gaps, flow_beta

from conftest import cpu_config
from test_theory_loss_tie import ETA, tied_losses

TINY = {"steps": 4, "eval_every": 2, "checkpoint_every": 2, "eval_size": 64, "batch_size": 16, "d_mlp": 16}
SWEPT_K, MEMORIZED_K, INFINITE_SEEDS = (64, 128, 256), (64, 128, 256), range(5)


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory) -> Path:
    """Memorization runs at three K, five K = infinity seeds and a two-seed K sweep, 4 steps each."""
    sweep = tmp_path_factory.mktemp("theory") / "sweep"
    plain = {f"Kinf-seed{s}": cpu_config(K=None, seed=s, **TINY) for s in INFINITE_SEEDS}
    plain |= {f"K{k}-seed{s}": cpu_config(K=k, seed=s, **TINY) for k in SWEPT_K for s in (0, 1)}
    memorizing = {f"mem-K{k}": cpu_config(K=k, frozen=("attn",), **TINY) for k in MEMORIZED_K}
    for group in (plain, memorizing):
        train_ensemble(list(group.values()), [sweep / name for name in group], progress=False)
    return sweep


def theory(*args: str, capsys) -> tuple[int, str]:
    code = main(["theory", *args])
    return code, capsys.readouterr().out


def test_theory_on_a_tiny_sweep_writes_its_files_and_a_verdict_per_prediction(tiny_sweep, tmp_path, capsys):
    code, out = theory("--sweep", str(tiny_sweep), "--out", str(tmp_path / "out"), capsys=capsys)
    assert code == 0
    lines = out.splitlines()
    assert [line.split(":")[0] for line in lines[:7]] == ["T1", "T3 N=20", "T4 N=20", "beta0 N=20", "T5", "T6 N=20", "T7 N=20"]
    assert "not measured" in lines[1]  # 4 steps: no K = infinity seed reached ICL
    assert "no weight-decay sweep" in lines[4]
    assert "measured: no K sweep with equalized=false and true at this N" in lines[5]
    assert lines[6].startswith("T7 N=20: not measured: no run reached ICL accuracy 0.75")
    for name in ("theory.json", "theory.csv", "theory_T1.png", "theory_T3.png", "theory_T4.png", "theory_T6.png", "theory_T7.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    result = json.loads((tmp_path / "out" / "theory.json").read_text())
    assert len(result["runs"]) == 5 + 6 + 3
    assert result["predicted"]["20"]["kstar"] is None  # every K = infinity seed is censored: K* infinite
    assert result["predicted"]["20"]["censored_above_I_K"] == 2  # censored from the first run's end, step 4
    assert result["measured"]["20"]["n_seeds"] == [2, 2, 2]
    assert result["T7"]["20"] == {"level": 0.75, "n_runs": 0, "skipped": 6, "why": result["T7"]["20"]["why"]}


def test_theory_checks_each_seeds_beta0_against_the_flow_fitted_to_its_later_checkpoints(tiny_sweep, tmp_path, capsys, monkeypatch):
    """Each K = infinity seed's later gaps are written as the flow from its step-0 reading + 0.3:
    the check must find that offset, seed by seed."""
    def flow_from_step_0(run):
        steps = np.array([1.0, 2.0, 4.0, 100.0, 400.0, 900.0])
        return steps, flow_beta(steps, initial_match_sharpness(run) + 0.3, 1000.0)

    monkeypatch.setattr(theory_beta0, "early_gaps", flow_from_step_0)
    code, out = theory("--sweep", str(tiny_sweep), "--out", str(tmp_path / "out"), "--json", capsys=capsys)
    assert code == 0
    result = json.loads(out)
    infinite = [row for row in result["runs"] if row["part"] == "K=inf"]
    assert len(infinite) == 5
    for row in infinite:
        assert row["beta0_fit"] == pytest.approx(row["beta0"] + 0.3, abs=1e-5) and row["flow_rms"] < 1e-5
    check = result["beta0_check"]["20"]
    assert check["n"] == 5 and check["r"] == pytest.approx(1.0) and check["difference"] == pytest.approx(0.3, abs=1e-5)
    assert any(line.startswith("beta0 N=20: flow fitted after step 0") for line in result["verdicts"])
    assert all(row.get("beta0_fit") is None for row in result["runs"] if row["part"] != "K=inf")


def test_early_gaps_are_the_score_gaps_at_the_checkpoints_after_step_0(tiny_sweep):
    run = load_run(tiny_sweep / "Kinf-seed0")
    steps, gaps = early_gaps(run)
    assert steps.tolist() == [1, 2, 4]  # the tiny runs' gaps stay far below ln N
    icl = run.eval_sets()["icl"][:SEQUENCES]
    assert gaps == pytest.approx([match_sharpness(run.model(step), icl) for step in (1, 2, 4)], rel=1e-6)
    with pytest.raises(ConfigError, match="reads K = infinity runs"):
        early_gaps(load_run(tiny_sweep / "K64-seed0"))


def test_beta0_agreement_of_a_constant_offset_is_perfectly_correlated_with_that_offset():
    measured = np.array([-1.0, -0.2, 0.3, 0.9, np.nan])
    seeds = pd.DataFrame({"beta0": measured, "beta0_fit": measured + 0.25, "flow_rms": 0.1, "flow_span": [1, 2, 3, 4, 5]})
    check = beta0_agreement(seeds)
    assert check["n"] == 4 and check["not_fitted"] == 1 and check["r"] == pytest.approx(1.0)
    for key in ("difference", "difference_low", "difference_high"):  # no spread: the interval closes on it
        assert check[key] == pytest.approx(0.25, abs=1e-12)
    assert check["median_rms"] == pytest.approx(0.1) and check["median_span"] == 2.5
    assert beta0_agreement(seeds[:2])["r"] is None  # two seeds: nothing to compare


def _rewrite(run: Path, steps: list[int], icl_acc: list[float], c1: float | None = None, budget: int | None = None,
             losses: tuple[np.ndarray, np.ndarray] | None = None, iwl_residual: float | None = None) -> None:
    """Replace ``run``'s metrics log by one with these ICL accuracies (and a constant c1 and
    iwl_residual, and these ICL and IWL losses: ln 2 at every step without)."""
    icl_loss, iwl_loss = losses or (np.full(len(steps), math.log(2)),) * 2
    rows = [{"step": s, "icl_acc": a, "iwl_acc": 0.5, "train_acc": 0.5, "icl_loss": float(li), "iwl_loss": float(lw),
             **{name: value for name, value in (("c1", c1), ("iwl_residual", iwl_residual)) if value is not None}}
            for s, a, li, lw in zip(steps, icl_acc, icl_loss, iwl_loss)]
    (run / storage.METRICS).write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = storage.read_json(run / storage.CONFIG)
    config["train"]["steps"] = budget or steps[-1]
    storage.write_json(run / storage.CONFIG, config)
    storage.write_json(run / storage.STATUS, {"state": storage.FINISHED, "last_step": steps[-1], "stopped_early": False})


@pytest.mark.parametrize("residual", ["c1", "iwl_residual"])
def test_theory_recovers_the_slope_the_exponent_and_the_threshold_written_into_the_logs(tiny_sweep, tmp_path, capsys, residual):
    """K = infinity seeds acquire ICL at t = T e^-beta0 (T3: slope -1); the MLP alone has I_K(H) =
    A K^0.7 (T1) in the residual ``--residual`` names, while the other is the same at every K; A
    puts T4's K* at 128, where the K sweep's seeds split."""
    sweep = Path(shutil.copytree(tiny_sweep, tmp_path / "sweep"))
    horizon, nu = 4_000_000, 0.7
    times = {}
    for seed in INFINITE_SEEDS:
        run = sweep / f"Kinf-seed{seed}"
        times[seed] = round(1e6 * math.exp(-initial_match_sharpness(load_run(run))))
        _rewrite(run, [0, times[seed], horizon], [0.5, 0.96, 0.97])
    prefactor = float(np.median(list(times.values()))) / (2 * 128**nu)
    for k in MEMORIZED_K:
        law, flat = prefactor * k**nu / horizon, 0.25
        _rewrite(sweep / f"mem-K{k}", [0, horizon], [0.5, 0.5], **{residual: law, ({"c1", "iwl_residual"} - {residual}).pop(): flat})
    outcomes = {64: (0.5, 0.5), 128: (0.5, 0.99), 256: (0.99, 0.99)}
    for k, finals in outcomes.items():
        for seed, final in enumerate(finals):
            _rewrite(sweep / f"K{k}-seed{seed}", [0, horizon], [0.5, final], c1=0.1)
    code, out = theory("--sweep", str(sweep), "--out", str(tmp_path / "out"), "--json", "--residual", residual, capsys=capsys)
    assert code == 0
    result = json.loads(out)
    assert result == json.loads((tmp_path / "out" / "theory.json").read_text())
    assert result["memorization"]["residual"] == residual
    assert result["memorization"]["nu"] == pytest.approx(nu, rel=1e-6)
    assert result["memorization"]["prefactor"] == pytest.approx(prefactor, rel=1e-6)
    t3 = result["beta0_vs_t_icl"]["20"]
    assert t3["slope"] == pytest.approx(-1, abs=0.01) and t3["n"] == 5
    predicted, measured = result["predicted"]["20"], result["measured"]["20"]
    assert predicted["kstar"] == pytest.approx(128, rel=1e-6)
    assert predicted["censored_above_I_K"] is None  # every K = infinity seed reached ICL: nothing censored
    assert predicted["K"] == [64, 128, 256] and predicted["p_icl"][0] < 0.5 <= predicted["p_icl"][2]
    assert measured["fraction"] == [0, 0.5, 1] and measured["n_seeds"] == [2, 2, 2]
    assert {row["part"] for row in result["runs"]} == {"memorization", "K=inf", "K sweep"}
    assert result["verdicts"][1].startswith("T3 N=20: ln t_ICL on beta0, slope -1.00")


def test_theory_recovers_the_eta_of_icl_and_iwl_losses_tied_by_the_shared_residual(tiny_sweep, tmp_path, capsys):
    """Two K-sweep seeds acquire ICL at once and log ICL and IWL losses built from T7's relation
    with eta' = 0.02 (tests/test_theory_loss_tie.py); the other runs, as trained, are skipped."""
    sweep = Path(shutil.copytree(tiny_sweep, tmp_path / "sweep"))
    steps = list(range(3001))  # tied_losses' steps
    for seed, (zeta0, amplitude, tau) in enumerate([(0.5, 1.0, 200.0), (1.5, 0.6, 500.0)]):
        _rewrite(sweep / f"K256-seed{seed}", steps, [0.9] * len(steps), c1=0.1, losses=tied_losses(zeta0, amplitude, tau))
    code, out = theory("--sweep", str(sweep), "--out", str(tmp_path / "out"), "--json", capsys=capsys)
    assert code == 0
    t7 = json.loads(out)["T7"]["20"]
    assert t7["eta"] == pytest.approx(ETA, rel=1e-6) and t7["r2"] == pytest.approx(1, abs=1e-9)
    assert (t7["n_runs"], t7["skipped"]) == (2, 4) and [run["t_a"] for run in t7["runs"]] == [0, 0]
    assert json.loads(out)["verdicts"][-1].endswith("holds")
    assert (tmp_path / "out" / "theory_T7.png").stat().st_size > 0


def test_a_sweep_with_both_context_arms_gets_a_measured_t6_while_t4_reads_its_plain_arm(tmp_path, capsys):
    """At N = 21 (equalized contexts need N - 1 even): plain and equalized arms of one K sweep."""
    sweep = tmp_path / "sweep"
    plain = {f"Kinf-seed{s}": cpu_config(N=21, K=None, seed=s, **TINY) for s in range(3)}
    plain |= {f"K{k}-{arm}-seed{s}": cpu_config(N=21, K=k, seed=s, equalized=arm == "equalized", **TINY)
              for k in SWEPT_K for s in (0, 1) for arm in ("plain", "equalized")}
    memorizing = {f"mem-K{k}": cpu_config(N=21, K=k, frozen=("attn",), **TINY) for k in MEMORIZED_K}
    for group in (plain, memorizing):
        train_ensemble(list(group.values()), [sweep / name for name in group], progress=False)
    code, out = theory("--sweep", str(sweep), "--out", str(tmp_path / "out"), "--json", capsys=capsys)
    assert code == 0
    result = json.loads(out)
    assert result["measured"]["21"]["n_seeds"] == [2, 2, 2]  # T4: the plain arm alone
    t6 = result["T6"]["21"]
    assert t6["seeds"] == 3 and t6["nu"] == result["memorization"]["nu"]
    # 4 steps: neither arm reaches ICL, so there is no K* to divide, and the line says why
    assert t6["measured"]["why"].startswith("K* plain: > 256")
    assert any(line.startswith("T6 N=21: equalized contexts: predicted") and "measured: no shift (K* plain: > 256" in line
               for line in result["verdicts"])
