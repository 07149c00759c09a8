"""Small real runs for the probe tests, each trained once per test session.

Fixtures are imported by several test modules; pytest would instantiate a session fixture once
per importing module, so the runs are cached here by name instead.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import pytest

from icl_mech.presets import preset
from icl_mech.run import Run, load_run
from icl_mech.trainer import train

#: The cpu preset at a smaller evaluation set (probes run full forwards on it at every checkpoint).
SMALL = {"eval_size": 500, "eval_every": 100}
CONFIGS = {
    # Acquires ICL (ICL 0.88 at step 1500, IWL ~0.6); checkpoints every 100 steps so the ICL rise
    # spans many of them.
    "icl": preset("cpu").override(K=4096, steps=3000, stop_icl_acc=0.88, checkpoint_every=100, **SMALL),
    # Memorizes (K=64: IWL ~0.99 by step 100, ICL at chance or below).
    "memorize": preset("cpu").override(K=64, steps=150, checkpoint_every=50, **SMALL),
}

_ROOT = Path(tempfile.mkdtemp(prefix="icl-mech-probe-runs-"))
atexit.register(shutil.rmtree, _ROOT, True)
_RUNS: dict[str, Run] = {}


def trained(name: str) -> Run:
    """The run ``name`` of ``CONFIGS``, trained on first use."""
    if name not in _RUNS:
        _RUNS[name] = train(CONFIGS[name], _ROOT / name, progress=False)
    return _RUNS[name]


@pytest.fixture
def icl_run() -> Run:
    return trained("icl")


@pytest.fixture
def memorizing_run() -> Run:
    return trained("memorize")


@pytest.fixture
def both_run() -> Run:
    """ICL and IWL both above 0.8 (checkpoints/reference/transient: step 6000 of a run whose ICL fades
    under attention weight decay). Shipped, not trained here: it takes about 6 CPU-minutes."""
    return load_run(Path(__file__).resolve().parents[1] / "checkpoints" / "reference" / "transient")
