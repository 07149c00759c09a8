"""Shared fixtures: small real runs trained once per test session."""

from __future__ import annotations

import pytest
import torch

from icl_mech import Run, preset, train

# CI has two cores; torch's default already uses them, tests keep it explicit.
torch.set_num_threads(2)


def cpu_config(**overrides):
    """The cpu preset with test-sized overrides."""
    return preset("cpu").override(**overrides)


@pytest.fixture(scope="session")
def icl_run(tmp_path_factory) -> Run:
    """A cpu-preset run at large K that acquires ICL (stops once ICL accuracy passes 0.9). Seed 0
    gets there at step 1750 on two threads and 3300 on one (float sums ordered otherwise), so the
    budget is the preset's 6000 steps: the test waits for the run, not for a lucky rounding."""
    config = cpu_config(K=4096, steps=6000, stop_icl_acc=0.9, eval_every=50, checkpoint_every=250)
    return train(config, tmp_path_factory.mktemp("runs") / "icl", progress=False)


@pytest.fixture(scope="session")
def memorizing_run(tmp_path_factory) -> Run:
    """A cpu-preset run at small K that memorizes its items."""
    config = cpu_config(K=64, steps=300, eval_every=50, checkpoint_every=100)
    return train(config, tmp_path_factory.mktemp("runs") / "memorize", progress=False)
