"""Run directories written by hand: a config and a metrics log whose curves a test chose, for
analyses whose answer must be known exactly (no training)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from icl_mech import storage
from icl_mech.config import RunConfig


def write_run(
    directory: Path, config: RunConfig, steps: np.ndarray, icl_acc: np.ndarray, iwl_acc: np.ndarray,
    **logged: np.ndarray,
) -> None:
    """A finished run that logged ``icl_acc`` and ``iwl_acc`` (train accuracy = IWL) at ``steps``,
    and each of ``logged`` (a metrics column: its values at ``steps``)."""
    directory.mkdir(parents=True)
    storage.write_json(directory / storage.CONFIG, config.to_dict())
    rows = [
        {"step": int(s), "icl_acc": float(i), "iwl_acc": float(w), "train_acc": float(w),
         **{name: float(values[index]) for name, values in logged.items()}}
        for index, (s, i, w) in enumerate(zip(steps, icl_acc, iwl_acc))
    ]
    (directory / storage.METRICS).write_text("".join(json.dumps(row) + "\n" for row in rows))
    storage.write_json(directory / storage.STATUS, {"last_step": int(steps[-1]), "stopped_early": False})
