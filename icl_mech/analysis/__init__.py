"""Analyses of sweeps: the paper's claims as numbers, figures (PNG) and tables (CSV).

Each analysis is a function ``(table, out_dir) -> summary`` over ``load_sweeps``' table of runs;
``make_figures`` runs them all (``icl-mech figures``).

The names below are imported on first use (PEP 562), not with the package: a command's parser
reads the light modules ``levels`` and ``figure_names``, and importing them must not import
pandas, SciPy and matplotlib with the analyses.
"""

from icl_mech.lazy_exports import lazy_exports

#: Each public name -> the module that defines it.
_HOMES = {
    "FIGURES": "icl_mech.analysis.figures",
    "fit_power_law": "icl_mech.analysis.fits",
    "fit_threshold": "icl_mech.analysis.fits",
    "load_sweeps": "icl_mech.analysis.sweep_table",
    "make_figures": "icl_mech.analysis.figures",
}

__all__ = sorted(_HOMES)

__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
