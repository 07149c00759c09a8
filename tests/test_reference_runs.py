from pathlib import Path

import pytest

from icl_mech import RunError, load_run, train
from icl_mech.trainer import evaluate

REFERENCE = Path(__file__).resolve().parents[1] / "checkpoints" / "reference"


@pytest.mark.parametrize("name", ["icl", "memorize", "near"])
def test_shipped_runs_load_and_their_final_models_reproduce_their_metrics(name):
    run = load_run(REFERENCE / name)
    final = run.metrics.set_index("step").loc[run.steps[-1]]
    model = run.model()
    for set_name, batch in run.eval_sets().items():
        loss, acc = evaluate(model, batch)
        assert loss == pytest.approx(final[f"{set_name}_loss"], rel=1e-5)
        assert acc == pytest.approx(final[f"{set_name}_acc"], abs=1e-6)


def test_shipped_runs_show_their_regimes():
    icl, memorize = load_run(REFERENCE / "icl").metrics.iloc[-1], load_run(REFERENCE / "memorize").metrics.iloc[-1]
    assert icl.icl_acc >= 0.95 and icl.iwl_acc <= 0.6
    assert memorize.iwl_acc >= 0.95 and memorize.icl_acc <= 0.6


def test_shipped_runs_refuse_to_be_extended_and_are_left_untouched():
    run = load_run(REFERENCE / "memorize")
    before = {path: path.read_bytes() for path in run.path.rglob("*") if path.is_file()}
    with pytest.raises(RunError, match="no resume.safetensors"):
        train(run.config.override(steps=2000), run.path, resume=True, progress=False)
    assert train(run.config, run.path, resume=True, progress=False).steps == run.steps  # finished
    assert before == {path: path.read_bytes() for path in run.path.rglob("*") if path.is_file()}
