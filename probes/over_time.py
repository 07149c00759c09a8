"""Probes over training time: the same (model, data) -> numbers function mapped over a run's checkpoints."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from icl_mech.baselines import iwl_baselines
from icl_mech.readout import chance, n_labels
from icl_mech.run import Run
from icl_mech.sampler import Batch
from icl_mech.trainer import evaluate
from probes.ablation import EVAL_SETS, ablation_effect, judged_sets
from probes.attribution import attribution_toward_target
from probes.circuits import Head, Site, circuit_sites
from probes.head_scores import match_chance, match_score, previous_token_score
from probes.interleaved_scores import (
    INTERLEAVED_SCORES,
    context_label_accuracy,
    induction_chance,
    label_attention_chance,
    label_previous_token_chance,
    label_tokens,
)
from probes.nested_logits import nested_logits_fit

Probe = Callable[[HookedTransformer], dict[str, float]]


def over_checkpoints(
    run: Run,
    probe: Probe,
    steps: Iterable[int] | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    desc: str = "probe",
) -> pd.DataFrame:
    """One row per checkpoint: ``step`` and what ``probe`` returns for the model at that step."""
    steps = run.steps if steps is None else list(steps)
    models = tqdm(run.models(steps, device), total=len(steps), desc=desc, disable=not progress)
    return pd.DataFrame([{"step": step, **probe(model)} for step, model in models])


def final_sites(
    run: Run,
    circuits: dict[str, Sequence[Head] | None],
    eval_sets: dict[str, Batch],
    device: str | torch.device = "cpu",
    best_below_threshold: bool = False,
) -> dict[str, list[Site]]:
    """Each circuit's sites (``circuits`` maps its name to the heads named for it, or None to
    detect them), found once in the run's last checkpoint, where the circuits have formed, so
    that every step of a run ablates the same heads (``best_below_threshold``:
    ``probes.circuits``)."""
    model = run.model(device=device)
    icl = eval_sets["icl"]
    return {name: circuit_sites(name, model, icl, heads, best_below_threshold) for name, heads in circuits.items()}


def ablate_run(
    run: Run,
    circuit: str,
    method: str = "resample",
    steps: Iterable[int] | None = None,
    heads: Sequence[Head] | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    best_below_threshold: bool = False,
) -> tuple[pd.DataFrame, list[Site]]:
    """ICL/IWL accuracy and loss, intact and with ``circuit`` ablated, at every step, the IWL sets'
    baselines beside them (what an ablated IWL accuracy falls to without any memory); and the sites."""
    eval_sets = run.eval_sets(device)
    sites = final_sites(run, {circuit: heads}, eval_sets, device, best_below_threshold)[circuit]
    baselines = iwl_baselines(run.config.task, run.pool, eval_sets)

    def probe(model: HookedTransformer) -> dict[str, float]:
        return ablation_effect(model, eval_sets, sites, method) | baselines

    return over_checkpoints(run, probe, steps, device, progress, desc=f"ablate {circuit}"), sites


def probe_summary(
    model: HookedTransformer, eval_sets: dict[str, Batch], baselines: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Accuracies on ``judged_sets`` (and ``chance``, 1/L) with ``baselines`` beside them (the
    IWL sets' label-prior and copy levels, ``icl_mech.baselines``), attention-pattern scores per head (on the ICL set;
    interleaved runs add their circuit's scores and Reddy's three nested logits, ``nl_*``) and
    the mean direct logit attribution toward the correct label of every component (on the ICL
    and the IWL set)."""
    row: dict[str, float] = {"chance": chance(n_labels(model))}
    for name in judged_sets(eval_sets):
        row[f"{name}_acc"] = evaluate(model, eval_sets[name])[1]
    row |= baselines or {}
    n_heads, icl = model.cfg.n_heads, eval_sets["icl"]
    scores = {"match": match_score, "prev": previous_token_score}
    if label_tokens(icl).any():  # interleaved: the two-layer induction circuit's own scores
        scores |= INTERLEAVED_SCORES
        row["induction_chance"] = induction_chance(icl)
        row["label_previous_token_chance"] = label_previous_token_chance(icl)
        row["label_attention_chance"] = label_attention_chance(icl)
        row["context_label_acc"] = context_label_accuracy(model, icl)
        row |= {f"nl_{name}": value for name, value in dataclasses.asdict(nested_logits_fit(model, icl)).items()}
    for score_name, score in scores.items():
        for index, value in enumerate(score(model, icl).flatten().tolist()):
            layer, head = divmod(index, n_heads)
            row[f"{score_name}_L{layer}H{head}"] = value
    row["match_chance"] = match_chance(icl)
    for name in EVAL_SETS:
        for term, value in attribution_toward_target(model, eval_sets[name]).items():
            row[f"{name}_dla_{term}"] = value
    return row


def probe_run(
    run: Run, steps: Iterable[int] | None = None, device: str | torch.device = "cpu", progress: bool = True
) -> pd.DataFrame:
    """``probe_summary`` at every step, the IWL sets' baselines beside their accuracies."""
    eval_sets = run.eval_sets(device)
    baselines = iwl_baselines(run.config.task, run.pool, eval_sets)
    return over_checkpoints(run, lambda model: probe_summary(model, eval_sets, baselines), steps, device, progress)
