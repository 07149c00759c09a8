"""The accuracy levels the analyses read runs with (``Levels``), apart from the analyses so that
a command's ``--<field>-level`` flags (``icl_mech.arguments.add_level_options``) import no pandas."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Levels:
    """The accuracy thresholds the analyses read runs with."""

    #: ICL accuracy that counts as "ICL acquired": t_ICL is the first step reaching it (paper: 0.95).
    icl: float = 0.95
    #: Final ICL accuracy at or above which a run ended in ICL rather than memorization.
    outcome: float = 0.75
    #: IWL accuracy at which the K items count as memorized (memorization time).
    memorized: float = 0.9
    #: ICL accuracy below which acquired ICL counts as faded (transience).
    faded: float = 0.75
    #: Memorization exponent used for the predicted K*(N) slope when no memorization runs exist.
    paper_nu: float = 0.7
