"""A sweep as a table: one row per run with its config fields, final metrics and t_ICL.

Every analysis starts from this table (``load_sweeps``), so it reads any directory of run
directories, however they were made (``icl-mech sweep``, several sweeps, hand-trained runs).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from icl_mech import storage
from icl_mech.analysis.levels import Levels
from icl_mech.config import REDDY_EVAL_SETS, parse_value
from icl_mech.errors import ConfigError
from icl_mech.run import Run

#: The stopping rule's fields (icl_mech/stopping.py): when a run ends, not what it learns.
STOP_FIELDS = ("stop_icl_acc", "stop_plateau_steps", "stop_plateau_tol", "stop_plateau_iwl_acc")
#: Fields that identify runs of one curve point; every other varying field separates conditions.
POINT_FIELDS = ("K", "seed")


def first_crossing(steps: np.ndarray, values: np.ndarray, level: float, interpolate: bool = False) -> float:
    """The first evaluated step at which ``values`` reach ``level`` (NaN if never); with
    ``interpolate``, the step where the line between it and the evaluation before crosses."""
    steps, values = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    reached = np.flatnonzero(values >= level)
    if not reached.size:
        return float("nan")
    i = reached[0]
    if not interpolate or i == 0:
        return float(steps[i])
    fraction = (level - values[i - 1]) / (values[i] - values[i - 1])
    return float(steps[i - 1] + fraction * (steps[i] - steps[i - 1]))


def _run_row(run: Run, levels: Levels) -> dict:
    metrics = run.metrics
    if metrics.empty:
        raise ConfigError(f"{run.path} has no metrics yet")
    last = metrics.iloc[-1]
    fields = {key: value for section in run.config.to_dict().values() for key, value in section.items()}
    fields["frozen"] = "+".join(fields["frozen"])
    return {
        "run": str(run.path),
        **fields,
        "final_step": int(last.step),
        "icl_acc": float(last.icl_acc),
        "iwl_acc": float(last.iwl_acc),
        "train_acc": float(last.train_acc),
        # Reddy's two more sets (TaskConfig.reddy_eval_sets); NaN for runs without them
        **{f"{name}_acc": float(last.get(f"{name}_acc", np.nan)) for name in REDDY_EVAL_SETS},
        "t_icl": first_crossing(metrics.step.to_numpy(), metrics.icl_acc.to_numpy(), levels.icl),
        # ended at its step budget, not by the stopping rule (every run of a sweep without one)
        "uncommitted": not run.status.get("stopped_early", False),
    }


def load_sweeps(dirs: Iterable[str | Path], levels: Levels = Levels()) -> pd.DataFrame:
    """Every finished run directory (``storage.ended_status``) directly under ``dirs``, one row
    each; runs still training or interrupted are left out, as their last metrics are not final.

    K is infinite (None in the config) as ``inf`` so that it sorts and plots on a log axis;
    ``t_icl`` is the first step with ICL accuracy >= ``levels.icl``.
    """
    rows = []
    for directory in map(Path, dirs):
        if not directory.is_dir():
            raise ConfigError(f"sweep directory {directory} does not exist")
        for config in sorted(directory.glob(f"*/{storage.CONFIG}")):
            if storage.ended_status(config.parent) is not None:
                rows.append(_run_row(Run(config.parent), levels))
    if not rows:
        raise ConfigError(f"no finished run directories under {[str(d) for d in dirs]}")
    table = pd.DataFrame(rows)
    table["K"] = table["K"].astype(float).fillna(np.inf)
    return table


def select_runs(table: pd.DataFrame, where: dict[str, str]) -> pd.DataFrame:
    """The runs of ``table`` whose config field equals each value of ``where`` (field -> value as
    typed on a command line: ``{"B": "2"}``), so that one analysis can read a slice of pooled
    sweeps. A field no run has, or a value none has, is an error naming it."""
    for field, text in where.items():
        if field not in table:
            raise ConfigError(f"--where {field}={text}: no config field {field!r}")
        value, column = parse_value(text), table[field]
        if value is None:  # K=inf
            matches = column.astype(float) == np.inf
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            matches = np.isclose(column.astype(float), float(value))
        else:
            matches = column.astype(str) == str(value)
        if not matches.any():
            raise ConfigError(f"--where {field}={text}: no run has it (values: {sorted(set(column.astype(str)))})")
        table = table[matches]
    return table


def condition_columns(table: pd.DataFrame) -> list[str]:
    """Config fields that vary across the table other than K and seed (and run bookkeeping)."""
    bookkeeping = {"run", "final_step", "icl_acc", "iwl_acc", "train_acc", "t_icl", "steps", "uncommitted"}
    bookkeeping |= {f"{name}_acc" for name in REDDY_EVAL_SETS}
    bookkeeping |= set(POINT_FIELDS) | set(STOP_FIELDS)
    return [c for c in table.columns if c not in bookkeeping and table[c].astype(str).nunique() > 1]


def condition_label(values: dict) -> str:
    """``{"N": 20, "equalized": True}`` -> ``"N=20, equalized=True"`` (``"all runs"`` when empty)."""
    return ", ".join(f"{key}={value}" for key, value in values.items()) or "all runs"


def plain_runs(table: pd.DataFrame) -> pd.DataFrame:
    """Runs of the whole model (nothing frozen)."""
    return table[table.frozen == ""]
