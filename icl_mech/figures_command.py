"""``icl-mech figures``: the paper's analyses over one or more sweep directories (PNG + CSV)."""

from __future__ import annotations

import argparse
from pathlib import Path

from icl_mech.analysis import FIGURES, make_figures
from icl_mech.analysis.sweep_table import Levels


def run(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else Path(args.sweep[0]) / "figures"
    levels = Levels(icl=args.icl_level, outcome=args.outcome_level, memorized=args.memorized_level, faded=args.faded_level)
    for name, summary in make_figures(args.sweep, out, args.only, levels).items():
        print(f"{name}: {summary}")
    print(f"written to {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "figures",
        help="the paper's analyses over sweeps (transition, K* vs N, nu, t_ICL, transience, equalized)",
        description="Read every run directory in the sweep directories and write, for each analysis, "
        "<name>.png and <name>.csv: transition (K* with its interval), threshold_scaling (K* against N "
        "beside 1/nu), memorization (nu from frozen-attention runs), icl_time (t_ICL histogram, bimodal "
        "seeds), transience (ICL fading under attention weight decay), equalized (equalized contexts "
        "against plain). Analyses whose runs are absent are skipped with a note.",
    )
    parser.add_argument("--sweep", action="append", required=True, help="sweep directory (repeatable: runs are pooled)")
    parser.add_argument("--only", choices=list(FIGURES), help="one analysis (an error if its runs are absent)")
    parser.add_argument("--out", help="where figures go (default: <first sweep>/figures)")
    defaults = Levels()
    parser.add_argument("--icl-level", type=float, default=defaults.icl, help=f"ICL accuracy defining t_ICL (default {defaults.icl})")
    parser.add_argument(
        "--outcome-level", type=float, default=defaults.outcome,
        help=f"final ICL accuracy separating ICL from memorizing outcomes (default {defaults.outcome})",
    )
    parser.add_argument(
        "--memorized-level", type=float, default=defaults.memorized,
        help=f"IWL accuracy defining the memorization time (default {defaults.memorized})",
    )
    parser.add_argument(
        "--faded-level", type=float, default=defaults.faded,
        help=f"ICL accuracy below which acquired ICL has faded (default {defaults.faded})",
    )
    parser.set_defaults(handler=run)
