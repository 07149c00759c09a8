"""The stopping rule: a run ends once it has committed to ICL or to memorization, not before."""

from __future__ import annotations

import pytest

from icl_mech import ConfigError, preset
from icl_mech.analysis.sweep_table import load_sweeps
from icl_mech.config import TrainConfig
from icl_mech.stopping import stop_reason
from icl_mech.trainer import train

RULE = TrainConfig(eval_every=100, stop_icl_acc=0.95, stop_plateau_steps=500, stop_plateau_tol=0.01)


def _history(iwl: list[float], loss: list[float], icl: float = 0.6) -> list[dict[str, float]]:
    return [
        {"step": 100 * i, "icl_acc": icl, "iwl_acc": a, "train_loss": l}
        for i, (a, l) in enumerate(zip(iwl, loss))
    ]


def test_icl_accuracy_at_the_level_ends_the_run_as_icl():
    assert stop_reason(_history([0.5], [0.69], icl=0.95), RULE) == "icl"


def test_flat_iwl_and_loss_over_the_window_end_the_run_as_memorization():
    history = _history([0.5, 0.9, 0.96, 0.96, 0.96, 0.96, 0.96, 0.965], [0.69, 0.3, 0.1, 0.1, 0.1, 0.1, 0.1, 0.0995])
    assert stop_reason(history[:7], RULE) is None  # the window reaches back to step 100, still rising
    assert stop_reason(history, RULE) == "memorization"


def test_a_bouncing_loss_whose_best_still_falls_is_not_a_plateau():
    # Measured shape (a K = 1024 run under Adam): the loss at t is above the loss at t - W, but
    # the window reached a new lowest loss, so the run is still learning.
    loss = [0.06, 0.044, 0.019, 0.028, 0.015, 0.011, 0.024]
    history = _history([0.86, 0.874, 0.876, 0.875, 0.877, 0.885, 0.876], loss)
    rule = TrainConfig(eval_every=100, stop_plateau_steps=400, stop_plateau_tol=0.01)
    assert history[-1]["train_loss"] > history[2]["train_loss"]  # two rows W apart say "plateau"
    assert stop_reason(history, rule) is None


def test_a_memorized_runs_loss_decaying_towards_zero_is_a_plateau():
    # Measured shape (K = 128, N = 10): IWL flat at 0.96, the loss under 1e-4 and still halving
    # every window, which is a fall of 50% of itself but of 0.5% of the floor.
    loss = [0.03, 1e-4, 5e-5, 2.5e-5, 1.2e-5, 6e-6]
    history = _history([0.95, 0.962, 0.962, 0.962, 0.962, 0.962], loss)
    rule = TrainConfig(eval_every=100, stop_plateau_steps=200, stop_plateau_tol=0.01)
    assert stop_reason(history, rule) == "memorization"
    assert stop_reason(history[:3], rule) is None  # the window still holds the fall from 0.03


@pytest.mark.parametrize(
    ("iwl", "loss", "why"),
    [
        ([0.9, 0.9, 0.9, 0.9, 0.9, 0.92], [0.2] * 6, "IWL still rising by 0.02"),
        ([0.9] * 6, [0.2, 0.2, 0.2, 0.2, 0.2, 0.19], "loss still falling by 5%"),
        ([0.5] * 6, [0.693] * 6, "the chance plateau before ICL: IWL below the floor"),
        ([0.9] * 4, [0.2] * 4, "less history than the window"),
    ],
)
def test_runs_still_moving_or_at_chance_go_on(iwl, loss, why):
    assert stop_reason(_history(iwl, loss), RULE) is None, why


def test_the_rule_is_off_by_default_and_its_window_must_fit_the_evaluations():
    assert TrainConfig().stop_plateau_steps is None and TrainConfig().stop_icl_acc is None
    assert stop_reason(_history([0.99] * 20, [0.01] * 20), TrainConfig(eval_every=100)) is None
    with pytest.raises(ConfigError, match="multiple of eval_every"):
        TrainConfig(eval_every=100, stop_plateau_steps=250)


@pytest.mark.slow
def test_a_memorizing_run_ends_once_memorization_plateaus(tmp_path):
    config = preset("cpu").override(
        K=64, d_mlp=128, steps=2000, eval_every=20, checkpoint_every=100, eval_size=200, stop_plateau_steps=100,
    )
    run = train(config, tmp_path / "run", progress=False)
    assert run.status["stop_reason"] == "memorization" and run.status["stopped_early"]
    assert run.status["last_step"] < 2000 and run.steps[-1] == run.status["last_step"]
    last, before = run.metrics.iloc[-1], run.metrics.set_index("step").loc[run.status["last_step"] - 100]
    assert last.iwl_acc >= 0.8 and last.iwl_acc - before.iwl_acc < 0.01
    # a committed run, as the figures' tables count it (a run at its budget counts as uncommitted)
    assert not load_sweeps([tmp_path]).uncommitted.any()
