"""Ablating each sub-circuit of real trained runs removes the ability it implements."""

from __future__ import annotations

import pytest

from probes.over_time import ablate_run
from probes_fixtures import both_run, icl_run, memorizing_run  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow


def test_ablating_induction_removes_icl(icl_run):
    table, sites = ablate_run(icl_run, "induction", "resample", steps=[icl_run.steps[-1]], progress=False)
    row = table.iloc[-1]
    assert [str(site) for site in sites] == ["blocks.0.attn.hook_z[head 0]"]
    assert row.icl_acc >= 0.88
    assert row.icl_acc_ablated <= 0.6


def test_ablating_induction_spares_memorization(both_run):
    # Judged where there is memorization to spare (IWL ~0.85): in the ICL run above IWL is ~0.6,
    # barely above chance, and how much of that thin margin survives varies from run to run.
    table, _ = ablate_run(both_run, "induction", "resample", steps=[both_run.steps[-1]], progress=False)
    row = table.iloc[-1]
    assert row.icl_acc_ablated <= 0.6
    assert row.iwl_acc >= 0.8
    assert abs(row.iwl_acc_ablated - row.iwl_acc) <= 0.05


def test_ablating_the_mlp_removes_memorization(memorizing_run):
    # Resampled (the default): with K=64 items in a 65-dim residual stream the direct path
    # memorizes too, so the mean-ablated MLP leaves IWL at ~0.8 (docs/PROBES.md).
    table, _ = ablate_run(memorizing_run, "mlp", "resample", steps=[memorizing_run.steps[-1]], progress=False)
    row = table.iloc[-1]
    assert row.iwl_acc >= 0.9
    assert row.iwl_acc_ablated <= 0.6


def test_path_ablations_split_icl_from_iwl_where_the_whole_mlp_cannot(both_run):
    # Measured on the shipped transient run at step 6000 (docs/PROBES.md), resample: ablating
    # the whole MLP takes both abilities (ICL 0.88 -> 0.53, IWL 0.85 -> 0.48); as paths, what
    # the MLP reads from the query's own token carries IWL only (ICL 0.88, IWL 0.50) and what it
    # reads from the head carries ICL only (ICL 0.52, IWL 0.84).
    step = [both_run.steps[-1]]
    memorization, sites = ablate_run(both_run, "memorization-path", "resample", steps=step, progress=False)
    assert [str(site) for site in sites] == ["blocks.0.hook_mlp_in <- blocks.0.hook_resid_pre"]
    icl_path, _ = ablate_run(both_run, "icl-path", "resample", steps=step, progress=False)
    memorization, icl_path = memorization.iloc[-1], icl_path.iloc[-1]
    assert memorization.iwl_acc_ablated <= 0.55 and abs(memorization.icl_acc_ablated - memorization.icl_acc) <= 0.02
    assert icl_path.icl_acc_ablated <= 0.55 and abs(icl_path.iwl_acc_ablated - icl_path.iwl_acc) <= 0.02
