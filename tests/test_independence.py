"""Independence of the induction and MLP sub-circuits: cross-ablation, additivity and kinetics."""

from __future__ import annotations

import pytest
import torch

from icl_mech.presets import preset
from icl_mech.run import load_run
from icl_mech.trainer import train
from probes.independence import cross_ablation_matrix, independence_run, verdict
from probes.kinetics import VARIANTS, kinetics_curves, kinetics_summary, kinetics_verdict
from probes_fixtures import both_run  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow


def test_cross_ablation_matrix_of_a_run_with_both_icl_and_iwl(both_run):
    table = independence_run(both_run, "resample", steps=[both_run.steps[-1]], progress=False)
    row = table.iloc[-1]
    matrix = cross_ablation_matrix(row)
    assert list(matrix.index) == [
        "full", "no induction", "no mlp", "neither", "no icl path", "no memorization path", "no paths",
        "interaction", "path interaction",
    ]
    assert row.icl_acc > 0.8 and row.iwl_acc > 0.8
    # Measured (docs/PROBES.md): ablating the head removes ICL and spares IWL; ablating the MLP
    # removes IWL and ICL with it (the head's label reaches the logit through the MLP), so the
    # logits do not add.
    assert row.icl_acc_no_induction <= 0.6
    assert abs(row.iwl_acc_no_induction - row.iwl_acc) <= 0.05
    assert row.iwl_acc_no_mlp <= 0.6
    assert row.icl_acc_no_mlp <= 0.6
    assert min(row.icl_interaction, row.iwl_interaction) > 0.3
    assert "entangled (ablating the MLP moves ICL" in verdict(row)
    # As paths into the MLP the two split (docs/PROBES.md): the memorization path carries IWL
    # and not ICL, the icl path ICL and not IWL.
    assert row.iwl_acc_no_memorization_path <= 0.6
    assert abs(row.icl_acc_no_memorization_path - row.icl_acc) <= 0.05
    assert row.icl_acc_no_icl_path <= 0.6
    assert abs(row.iwl_acc_no_icl_path - row.iwl_acc) <= 0.05
    assert "paths into the MLP: independent" in verdict(row) or "paths into the MLP: entangled (the logits" in verdict(row)


def test_kinetics_retrains_each_variant_from_the_same_start(tmp_path):
    config = preset("cpu").override(K=64, steps=20, eval_every=10, checkpoint_every=10, eval_size=200)
    run = train(config, tmp_path / "run", progress=False)
    curves = kinetics_curves(run, tmp_path / "kinetics", steps=20, progress=False)
    assert set(curves.variant) == set(VARIANTS)
    assert all(len(curve) == len(curves[curves.variant == "full"]) for _, curve in curves.groupby("variant"))
    # Retraining "full" reproduces the run itself (same seed, same data order).
    full = curves[curves.variant == "full"].reset_index(drop=True)
    torch.testing.assert_close(torch.tensor(full.iwl_acc.values), torch.tensor(run.metrics.iwl_acc.values))
    frozen = load_run(tmp_path / "kinetics" / "frozen_attn")
    start, end = frozen.state_dict(0), frozen.state_dict(20)
    assert torch.equal(start["blocks.0.attn.W_Q"], end["blocks.0.attn.W_Q"])
    assert not torch.equal(start["blocks.0.mlp.W_in"], end["blocks.0.mlp.W_in"])
    assert load_run(tmp_path / "kinetics" / "no_mlp").config.model.attn_only
    summary = kinetics_summary(curves)
    assert list(summary.variant) == list(VARIANTS)
    assert kinetics_verdict(summary).startswith("kinetics: ICL reaches 0.9 at")
