"""Probes mapped over the checkpoints of a real ICL run."""

from __future__ import annotations

import pytest
import torch

from icl_mech.trainer import evaluate
from probes.attribution import attribution_toward_target, logit_attribution
from probes.head_scores import match_chance, match_score
from probes.over_time import over_checkpoints
from probes_fixtures import icl_run  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow


def _first_step_past_halfway(table, column: str, start: float) -> int:
    """The first step at which ``column`` is past halfway from ``start`` to its final value."""
    halfway = (start + table[column].iloc[-1]) / 2
    return int(table.step[table[column] >= halfway].iloc[0])


def test_match_score_rises_from_chance_with_the_icl_jump(icl_run):
    eval_sets = icl_run.eval_sets()
    chance = match_chance(eval_sets["icl"])

    def probe(model):
        return {"icl_acc": evaluate(model, eval_sets["icl"])[1], "match_L0H0": match_score(model, eval_sets["icl"]).item()}

    table = over_checkpoints(icl_run, probe, progress=False)
    assert table.match_L0H0.iloc[0] < 1.5 * chance
    # Measured: 0.03 at init (chance 0.05) to 0.38 at ICL 0.88; the query also attends to itself
    # (same item), which caps the score well below 1 this early (docs/PROBES.md).
    assert table.match_L0H0.iloc[-1] >= 5 * chance
    match_rise = _first_step_past_halfway(table, "match_L0H0", chance)
    icl_jump = _first_step_past_halfway(table, "icl_acc", 0.5)
    steps = table.step.tolist()
    # Same checkpoint window: at most one checkpoint apart (checkpoints every 100 steps here).
    assert abs(steps.index(match_rise) - steps.index(icl_jump)) <= 1, (match_rise, icl_jump)


def test_logit_attribution_sums_to_the_logit_of_a_trained_model(icl_run):
    model = icl_run.model()
    batch = icl_run.eval_sets()["icl"]
    terms = logit_attribution(model, batch)
    logits = model(batch.tokens)[:, -1]
    torch.testing.assert_close(sum(terms.values()), logits, atol=1e-4, rtol=1e-4)
    # Measured: on the ICL set the MLP writes most of the correct answer (its input holds the
    # head's output), the head's direct path some, the query's own token nothing.
    toward = attribution_toward_target(model, batch)
    assert toward["mlp0"] > toward["L0H0"] > 0.1 > abs(toward["input"])
