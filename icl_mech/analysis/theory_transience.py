"""T5 beside the runs (``icl-mech theory``): transience, the saturating flow with weight decay
(``icl_mech.theory.transience``) against the runs' ICL fade, for K-sweep runs at one K and N that
differ in attention weight decay lambda (``weight_decay_attn``).

Each run is read for three times: t_ICL (first ICL accuracy >= the icl level), t_fade (the first
step after t_ICL from which ICL accuracy stays below half-way, (chance + 1) / 2, to the run's
end; censored at the end if it never does) and t_mem (the first step its residual falls below half the residual of a
network that knows nothing, (1 - chance) / 2). The theory: once memorized, the drive stops and
decay wins, so t_fade - t_mem ~ 1 / lambda, never at lambda = 0.

The flow is driven by each run's own logged residual: ``iwl_residual`` (the whole network on the
IWL set), the residual whose integral follows the memorization law (docs/THEORY.md, T1), with
``c1`` (the attention-free path) read beside it. Its decay is lambda_flow = 2 lr lambda, what
plain SGD's decay of lr lambda per step on each factor gives the products W_Q W_K (beta) and
W_V W_O (w) (under Adam the decay has no such reading, and the line says so). Its one free scale, the drive eta, is fitted seed by seed on the run at the group's
smallest lambda (lambda = 0 in a transience sweep), so that the flow's t_ICL there is the run's;
a seed without such a run takes the geometric mean of the fitted drives.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from icl_mech.analysis.fits import fit_power_law
from icl_mech.analysis.plotting import tick_swept
from icl_mech.analysis.sweep_table import Levels, first_crossing
from icl_mech.errors import ConfigError
from icl_mech.readout import chance
from icl_mech.run import load_run
from icl_mech.theory.flow import FlowParameters
from icl_mech.theory.residual_columns import C1, IWL_RESIDUAL
from icl_mech.theory.transience import fit_drive, integrate_fading_flow

#: The residuals the flow is driven by, the one the verdict reads first.
DRIVES = (IWL_RESIDUAL, C1)
#: The query's copies in a paired context: it is forced in once, and at K in the thousands a
#: second copy is rare.
COPIES = 1
#: Evaluations ICL accuracy must stay below half-way, to the run's end, to count as faded.
FADE_EVALUATIONS = 3
#: Predicted and measured t_fade agree (verdict "holds") within this factor.
AGREEMENT = 1.5
#: What T5's entry and line say when the sweeps hold no runs that differ in lambda alone.
NO_SWEEP = "no weight-decay sweep (K-sweep runs at one K and N that differ in weight_decay_attn)"


def split_transience(sweeps: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the K sweeps without the extra lambdas, the transience runs): a (K, N) group whose runs
    differ in weight_decay_attn is a transience sweep; its runs above the group's smallest lambda
    leave the K sweep, as they answer T5, not T4."""
    lambdas = sweeps.groupby(["K", "N"]).weight_decay_attn.transform
    varied = lambdas("nunique") > 1
    return sweeps[~varied | (sweeps.weight_decay_attn == lambdas("min"))], sweeps[varied]


def fade_times(steps: np.ndarray, icl_acc: np.ndarray, icl_level: float, n_labels: int) -> tuple[float, float, bool]:
    """(t_ICL, t_fade, censored): t_fade is the first step after t_ICL from which ICL accuracy
    stays below (chance + 1) / 2 to the run's end, over ``FADE_EVALUATIONS`` evaluations or more
    (plain SGD dips below it for one evaluation and recovers); otherwise the last step, censored.
    Both NaN without ICL."""
    steps, icl_acc = np.asarray(steps, dtype=float), np.asarray(icl_acc, dtype=float)
    t_icl = first_crossing(steps, icl_acc, icl_level)
    if math.isnan(t_icl):
        return math.nan, math.nan, False
    held = np.flatnonzero(icl_acc >= (chance(n_labels) + 1) / 2)[-1]  # the last evaluation still above
    faded = held + 1 <= steps.size - FADE_EVALUATIONS
    return (t_icl, float(steps[held + 1]), False) if faded else (t_icl, float(steps[-1]), True)


def memorization_time(steps: np.ndarray, residual: np.ndarray, n_labels: int) -> float:
    """t_mem: the first step the residual is below (1 - chance) / 2, half what a network that
    knows nothing leaves (NaN if never)."""
    return first_crossing(steps, -np.asarray(residual, dtype=float), -(1 - chance(n_labels)) / 2)


def transience(runs: pd.DataFrame, beta0: dict[str, float], levels: Levels) -> dict[int | str, dict[str, Any]]:
    """T5 per transience sweep, keyed by its N (by "N K=..." where one N has sweeps at several K): each run's measured times and the
    flow's prediction under each drive in ``DRIVES``; the flow's trajectories under "curves"."""
    report, several = {}, runs.groupby("N").K.nunique() > 1
    for (k, n), group in runs.groupby(["K", "N"]):
        rows, curves = [], {}
        logs = {row.run: load_run(row.run).metrics for row in group.itertuples()}
        for row in group.itertuples():
            metrics = logs[row.run]
            t_icl, t_fade, censored = fade_times(metrics.step, metrics.icl_acc, levels.icl, row.L)
            t_mem = memorization_time(metrics.step, metrics[IWL_RESIDUAL], row.L) if IWL_RESIDUAL in metrics else math.nan
            rows.append({"run": row.run, "seed": int(row.seed), "lambda": float(row.weight_decay_attn),
                         "lambda_flow": 2 * row.lr * row.weight_decay_attn, "beta0": beta0[row.run],
                         "t_icl": t_icl, "t_fade": t_fade, "fade_censored": censored, "t_mem": t_mem,
                         "t_fade_minus_t_mem": t_fade - t_mem if not censored else math.nan,
                         "final_step": float(metrics.step.iloc[-1])})
        table = pd.DataFrame(rows).sort_values(["lambda", "seed"])
        drives = [drive for drive in DRIVES if all(drive in metrics for metrics in logs.values())]
        for drive in drives:
            predicted, curves[drive] = _predict(table, logs, drive, int(n))
            table = table.join(predicted.add_suffix(f"_{drive}"))
        report[f"{int(n)} K={k:.0f}" if several[n] else int(n)] = {
            "N": int(n), "K": float(k), "optimizer": group.optimizer.iloc[0], "drive": drives[0] if drives else None,
            "fitted": "eta, seed by seed: the flow's t_ICL on the run at the smallest lambda is that run's t_ICL",
            "fade_law": _fade_law(table), "runs": table.to_dict(orient="records"), "curves": curves,
        }
    return report


def _fade_law(table: pd.DataFrame) -> dict[str, Any]:
    """The 1/lambda law: t_fade - t_mem = C lambda^exponent over the runs with lambda > 0 that
    memorized and then faded, the exponent with its 95% interval (theory: -1)."""
    faded = table[(table["lambda"] > 0) & (table.t_fade_minus_t_mem > 0)]
    try:
        fit = fit_power_law(faded["lambda"].to_numpy(), faded.t_fade_minus_t_mem.to_numpy())
    except ConfigError:
        return {"exponent": None, "low": None, "high": None, "n": len(faded),
                "why": f"needs runs that memorized, then faded, at 2 or more lambda > 0; got lambda {sorted(set(faded['lambda']))}"}
    return {"exponent": fit.exponent, "low": fit.interval[0], "high": fit.interval[1], "n": len(faded), "prefactor": fit.prefactor}


def _predict(table: pd.DataFrame, logs: dict[str, pd.DataFrame], drive: str, n: int) -> tuple[pd.DataFrame, dict]:
    """The flow driven by each run's logged ``drive``: the fitted eta, the flow's t_ICL and t_fade
    (censored at the run's end like the runs'), and its in-context logit at the logged steps."""
    base = table[table["lambda"] == table["lambda"].min()]
    fitted = {}
    for row in base.itertuples():
        metrics = logs[row.run]
        try:
            base_params = FlowParameters(N=n, n=COPIES, weight_decay=row.lambda_flow)  # lambda_flow 0 in a transience sweep
            fitted[row.seed] = fit_drive((metrics.step, metrics[drive]), row.beta0, base_params, row.t_icl, row.final_step)
        except ConfigError:
            continue  # this seed's run never reached ICL: the geometric mean stands in
    shared = math.exp(np.mean(np.log(list(fitted.values())))) if fitted else math.nan
    rows, trajectories = {}, {}
    for row in table.itertuples():
        eta = fitted.get(row.seed, shared)
        if math.isnan(eta):
            rows[row.Index] = {"eta": math.nan, "flow_t_icl": math.nan, "flow_t_fade": math.nan, "flow_censored": False}
            continue
        metrics = logs[row.run]
        steps = metrics.step.to_numpy(float)
        flow = integrate_fading_flow((steps, metrics[drive].to_numpy(float)), row.beta0,
                                     FlowParameters(N=n, n=COPIES, eta=eta, weight_decay=row.lambda_flow), row.final_step, t_eval=steps)
        censored = math.isfinite(flow.t_icl) and math.isnan(flow.t_fade)  # NaN both: the flow never acquired ICL
        rows[row.Index] = {"eta": eta, "flow_t_icl": flow.t_icl, "flow_t_fade": row.final_step if censored else flow.t_fade,
                           "flow_censored": censored}
        trajectories[row.run] = (flow.t, flow.in_context_logit)
    return pd.DataFrame.from_dict(rows, orient="index"), trajectories


def _times(runs: pd.DataFrame, column: str, censored: str) -> str:
    return ", ".join("none" if math.isnan(t) else f">{t:.0f}" if c else f"{t:.0f}" for t, c in zip(runs[column], runs[censored]))


def transience_verdicts(report: dict[int | str, dict[str, Any]]) -> list[str]:
    """One line per transience sweep: measured t_ICL and t_fade per lambda beside the flow's
    t_fade, (t_fade - t_mem) lambda and the 1 / lambda law's exponent with its verdict, and the
    flow's holds / partly / fails."""
    if not report:
        return [f"T5: {NO_SWEEP}"]
    lines = []
    for n, t5 in report.items():
        runs, drive = pd.DataFrame(t5["runs"]), t5["drive"]
        head = f"T5 N={t5['N']} K={t5['K']:.0f}:"
        per_lambda = "; ".join(
            f"lambda {lam:g} t_ICL {', '.join(f'{t:.0f}' for t in at.t_icl)}, t_fade {_times(at, 't_fade', 'fade_censored')}"
            + (f" (flow {_times(at, f'flow_t_fade_{drive}', f'flow_censored_{drive}')})" if drive else "")
            for lam, at in runs.groupby("lambda"))
        law, fit = runs[(runs["lambda"] > 0) & runs.t_fade_minus_t_mem.notna()], t5["fade_law"]
        scaled = (f"; (t_fade - t_mem) lambda = {', '.join(f'{v:.0f}' for v in law.t_fade_minus_t_mem * law['lambda'])}"
                  if len(law) else "; no run faded after memorizing")
        scaled += ("; 1/lambda law: " + (f"not measured, {fit['why']}" if fit["exponent"] is None else
                   f"t_fade - t_mem ~ lambda^{fit['exponent']:.2f} [{fit['low']:.2f}, {fit['high']:.2f}] over {fit['n']} runs "
                   f"(theory: -1): {'holds' if fit['low'] <= -1 <= fit['high'] else 'fails'}"))
        if drive is None:
            lines.append(f"{head} {per_lambda}{scaled}; flow not run: the runs log no {DRIVES[0]}")
            continue
        caveat = "" if t5["optimizer"] == "sgd" else f" (the flow's decay 2 lr lambda is plain SGD's; these runs used {t5['optimizer']})"
        lines.append(f"{head} {per_lambda}{scaled}; the flow (drive {drive}, eta fitted at lambda {runs['lambda'].min():g}): "
                     + _verdict(runs, f"flow_t_fade_{drive}", f"flow_censored_{drive}") + caveat)
    return lines


def _verdict(runs: pd.DataFrame, predicted: str, censored: str) -> str:
    """holds: every run's flow ends as the run does (no ICL, faded within ``AGREEMENT`` of the
    run's t_fade, or not faded by the end); partly: the median fades fall with lambda in both;
    fails otherwise."""
    measured_state, flow_state = _state(runs.t_fade, runs.fade_censored), _state(runs[predicted], runs[censored])
    both_faded = (measured_state == "faded") & (flow_state == "faded")
    ratio = runs[predicted] / runs.t_fade
    agree = (measured_state == flow_state) & (~both_faded | ratio.between(1 / AGREEMENT, AGREEMENT))
    medians = runs.groupby("lambda")[["t_fade", predicted]].median()
    ordered = all(medians[column].is_monotonic_decreasing and medians[column].nunique() > 1 for column in medians)
    ratios = f"flow / run {', '.join(f'{r:.2f}' for r in ratio[both_faded])}" if both_faded.any() else "none faded in both"
    verdict = "holds" if agree.all() else "partly" if ordered else "fails"
    return f"{verdict} ({int(agree.sum())} of {len(runs)} runs agree; {ratios})"


def _state(t_fade: pd.Series, censored: pd.Series) -> pd.Series:
    """How a run (or its flow) ended: "no ICL", "faded" or "censored" (ICL to the end)."""
    return pd.Series(np.where(t_fade.isna(), "no ICL", np.where(censored.astype(bool), "censored", "faded")), index=t_fade.index)


def transience_figure(report: dict[int | str, dict[str, Any]], path: Path) -> None:
    """theory_T5.png: measured t_fade and the flow's against lambda, open at the run's end where
    not faded by then, a cross at 0 where there was no ICL; beside it, one seed per lambda: ICL
    accuracy and the flow's in-context logit."""
    figure, (fades, over_time) = plt.subplots(1, 2, figsize=(10, 3.8))
    logit_axis = over_time.twinx()
    for n, t5 in report.items():
        runs, drive = pd.DataFrame(t5["runs"]), t5["drive"]
        spread = 0.02 * max(runs["lambda"].max(), 1e-12)
        marks = [("t_fade", "fade_censored", "o", "run")]
        if drive:
            marks += [(f"flow_t_fade_{d}", f"flow_censored_{d}", "s" if d == drive else "D", f"flow, drive {d}")
                      for d in DRIVES if f"flow_t_fade_{d}" in runs]
        for offset, (column, censored, marker, label) in enumerate(marks):
            x, state = runs["lambda"] + spread * (offset - 1), _state(runs[column], runs[censored])
            colour = f"C{offset}"
            faded, open_, none = (state == "faded"), (state == "censored"), (state == "no ICL")
            fades.scatter(x[faded], runs[column][faded], marker=marker, color=colour, label=f"N={n} {label}")
            fades.scatter(x[open_], runs[column][open_], marker=marker, facecolors="none", edgecolors=colour)
            fades.scatter(x[none], np.zeros(none.sum()), marker="x", color=colour)
        first_seed = runs[runs.seed == runs.seed.min()]
        for colour, (run, lam) in enumerate(zip(first_seed.run, first_seed["lambda"])):
            metrics = load_run(run).metrics
            over_time.plot(metrics.step, metrics.icl_acc, color=f"C{colour}", lw=1, label=f"lambda {lam:g}")
            if run in t5["curves"].get(drive, {}):
                logit_axis.plot(*t5["curves"][drive][run], "--", color=f"C{colour}", lw=1)
        fades.axhline(runs.final_step.max(), color="gray", ls=":", lw=1)
    fades.set_xlabel("lambda (weight_decay_attn)")
    tick_swept(fades.xaxis, [lam for t5 in report.values() for lam in pd.DataFrame(t5["runs"])["lambda"]])
    fades.set_ylabel("t_fade (open: not by the end; x at 0: no ICL)", fontsize=8)
    fades.set_title(f"T5: ICL fade, runs and the flow (drive: {drive})", fontsize=9)
    fades.legend(fontsize=7, loc="upper right")
    over_time.set_xlabel("step")
    over_time.set_ylabel("ICL accuracy (solid)")
    logit_axis.set_ylabel("flow's in-context logit (dashed)", fontsize=8)
    over_time.set_title(f"seed {runs.seed.min()}, one run per lambda", fontsize=9)
    over_time.legend(fontsize=6, loc="center right")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
