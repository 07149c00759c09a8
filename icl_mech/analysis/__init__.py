"""Analyses of sweeps: the paper's claims as numbers, figures (PNG) and tables (CSV).

Each analysis is a function ``(table, out_dir) -> summary`` over ``load_sweeps``' table of runs;
``make_figures`` runs them all (``icl-mech figures``).

The names below are imported on first use (PEP 562), not with the package: a command's parser
reads the light modules ``levels`` and ``figure_names``, and importing them must not import
pandas, SciPy and matplotlib with the analyses.
"""

from importlib import import_module

#: Each public name -> the module of this package that defines it.
_HOMES = {
    "FIGURES": "figures",
    "fit_power_law": "fits",
    "fit_threshold": "fits",
    "load_sweeps": "sweep_table",
    "make_figures": "figures",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
