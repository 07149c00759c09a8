"""Every analysis by name, and ``make_figures``: the library function behind ``icl-mech figures``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd

from icl_mech.analysis.figure_names import FIGURE_NAMES
from icl_mech.analysis.icl_time import icl_time_figure
from icl_mech.analysis.memorization import memorization_figure
from icl_mech.analysis.phase import phase_figure
from icl_mech.analysis.plotting import MissingRuns
from icl_mech.analysis.sweep_table import Levels, load_sweeps, select_runs
from icl_mech.analysis.threshold_scaling import threshold_scaling_figure
from icl_mech.analysis.transience import transience_figure
from icl_mech.analysis.transition import equalized_figure, transition_figure
from icl_mech.errors import ConfigError

#: Name -> analysis; each writes ``<name>.png`` and ``<name>.csv`` and returns a one-line summary.
FIGURES: dict[str, Callable[[pd.DataFrame, Path, Levels], str]] = dict(
    zip(
        FIGURE_NAMES,
        (
            transition_figure, threshold_scaling_figure, memorization_figure, icl_time_figure, transience_figure,
            equalized_figure, phase_figure,
        ),
        strict=True,
    )
)


def make_figures(
    sweeps: Iterable[str | Path], out_dir: str | Path, only: str | None = None, levels: Levels = Levels(),
    where: dict[str, str] | None = None,
) -> dict[str, str]:
    """Run every analysis (or ``only`` one) over the runs of ``sweeps`` (those matching ``where``,
    ``select_runs``); name -> summary.

    Analyses whose runs the sweeps do not hold are skipped (their summary says what is missing);
    with ``only``, a missing kind of run is an error, and so is every analysis skipped (nothing
    would be written).
    """
    if only is not None and only not in FIGURES:
        raise ConfigError(f"unknown figure {only!r}; expected one of {list(FIGURES)}")
    sweeps = list(sweeps)
    table = select_runs(load_sweeps(sweeps, levels), where or {})
    summaries = {}
    for name, figure in FIGURES.items():
        if only not in (None, name):
            continue
        try:
            summaries[name] = figure(table, Path(out_dir), levels)
        except MissingRuns as missing:
            if only is not None:
                raise
            summaries[name] = f"skipped: {missing}"
    if all(summary.startswith("skipped: ") for summary in summaries.values()):
        reasons = "; ".join(f"{name} {summary}" for name, summary in summaries.items())
        raise MissingRuns(f"nothing written to {out_dir}: the runs of {[str(s) for s in sweeps]} fit no analysis ({reasons})")
    return summaries
