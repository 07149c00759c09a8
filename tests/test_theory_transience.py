"""T5, transience: the saturating flow with weight decay against its closed forms, the fade
read from synthetic metrics, and ``icl-mech theory`` on a sweep whose runs differ in lambda."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from icl_mech import storage
from icl_mech.analysis.theory_transience import fade_times, memorization_time, split_transience
from icl_mech.theory.flow import FlowParameters, integrate_flow
from icl_mech.theory.transience import fit_drive, integrate_fading_flow

from test_theory_command import theory, tiny_sweep  # noqa: F401  (tiny_sweep: the fixture, reused)

STEPS = np.arange(0, 1100, 100)
MEMORIZED_AT = 3000.0


def memorizing(t: float) -> float:
    """c1 at 1/2 until the items are memorized at ``MEMORIZED_AT``, then 0: the drive stops."""
    return 0.5 if t < MEMORIZED_AT else 0.0


def test_the_fade_is_the_first_step_after_t_icl_from_which_icl_stays_below_half_way():
    icl = np.array([0.5, 0.6, 0.7, 0.96, 0.99, 0.9, 0.8, 0.74, 0.6, 0.5, 0.5])
    assert fade_times(STEPS, icl, 0.95, n_labels=2) == (300.0, 700.0, False)


def test_dips_that_recover_and_a_fall_in_the_last_two_evaluations_are_censored_at_the_end():
    dips = np.array([0.5, 0.8, 0.6, 0.96, 0.99, 0.6, 0.8, 0.8, 0.9, 0.95, 0.97])
    assert fade_times(STEPS, dips, 0.95, n_labels=2) == (300.0, 1000.0, True)
    late = np.array([0.5, 0.6, 0.7, 0.96, 0.99, 0.99, 0.99, 0.99, 0.99, 0.5, 0.5])
    assert fade_times(STEPS, late, 0.95, n_labels=2) == (300.0, 1000.0, True)
    never = fade_times(STEPS, np.full(11, 0.6), 0.95, n_labels=2)
    assert math.isnan(never[0]) and math.isnan(never[1]) and not never[2]


def test_memorization_is_when_the_residual_falls_below_half_its_chance_value():
    residual = np.array([0.5, 0.5, 0.45, 0.3, 0.26, 0.2, 0.1, 0.3, 0.0, 0.0, 0.0])
    assert memorization_time(STEPS, residual, n_labels=2) == 500.0
    assert math.isnan(memorization_time(STEPS, np.full(11, 0.4), n_labels=2))


def test_without_the_drive_beta_and_w_decay_as_e_minus_lambda_t_and_icl_fades_when_beta_passes_ln_n():
    params = FlowParameters(N=20, n=1, eta=0.05, weight_decay=1e-3)
    times = np.linspace(MEMORIZED_AT, 6000, 31)
    flow = integrate_fading_flow(memorizing, 0.0, params, 6000.0, t_eval=times)
    assert flow.t_icl < MEMORIZED_AT and flow.beta[0] > math.log(20)  # acquired, and above the level
    decay = np.exp(-params.weight_decay * (times - MEMORIZED_AT))
    assert np.allclose(flow.beta, flow.beta[0] * decay, rtol=1e-6, atol=0)
    assert np.allclose(flow.w, flow.w[0] * decay, rtol=1e-6, atol=0)
    closed_form = MEMORIZED_AT + math.log(flow.beta[0] / math.log(20)) / params.weight_decay
    assert flow.t_fade == pytest.approx(closed_form, rel=1e-6)


def test_the_fade_comes_sooner_with_more_decay_and_never_without_it():
    fades = [
        integrate_fading_flow(memorizing, 0.0, FlowParameters(N=20, n=1, eta=0.05, weight_decay=lam), 20000.0).t_fade
        for lam in (0.0, 2e-4, 5e-4, 1e-3)
    ]
    assert math.isnan(fades[0])
    assert MEMORIZED_AT < fades[3] < fades[2] < fades[1] < 20000


def test_before_acquisition_the_saturating_flow_follows_the_reduced_flow():
    """e^beta << N and a small in-context logit: the same rates as ``integrate_flow`` with
    N - 1 - n in place of N); they part by the share's saturation, 1 - s, and the context's
    logit in the residual, both under a percent here."""
    N, n, eta = 400, 1, 0.02
    saturating = integrate_fading_flow(lambda t: 0.5, 0.0, FlowParameters(N=N, n=n, eta=eta), 20000.0)
    reduced = integrate_flow(lambda t: 0.5, 0.0, FlowParameters(N=N - 1 - n, n=n, eta=eta), 20000.0)
    assert saturating.beta[-1] > 0.1 and saturating.in_context_logit[-1] < 0.01  # moved, still before the jump
    assert saturating.beta[-1] == pytest.approx(reduced.beta[-1], rel=0.02)
    assert saturating.w[-1] == pytest.approx(reduced.w[-1], rel=0.01)


def test_the_fitted_drive_is_the_one_that_made_the_acquisition_time():
    params = FlowParameters(N=20, n=1, eta=0.07)
    t_icl = integrate_fading_flow(memorizing, 0.2, params, 6000.0).t_icl
    assert fit_drive(memorizing, 0.2, FlowParameters(N=20, n=1), t_icl, 6000.0) == pytest.approx(0.07, rel=1e-4)


def test_runs_above_the_smallest_lambda_of_a_group_leave_the_k_sweep_for_t5():
    sweeps = pd.DataFrame({
        "run": list("abcdef"), "K": [64, 64, 64, 128, 128, 256], "N": [20] * 6,
        "weight_decay_attn": [0.0, 0.01, 0.1, 0.0, 0.0, 0.1],
    })
    k_sweep, fading = split_transience(sweeps)
    assert list(k_sweep.run) == ["a", "d", "e", "f"]  # a lone lambda at a K is a K sweep's own
    assert list(fading.run) == ["a", "b", "c"]


#: lambda: the step ICL falls below 0.75 in seeds 0 and 1 (None: never); memorized at 2300, so
#: t_fade - t_mem = 800 and 900 at 0.01, 400 at 0.02: about 1 / lambda
FADES = {0.0: (None, None), 0.01: (3100, 3200), 0.02: (2700, 2700)}


def _fading_run(source: Path, run: Path, lam: float, seed: int, k: int = 96, optimizer: str = "sgd") -> None:
    """A copy of ``source`` at K = ``k`` with attention weight decay ``lam``, whose log acquires ICL
    at step 1000, memorizes by step 2500 (both residuals fall to 0) and fades as ``FADES`` says."""
    shutil.copytree(source, run)
    config = storage.read_json(run / storage.CONFIG)
    config["task"]["K"], config["train"]["weight_decay_attn"], config["train"]["seed"] = k, lam, seed
    config["train"]["optimizer"], config["train"]["lr"], config["train"]["steps"] = optimizer, 0.025, 4000
    storage.write_json(run / storage.CONFIG, config)
    rows = []
    for step in range(0, 4001, 100):
        residual = 0.5 if step < 2000 else max(0.0, 0.5 - (step - 2000) / 1000)
        faded = FADES[lam][seed] is not None and step >= FADES[lam][seed]
        icl = 0.5 if step < 1000 or faded else 0.99
        rows.append({"step": step, "icl_acc": icl, "iwl_acc": 1 - residual, "train_acc": 0.9,
                     "c1": residual, "iwl_residual": residual})
    (run / storage.METRICS).write_text("".join(json.dumps(row) + "\n" for row in rows))
    storage.write_json(run / storage.STATUS, {"state": storage.FINISHED, "last_step": 4000, "stopped_early": False})


def test_theory_reads_the_fade_of_a_weight_decay_sweep_and_sets_the_flow_beside_it(tiny_sweep, tmp_path, capsys):  # noqa: F811
    sweep = Path(shutil.copytree(tiny_sweep, tmp_path / "sweep"))
    for lam in FADES:
        for seed in (0, 1):
            _fading_run(tiny_sweep / f"K64-seed{seed}", sweep / f"wd{lam}-seed{seed}", lam, seed)
    code, out = theory("--sweep", str(sweep), "--out", str(tmp_path / "out"), capsys=capsys)
    assert code == 0
    (line,) = [line for line in out.splitlines() if line.startswith("T5")]
    assert line.startswith("T5 N=20 K=96: lambda 0 t_ICL 1000, 1000, t_fade >4000, >4000 (flow >4000, >4000); "
                           "lambda 0.01 t_ICL 1000, 1000, t_fade 3100, 3200 (flow ")
    assert "lambda 0.02 t_ICL 1000, 1000, t_fade 2700, 2700 (flow " in line and "(t_fade - t_mem) lambda = 8, 9, 8, 8;" in line
    assert "1/lambda law: t_fade - t_mem ~ lambda^-1.08 [" in line and "over 4 runs (theory: -1): holds" in line
    assert (tmp_path / "out" / "theory_T5.png").stat().st_size > 0
    result = json.loads((tmp_path / "out" / "theory.json").read_text())
    t5 = pd.DataFrame(result["T5"]["20"]["runs"])
    assert t5["lambda"].tolist() == [0.0, 0.0, 0.01, 0.01, 0.02, 0.02]
    assert result["T5"]["20"]["fade_law"]["exponent"] == pytest.approx(np.log(400 / np.sqrt(800 * 900)) / np.log(2))
    assert (t5.t_icl == 1000).all() and (t5.t_mem == 2300).all()  # the first residual below 0.25: 0.2 at step 2300
    assert t5.fade_censored.tolist() == [True, True, False, False, False, False]
    assert t5.lambda_flow.tolist() == pytest.approx([0, 0, 5e-4, 5e-4, 1e-3, 1e-3])  # 2 lr lambda
    flow = t5[["flow_t_icl_iwl_residual", "flow_t_fade_iwl_residual"]].to_numpy()
    assert flow[:2, 0] == pytest.approx([1000, 1000], rel=1e-4)  # the drive is fitted there
    assert t5.flow_censored_iwl_residual[:2].all()  # no decay: the flow never fades either
    assert 2300 < flow[4, 1] < flow[2, 1] < 4000  # memorized, then faded: sooner with more decay
    assert "eta fitted at lambda 0): holds (6 of 6 runs agree; flow / run 0." in line
    parts = {row["run"].rsplit("/", 1)[-1]: row["part"] for row in result["runs"]}
    assert parts["wd0.0-seed0"] == "K sweep" and parts["wd0.02-seed1"] == "transience"
    assert result["measured"]["20"]["K"] == [64, 96, 128, 256]  # T4 keeps the lambda = 0 runs at K = 96 only
    assert result["measured"]["20"]["n_seeds"][1] == 2


def test_theory_without_a_weight_decay_sweep_says_so_in_t5s_line(tiny_sweep, tmp_path, capsys):  # noqa: F811
    code, out = theory("--sweep", str(tiny_sweep), "--out", str(tmp_path / "out"), capsys=capsys)
    assert code == 0
    assert "T5: no weight-decay sweep (K-sweep runs at one K and N that differ in weight_decay_attn)" in out.splitlines()
    assert json.loads((tmp_path / "out" / "theory.json").read_text())["T5"] == {}
    assert not (tmp_path / "out" / "theory_T5.png").exists()


def test_two_weight_decay_sweeps_at_one_n_are_told_apart_by_k_and_adam_runs_carry_a_caveat(tiny_sweep, tmp_path, capsys):  # noqa: F811
    sweep = Path(shutil.copytree(tiny_sweep, tmp_path / "sweep"))
    for k, lambdas in ((80, (0.01, 0.02)), (96, (0.0, 0.01))):
        for lam in lambdas:
            _fading_run(tiny_sweep / "K64-seed0", sweep / f"K{k}-wd{lam}", lam, 0, k=k, optimizer="adam" if k == 80 else "sgd")
    code, out = theory("--sweep", str(sweep), "--out", str(tmp_path / "out"), capsys=capsys)
    assert code == 0
    lines = [line for line in out.splitlines() if line.startswith("T5")]
    assert [line.split(":")[0] for line in lines] == ["T5 N=20 K=80", "T5 N=20 K=96"]
    assert lines[0].endswith("(the flow's decay 2 lr lambda is plain SGD's; these runs used adam)")
    assert "plain SGD's" not in lines[1]
    t5 = json.loads((tmp_path / "out" / "theory.json").read_text())["T5"]
    assert set(t5) == {"20 K=80", "20 K=96"}
    base = t5["20 K=80"]["runs"][0]  # lambda 0.01, the smallest here: the drive is fitted with its decay
    assert base["lambda"] == 0.01 and base["flow_t_icl_iwl_residual"] == pytest.approx(1000, rel=1e-4)
