"""The figures an analysis saves, kept for a test to read their axes back (tick labels, titles)
instead of looking at the PNG."""

from __future__ import annotations

from types import ModuleType

import pytest
from matplotlib.axis import Axis
from matplotlib.figure import Figure


def record_saved_figures(monkeypatch: pytest.MonkeyPatch, *modules: ModuleType) -> dict[str, Figure]:
    """Name -> figure of every ``save`` the analysis ``modules`` make from now on (still written
    and drawn as usual, so tick labels are filled in)."""
    figures: dict[str, Figure] = {}
    for module in modules:

        def record(figure, table, out_dir, name, save=module.save):
            figures[name] = figure
            return save(figure, table, out_dir, name)

        monkeypatch.setattr(module, "save", record)
    return figures


def tick_labels(axis: Axis) -> list[str]:
    """The major tick labels a reader sees on ``axis``: inside its view, not blank."""
    low, high = sorted(axis.get_view_interval())
    return [
        label.get_text()
        for tick, label in zip(axis.get_majorticklocs(), axis.get_majorticklabels())
        if low <= tick <= high and label.get_text()
    ]
