"""The analyses ``icl-mech figures`` can make, by name and in the order it makes them; apart from
the analyses (``icl_mech.analysis.figures.FIGURES``) so that ``figures --only`` imports no pandas."""

FIGURE_NAMES = ("transition", "threshold_scaling", "memorization", "icl_time", "transience", "equalized", "phase")
