"""The theory beside the runs (``icl-mech theory``): T1, T3, T4, T6 and T7 of docs/THEORY.md,
each a prediction from ``icl_mech.theory`` set on the same axes as what sweeps measured.

Runs play three parts, told apart by their config:

- memorization runs (attention frozen, finite K): the MLP alone; their logged residual (c1, or
  ``iwl_residual`` with ``residual=``) gives I_K(t),
  the memorization integral, and T1's law I_K(h) = A K^nu at a horizon h;
- K = infinity runs (nothing frozen): each seed's beta0 (step 0) and t_ICL; T3's slope of
  ln t_ICL on beta0, and T4's F_inf, the distribution of t_ICL over seeds;
- K sweeps (nothing frozen, finite K): the measured share of seeds that ended in ICL per K, and
  K*, beside T4's P_ICL(K) = F_inf(2 I_K(h)) and its K* (plain contexts only); where runs at one K
  and N differ in attention weight decay, T5's fade against the flow (``theory_transience``); T6's
  shift of K* where a sweep has equalized=false and true arms at one N (``equalized_shift``); T7's
  tie of the ICL and IWL losses after acquisition, run by run (``loss_tie``).

The memorization runs may be at any N (the theory's I_K depends on K only); a K sweep is compared
with the K = infinity runs at its own N.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from icl_mech.analysis.equalized_shift import equalized_shift, equalized_shift_figure, equalized_shift_verdicts
from icl_mech.analysis.fits import PowerLawFit, fit_power_law
from icl_mech.analysis.loss_tie import loss_tie, loss_tie_figure, loss_tie_verdicts
from icl_mech.analysis.memorization import (
    common_horizon, fit_memorization_exponent, memorization_curves, memorization_times, memorized_at,
)
from icl_mech.analysis.plotting import MissingRuns, tick_log_values, tick_swept
from icl_mech.analysis.sweep_table import Levels, plain_runs
from icl_mech.analysis.theory_beta0 import beta0_agreement, beta0_verdict, early_flow_fits
from icl_mech.analysis.theory_transience import split_transience, transience, transience_figure, transience_verdicts
from icl_mech.analysis.transition import threshold_table
from icl_mech.errors import ConfigError
from icl_mech.run import load_run
from icl_mech.theory.beta0 import initial_match_sharpness
from icl_mech.theory.predictions import (
    Interval, acquisition_probability, clopper_pearson, log_time_slope, predicted_threshold,
)
from icl_mech.theory.residual_columns import C1, RESIDUALS

#: K = infinity seeds needed at each N: T3's slope and T4's F_inf are statements about the spread
#: over seeds (and a slope with its interval needs 3 points).
MIN_SEEDS = 3
#: Points on the predicted P_ICL(K) curve drawn between the swept K.
CURVE_POINTS = 60
#: The files ``theory_report`` writes, figures besides.
JSON_NAME, CSV_NAME = "theory.json", "theory.csv"


@dataclass
class TheoryReport:
    """What ``icl-mech theory`` writes (``theory.json``) and prints (``verdicts``)."""

    #: One per run: run, part, K, N, seed, beta0 (NaN for memorization runs: attention frozen), t_icl;
    #: for K = infinity runs also beta0_fit, flow_drive, flow_rms and flow_span (``theory_beta0``).
    runs: pd.DataFrame
    #: T1: the residual integrated, the horizon, A, nu and its interval, I_K per memorization run, and the t_mem fit.
    memorization: dict[str, Any]
    #: T3 per N: slope of ln t_ICL on beta0, its 95% interval, n (None with a reason when unmeasurable).
    beta0_vs_t_icl: dict[int, dict[str, Any]]
    #: T4 per N: K, p_icl with its interval, kstar with kstar_lo and kstar_hi, the horizon.
    predicted: dict[int, dict[str, Any]]
    #: Per N: K, the fraction of seeds that ended in ICL, its interval and n_seeds; kstar with its interval.
    measured: dict[int, dict[str, Any]]
    #: Per N: beta0 read at step 0 against beta0 of the flow fitted to the later checkpoints.
    beta0_check: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: T6 per N: the predicted Theta ratio and K* factor of equalized contexts, and the measured shift.
    equalized: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: T7 per N: the runs' loss-tie fits and the pooled eta' (with each fitted run's losses under "curves").
    loss_tie: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: T5 per N: each transience run's fade and the flow's (the flow's trajectories under "curves").
    transience: dict[int | str, dict[str, Any]] = field(default_factory=dict)
    verdicts: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """theory.json's content: NaN and infinities as null, N as keys."""
        return _plain({
            "runs": self.runs.to_dict(orient="records"),
            "memorization": self.memorization,
            "beta0_vs_t_icl": {str(n): value for n, value in self.beta0_vs_t_icl.items()},
            "predicted": {str(n): value for n, value in self.predicted.items()},
            "measured": {str(n): value for n, value in self.measured.items()},
            "beta0_check": {str(n): value for n, value in self.beta0_check.items()},
            "T6": {str(n): value for n, value in self.equalized.items()},
            "T7": {str(n): {key: item for key, item in value.items() if key != "curves"}  # the losses stay out
                   for n, value in self.loss_tie.items()},
            "T5": {str(n): {key: item for key, item in value.items() if key != "curves"} for n, value in self.transience.items()},
            "verdicts": self.verdicts,
        })


def _plain(value: Any) -> Any:
    """``value`` as JSON has it: numpy numbers as Python's, non-finite floats as None."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(item) for item in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def _parts(table: pd.DataFrame, residual: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(memorization runs, K = infinity runs, K-sweep runs), checked for what the theory needs."""
    memorizing = table[(table.frozen == "attn") & np.isfinite(table.K)]
    plain = plain_runs(table)
    infinite, sweeps = plain[np.isinf(plain.K)], plain[np.isfinite(plain.K)]
    if infinite.empty:
        raise MissingRuns(
            "theory needs K = infinity whole-model runs (K=inf, nothing frozen): T3 and T4 read each seed's t_ICL "
            "there; the sweeps have none"
        )
    if memorizing.empty:
        raise MissingRuns(
            f"theory needs memorization runs (frozen=attn, finite K): T1 and T4 read I_K from their {residual}; the sweeps have none"
        )
    for n, runs in infinite.groupby("N"):
        if runs.seed.nunique() < MIN_SEEDS:
            raise MissingRuns(
                f"theory needs K = infinity runs of {MIN_SEEDS} or more seeds at each N; N={n} has "
                f"{runs.seed.nunique()}: T3's slope and T4's F_inf are taken over seeds"
            )
    unmatched = sorted(set(sweeps.N) - set(infinite.N))
    if unmatched:
        raise MissingRuns(
            f"the K sweeps at N={unmatched} have no K = infinity runs at the same N (those are at "
            f"N={sorted(set(infinite.N))}): T4 compares a sweep with F_inf at its own N"
        )
    return memorizing, infinite, sweeps


def memorization_law(memorizing: pd.DataFrame, curves: dict, horizon: float) -> PowerLawFit:
    """T1 at ``horizon``: I_K = A K^nu fitted over the memorization runs."""
    at = memorized_at(memorizing, curves, horizon)
    try:
        return fit_power_law(at.K.to_numpy(), at.I_K.to_numpy())
    except ConfigError:
        raise MissingRuns(
            f"T1 needs memorization runs at 2 or more values of K, got K={sorted(set(at.K))}"
        ) from None


def _interval_dict(interval: Interval | None, why: str = "") -> dict[str, Any]:
    if interval is None:
        return {"slope": None, "low": None, "high": None, "n": 0, "why": why}
    return {"slope": interval.value, "low": interval.low, "high": interval.high, "n": interval.n}


def theory_report(table: pd.DataFrame, out_dir: Path, levels: Levels = Levels(), residual: str = C1) -> TheoryReport:
    """Every prediction beside the runs of ``table`` (``load_sweeps``): writes theory.json,
    theory.csv and the T1, T3, T4, T6 and T7 figures (T5 with a weight-decay sweep) into ``out_dir`` and returns what it wrote."""
    if residual not in RESIDUALS:
        raise ConfigError(f"the memorization integral reads one of the logged residuals {', '.join(RESIDUALS)}; got {residual!r}")
    memorizing, infinite, sweeps = _parts(table, residual)
    sweeps, fading = split_transience(sweeps)
    curves = memorization_curves(memorizing, residual)
    mem_horizon = common_horizon(curves)
    law = memorization_law(memorizing, curves, mem_horizon)
    beta0 = {row.run: initial_match_sharpness(load_run(row.run)) for row in pd.concat([infinite, sweeps, fading]).drop_duplicates("run").itertuples()}
    runs = pd.concat([
        memorizing.assign(part="memorization"), infinite.assign(part="K=inf"), sweeps.assign(part="K sweep"),
        fading[~fading.run.isin(sweeps.run)].assign(part="transience"),
    ])[["run", "part", "K", "N", "seed", "t_icl", "icl_acc"]]
    runs.insert(5, "beta0", [beta0.get(run, np.nan) for run in runs.run])
    runs = runs.merge(early_flow_fits(infinite), on="run", how="left")
    report = TheoryReport(runs, _t1(memorizing, curves, mem_horizon, law, table, levels, residual), {}, {}, {})

    for n, at_n in infinite.groupby("N"):
        n = int(n)
        try:
            report.beta0_vs_t_icl[n] = _interval_dict(log_time_slope(at_n.run.map(beta0), at_n.t_icl))
        except ConfigError as why:
            report.beta0_vs_t_icl[n] = _interval_dict(None, str(why))
        sweep = sweeps[(sweeps.N == n) & ~sweeps.equalized.astype(bool)]  # T4 is about plain contexts
        horizon = min(float(sweep.steps.max()), mem_horizon) if len(sweep) else mem_horizon
        at_horizon = law if horizon == mem_horizon else memorization_law(memorizing, curves, horizon)
        k_values = sweep.K if len(sweep) else memorizing.K  # without a sweep at N: at the memorized K
        report.predicted[n] = _predicted(at_n.t_icl.to_numpy(float), at_horizon, horizon, k_values.to_numpy(float), at_n)
        report.measured[n] = _measured(sweep, levels)
        report.beta0_check[n] = beta0_agreement(runs[runs.run.isin(at_n.run)])
    seeds_beta0 = {int(n): at_n.run.map(beta0).to_numpy() for n, at_n in infinite.groupby("N")}
    report.transience = transience(fading, beta0, levels)
    report.equalized = equalized_shift(sweeps, seeds_beta0, (law.exponent, *law.interval), levels)
    report.loss_tie = loss_tie(sweeps, levels)
    report.verdicts = (_verdicts(report) + [beta0_verdict(n, check) for n, check in report.beta0_check.items()]
                       + transience_verdicts(report.transience) + equalized_shift_verdicts(report.equalized)
                       + loss_tie_verdicts(report.loss_tie))
    _write(report, out_dir)
    return report


def _t1(memorizing: pd.DataFrame, curves: dict, horizon: float, law: PowerLawFit, table: pd.DataFrame,
        levels: Levels, residual: str) -> dict[str, Any]:
    at = memorized_at(memorizing, curves, horizon)
    t1 = {
        "residual": residual, "horizon": horizon, "prefactor": law.prefactor, "nu": law.exponent, "nu_low": law.interval[0],
        "nu_high": law.interval[1], "K": at.K.tolist(), "seed": at.seed.tolist(), "I_K": at.I_K.tolist(),
    }
    try:  # claim 3's fit: the time to reach the memorized IWL accuracy
        t_mem = fit_memorization_exponent(memorization_times(table, levels.memorized))
        t1.update(t_mem_nu=t_mem.exponent, t_mem_nu_low=t_mem.interval[0], t_mem_nu_high=t_mem.interval[1])
    except ConfigError as why:
        t1.update(t_mem_nu=None, t_mem_why=str(why))
    return t1


def _predicted(t_inf: np.ndarray, law: PowerLawFit, horizon: float, k_values: np.ndarray, infinite: pd.DataFrame) -> dict[str, Any]:
    """T4 at the K of ``k_values``: P_ICL = F_inf(2 I_K(horizon)) with I_K from T1's law, and K*."""
    swept = np.sort(np.unique(k_values))
    p, low, high = acquisition_probability(t_inf, law(swept))
    k_star = predicted_threshold(t_inf, law.prefactor, law.exponent)
    return {
        "horizon": horizon, "seeds": int(t_inf.size), "K": swept.tolist(), "p_icl": p.tolist(),
        "p_icl_low": low.tolist(), "p_icl_high": high.tolist(),
        "kstar": k_star.value, "kstar_lo": k_star.low, "kstar_hi": k_star.high,
        # F_inf is known up to the end of the first K = infinity run that never reached ICL: past
        # it P_ICL is a lower bound (a run that stopped on reaching ICL censors nothing)
        "censored_above_I_K": np.min(infinite.final_step[infinite.t_icl.isna()].to_numpy(float), initial=math.inf) / 2,
    }


def _measured(sweep: pd.DataFrame, levels: Levels) -> dict[str, Any]:
    if sweep.empty:
        return {"K": [], "fraction": [], "fraction_low": [], "fraction_high": [], "n_seeds": [],
                "kstar": None, "kstar_lo": None, "kstar_hi": None, "kstar_bound": "no K sweep at this N"}
    per_k = sweep.groupby("K").icl_acc.agg(reached=lambda acc: int((acc >= levels.outcome).sum()), n="size")
    low, high = clopper_pearson(per_k.reached.to_numpy(), per_k.n.to_numpy())
    (threshold,) = threshold_table(sweep, levels, ["N"]).itertuples()
    return {
        "K": per_k.index.tolist(), "fraction": (per_k.reached / per_k.n).tolist(),
        "fraction_low": low.tolist(), "fraction_high": high.tolist(),
        "n_seeds": per_k.n.tolist(), "kstar": threshold.K_star, "kstar_lo": threshold.K_star_low,
        "kstar_hi": threshold.K_star_high, "kstar_bound": threshold.K_star_bound or threshold.K_star_why,
    }


def _number(value: float | None, digits: str = ".0f") -> str:
    return "inf" if value is None or not math.isfinite(value) else format(value, digits)


def _range(low: float | None, high: float | None, digits: str = ".0f") -> str:
    return f"[{_number(low, digits)}, {_number(high, digits)}]"


def _verdicts(report: TheoryReport) -> list[str]:
    """One line per prediction (and per N where it is one per N)."""
    t1 = report.memorization
    t_mem = (f"the t_mem fit (steps to the memorized IWL accuracy) gives nu {t1['t_mem_nu']:.2f} {_range(t1['t_mem_nu_low'], t1['t_mem_nu_high'], '.2f')}"
             if t1["t_mem_nu"] is not None else "no t_mem fit (no memorization run reached the memorized IWL accuracy)")
    lines = [
        f"T1: I_K ({t1['residual']}) at step {t1['horizon']:.0f} = {t1['prefactor']:.3g} K^{t1['nu']:.2f}, nu "
        f"{_range(t1['nu_low'], t1['nu_high'], '.2f')} over {len(t1['K'])} memorization runs (paper: about 0.7); {t_mem}"
    ]
    for n, fit in report.beta0_vs_t_icl.items():
        if fit["slope"] is None:
            lines.append(f"T3 N={n}: not measured: {fit['why']}")
            continue
        holds = "holds" if fit["low"] <= -1 <= fit["high"] else "fails"
        lines.append(f"T3 N={n}: ln t_ICL on beta0, slope {fit['slope']:.2f} {_range(fit['low'], fit['high'], '.2f')} "
                     f"over {fit['n']} K=inf seeds that reached ICL (theory: -1): {holds}")
    for n, predicted in report.predicted.items():
        measured = report.measured[n]
        line = (f"T4 N={n}: predicted K* {_number(predicted['kstar'])} "
                f"{_range(predicted['kstar_lo'], predicted['kstar_hi'])} by step {predicted['horizon']:.0f} "
                f"from {predicted['seeds']} K=inf seeds")
        if measured["kstar"] is None or not math.isfinite(measured["kstar"]):
            line += f"; measured K*: {measured['kstar_bound'] or 'not fitted'}"
        else:
            overlap = max(predicted["kstar_lo"], measured["kstar_lo"]) <= min(predicted["kstar_hi"], measured["kstar_hi"])
            ratio = measured["kstar"] / predicted["kstar"] if math.isfinite(predicted["kstar"]) else math.nan
            line += (f"; measured K* {measured['kstar']:.0f} {_range(measured['kstar_lo'], measured['kstar_hi'])}: "
                     + ("holds (intervals overlap)" if overlap else f"fails (measured / predicted = {ratio:.2f})"))
        lines.append(line)
    return lines


def _write(report: TheoryReport, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / JSON_NAME).write_text(json.dumps(report.to_json(), indent=1) + "\n")
    rows = []
    for n, predicted in report.predicted.items():
        measured = report.measured[n]
        by_k = dict(zip(measured["K"], zip(measured["fraction"], measured["fraction_low"], measured["fraction_high"], measured["n_seeds"])))
        for i, k in enumerate(predicted["K"]):
            fraction = by_k.get(k, (np.nan,) * 3 + (0,))
            rows.append({"N": n, "K": k, "p_icl": predicted["p_icl"][i], "p_icl_low": predicted["p_icl_low"][i],
                         "p_icl_high": predicted["p_icl_high"][i], "fraction_icl": fraction[0],
                         "fraction_low": fraction[1], "fraction_high": fraction[2], "n_seeds": fraction[3]})
    pd.DataFrame(rows, columns=["N", "K", "p_icl", "p_icl_low", "p_icl_high", "fraction_icl", "fraction_low",
                                "fraction_high", "n_seeds"]).to_csv(out_dir / CSV_NAME, index=False)
    _t1_figure(report, out_dir / "theory_T1.png")
    _t3_figure(report, out_dir / "theory_T3.png")
    _t4_figure(report, out_dir / "theory_T4.png")
    if report.transience:
        transience_figure(report.transience, out_dir / "theory_T5.png")
    equalized_shift_figure(report.equalized, out_dir / "theory_T6.png")
    loss_tie_figure(report.loss_tie, out_dir / "theory_T7.png")


def _t1_figure(report: TheoryReport, path: Path) -> None:
    t1 = report.memorization
    figure, axis = plt.subplots(figsize=(5, 3.8))
    k = np.array(t1["K"])
    axis.scatter(k, t1["I_K"], s=14, label="memorization runs")
    grid = np.geomspace(k.min(), k.max(), CURVE_POINTS)
    axis.plot(grid, t1["prefactor"] * grid ** t1["nu"], "k--", lw=1, label=f"I_K = A K^nu, nu {t1['nu']:.2f}")
    axis.set_xscale("log")
    axis.set_yscale("log")
    tick_swept(axis.xaxis, k)
    axis.set_xlabel("K (items)")
    axis.set_ylabel(f"I_K at step {t1['horizon']:.0f} (integral of {t1['residual']})")
    axis.set_title("T1: memorization integral" + (f"; t_mem fit: nu {t1['t_mem_nu']:.2f}" if t1["t_mem_nu"] is not None else ""), fontsize=9)
    axis.legend(fontsize=8)
    _save(figure, path)


def _t3_figure(report: TheoryReport, path: Path) -> None:
    runs = report.runs[report.runs.part == "K=inf"]
    figure, (by_beta0, by_n) = plt.subplots(1, 2, figsize=(9.5, 3.8))
    for n, at_n in runs.groupby("N"):
        reached = at_n.dropna(subset=["t_icl"])
        by_beta0.scatter(reached.beta0, np.log(reached.t_icl), s=14, label=f"N={n}")
        fit = report.beta0_vs_t_icl[int(n)]
        if fit["slope"] is not None:
            x = np.linspace(reached.beta0.min(), reached.beta0.max(), 2)
            centre = np.log(reached.t_icl).mean() + fit["slope"] * (x - reached.beta0.mean())
            by_beta0.plot(x, centre, lw=1, label=f"fit, slope {fit['slope']:.2f}")
            by_beta0.plot(x, np.log(reached.t_icl).mean() - (x - reached.beta0.mean()), "k:", lw=1)
    by_beta0.set_xlabel("beta0 (score gap, copies minus others, step 0)")
    by_beta0.set_ylabel("ln t_ICL (K = infinity)")
    by_beta0.set_title("T3: dotted, the theory's slope -1", fontsize=9)
    by_beta0.legend(fontsize=7)
    reached = runs.dropna(subset=["t_icl"])
    by_n.scatter(reached.N, reached.t_icl, s=10, alpha=0.5)
    medians = reached.groupby("N").t_icl.median()
    by_n.plot(medians.index, medians, "o-", label="median over seeds")
    if len(medians):
        by_n.plot(medians.index, medians.iloc[0] * medians.index / medians.index[0], "k:", lw=1, label="t_ICL ~ N")
    by_n.set_xscale("log")
    tick_swept(by_n.xaxis, runs.N)
    by_n.set_xlabel("N (tokens per sequence)")
    by_n.set_ylabel("t_ICL (K = infinity)")
    by_n.legend(fontsize=7)
    _save(figure, path)


def _t4_figure(report: TheoryReport, path: Path) -> None:
    figure, (curves, thresholds) = plt.subplots(1, 2, figsize=(9.5, 3.8))
    for index, (n, predicted) in enumerate(report.predicted.items()):
        colour, measured = f"C{index}", report.measured[n]
        if predicted["K"]:
            curves.plot(predicted["K"], predicted["p_icl"], "-", color=colour, label=f"N={n} predicted, F_inf(2 I_K)")
            curves.fill_between(predicted["K"], predicted["p_icl_low"], predicted["p_icl_high"], color=colour, alpha=0.15)
        if measured["K"]:
            fraction = np.array(measured["fraction"])
            errors = [fraction - measured["fraction_low"], np.array(measured["fraction_high"]) - fraction]
            curves.errorbar(measured["K"], fraction, yerr=errors, fmt="o", color=colour, capsize=2, label=f"N={n} measured, share of seeds")
        if predicted["kstar"] is not None and math.isfinite(predicted["kstar"]):
            high = predicted["kstar_hi"] if math.isfinite(predicted["kstar_hi"]) else predicted["kstar"]
            thresholds.errorbar([n], [predicted["kstar"]], yerr=[[predicted["kstar"] - predicted["kstar_lo"]], [high - predicted["kstar"]]],
                                fmt="s", color="C0", capsize=3, label="predicted" if index == 0 else None)
        if measured["kstar"] is not None and math.isfinite(measured["kstar"]):
            thresholds.errorbar([n * 1.03], [measured["kstar"]], yerr=[[measured["kstar"] - measured["kstar_lo"]], [measured["kstar_hi"] - measured["kstar"]]],
                                fmt="o", color="C1", capsize=3, label="measured" if index == 0 else None)
    curves.set_xscale("log")
    tick_swept(curves.xaxis, [k for predicted in report.predicted.values() for k in predicted["K"]])
    curves.set_xlabel("K")
    curves.set_ylabel("P(ICL by the horizon)")
    curves.set_ylim(-0.05, 1.05)
    curves.legend(fontsize=7)
    thresholds.set_xscale("log")
    thresholds.set_yscale("log")
    tick_swept(thresholds.xaxis, list(report.predicted))
    tick_log_values(thresholds.yaxis)
    thresholds.set_xlabel("N")
    thresholds.set_ylabel("K*")
    if thresholds.get_legend_handles_labels()[0]:
        thresholds.legend(fontsize=7)
    _save(figure, path)


def _save(figure: plt.Figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
