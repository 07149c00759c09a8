"""``icl-mech figures``: the paper's analyses over one or more sweep directories (PNG + CSV)."""

from __future__ import annotations

import argparse
from pathlib import Path

from icl_mech.analysis.figure_names import FIGURE_NAMES
from icl_mech.arguments import LEVEL_HELP, add_level_options, levels_from, sweep_directory


def _field_value(text: str) -> tuple[str, str]:
    field, equals, value = text.partition("=")
    if not equals or not field or not value:
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE, got {text!r}")
    return field, value


def run(args: argparse.Namespace) -> int:
    from icl_mech.analysis.figures import make_figures

    out = Path(args.out) if args.out else Path(args.sweep[0]) / "figures"
    levels = levels_from(args, LEVEL_HELP)
    for name, summary in make_figures(args.sweep, out, args.only, levels, dict(args.where)).items():
        print(f"{name}: {summary}")
    print(f"written to {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "figures",
        help="the paper's analyses over sweeps (transition, K* vs N, nu, t_ICL, transience, equalized)",
        description="Read every run directory in the sweep directories and write, for each analysis, "
        "<name>.png and <name>.csv: transition (K* with its interval), threshold_scaling (K* against N, "
        "its slope with a bootstrap over seeds, beside 1/nu), memorization (nu from frozen-attention runs), icl_time (t_ICL histogram, bimodal "
        "seeds), transience (ICL fading under attention weight decay), equalized (equalized contexts "
        "against plain), phase (final ICL and IWL over one or two swept data fields, Reddy 2024). "
        "Analyses whose runs are absent are skipped with a note.",
    )
    parser.add_argument("--sweep", action="append", required=True, type=sweep_directory, help="sweep directory (repeatable: runs are pooled)")
    parser.add_argument("--only", choices=list(FIGURE_NAMES), help="one analysis (an error if its runs are absent)")
    parser.add_argument(
        "--where", type=_field_value, action="append", default=[], metavar="FIELD=VALUE",
        help="only the runs with this config value (repeatable), e.g. --where B=2 to read the B = 2 "
        "runs of a B x K sweep beside an epsilon x K one",
    )
    parser.add_argument("--out", help="where figures go (default: <first sweep>/figures)")
    add_level_options(parser, LEVEL_HELP)
    parser.set_defaults(handler=run)
