"""Analyses of sweeps: the paper's claims as numbers, figures (PNG) and tables (CSV).

Each analysis is a function ``(table, out_dir) -> summary`` over ``load_sweeps``' table of runs;
``make_figures`` runs them all (``icl-mech figures``).
"""

from icl_mech.analysis.figures import FIGURES, make_figures
from icl_mech.analysis.fits import fit_power_law, fit_threshold
from icl_mech.analysis.sweep_table import load_sweeps

__all__ = ["FIGURES", "fit_power_law", "fit_threshold", "load_sweeps", "make_figures"]
