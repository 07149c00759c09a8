"""An ensemble trains each member exactly as ``train`` would have, into its own run directory."""

import pytest
import torch

from icl_mech import ConfigError, load_run, preset
from icl_mech.ensemble import train_ensemble
from icl_mech.trainer import train


def small_config(**overrides):
    """Adam (so optimizer state must be stacked and split correctly), tiny sizes, dense saves."""
    base = dict(K=64, N=9, d_mlp=32, eval_size=100, steps=30, eval_every=10, checkpoint_every=16)
    return preset("cpu").override(**{**base, **overrides})


MEMBERS = [small_config(seed=0), small_config(seed=1), small_config(seed=2, K=256, epsilon=0.1)]


def assert_same_run(run, alone):
    """Same config, checkpoints and metrics (a resumed run also has its interruption's checkpoint)."""
    assert run.config == alone.config and set(alone.steps) <= set(run.steps)
    metrics = run.metrics.set_index("step")
    expected = alone.metrics.set_index("step")
    difference = (metrics.loc[expected.index] - expected).abs().to_numpy().max()
    assert difference < 1e-4, f"metrics differ by {difference}"
    last = run.steps[-1]
    for name, weight in run.state_dict(last).items():
        assert torch.allclose(weight, alone.state_dict(last)[name], atol=1e-5), name


@pytest.mark.slow
def test_ensemble_members_match_runs_trained_alone_and_load_as_runs(tmp_path):
    runs = train_ensemble(MEMBERS, [tmp_path / f"member{i}" for i in range(3)], progress=False)
    alone = train(MEMBERS[2], tmp_path / "alone", progress=False)
    loaded = load_run(tmp_path / "member2")
    assert_same_run(loaded, alone)
    assert [run.config for run in runs] == MEMBERS
    assert all(run.status["last_step"] == 30 and run.model().cfg.d_mlp == 32 for run in runs)
    different_seeds = runs[0].state_dict(30)["blocks.0.attn.W_Q"], runs[1].state_dict(30)["blocks.0.attn.W_Q"]
    assert not torch.allclose(*different_seeds)


@pytest.mark.slow
def test_interrupted_ensemble_resumes_as_an_ensemble_or_member_by_member(tmp_path):
    halfway = [config.override(steps=20) for config in MEMBERS[:2]]
    dirs = [tmp_path / "member0", tmp_path / "member1"]
    train_ensemble(halfway, dirs, progress=False)
    resumed = train_ensemble(MEMBERS[:1], dirs[:1], resume=True, progress=False)[0]
    member_alone = train(MEMBERS[1], dirs[1], resume=True, progress=False)
    assert_same_run(resumed, train(MEMBERS[0], tmp_path / "alone0", progress=False))
    assert_same_run(member_alone, train(MEMBERS[1], tmp_path / "alone1", progress=False))


def test_members_of_different_shapes_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="model.d_mlp"):
        train_ensemble([small_config(), small_config(d_mlp=64)], [tmp_path / "a", tmp_path / "b"])
    with pytest.raises(ConfigError, match="distinct run directory"):
        train_ensemble([small_config(), small_config(seed=1)], [tmp_path / "a", tmp_path / "a"])
    assert not any(tmp_path.iterdir())


def test_members_that_stop_early_leave_the_others_training_as_they_would_alone(tmp_path):
    """Stopped members are dropped from the stacked step (restacked without them, their optimizer
    state carried over): the others end exactly where they would alone. With ICL accuracy 0.56 as
    the stop, seeds 0 and 2 stop at steps 1 and 5 and seed 1 runs all 60."""
    configs = [small_config(seed=seed, steps=60, eval_every=5, stop_icl_acc=0.56) for seed in range(3)]
    runs = train_ensemble(configs, [tmp_path / f"member{i}" for i in range(3)], progress=False)
    alone = [train(config, tmp_path / f"alone{i}", progress=False) for i, config in enumerate(configs)]
    assert [run.status["last_step"] for run in runs] == [run.status["last_step"] for run in alone] == [1, 60, 5]
    for run, run_alone in zip(runs, alone):
        assert_same_run(run, run_alone)


@pytest.mark.slow
def test_an_ensemble_of_256_members_trains_each_as_it_would_alone(tmp_path):
    """The GPU width of issue 11, run on the CPU at toy size: 256 run directories locked, stacked,
    evaluated and saved by one process; two members checked against runs trained alone."""
    base = dict(K=64, N=9, d_mlp=16, eval_size=16, batch_size=8, steps=2, eval_every=1, checkpoint_every=1)
    configs = [preset("cpu").override(**{**base, "seed": seed, "K": 64 if seed % 2 else 128}) for seed in range(256)]
    runs = train_ensemble(configs, [tmp_path / f"member{i}" for i in range(256)], progress=False)
    assert all(run.status["last_step"] == 2 and run.steps == [0, 1, 2] for run in runs)
    for index in (0, 255):
        assert_same_run(runs[index], train(configs[index], tmp_path / f"alone{index}", progress=False))
