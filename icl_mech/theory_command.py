"""``icl-mech theory``: the paper's theory (our reconstruction, docs/THEORY.md) beside the runs."""

from __future__ import annotations

import argparse
import json

from icl_mech.arguments import LEVEL_HELP, add_level_options, directory_to_write, levels_from, sweep_directory
from icl_mech.theory.residual_columns import C1, RESIDUALS

#: The accuracy levels the theory reads runs with.
LEVELS = {name: LEVEL_HELP[name] for name in ("icl", "outcome", "memorized")}


def run(args: argparse.Namespace) -> int:
    from icl_mech.analysis.sweep_table import load_sweeps
    from icl_mech.analysis.theory import JSON_NAME, theory_report

    levels = levels_from(args, LEVELS)
    report = theory_report(load_sweeps(args.sweep, levels), args.out, levels, args.residual)
    if args.json:
        print(json.dumps(report.to_json(), indent=1))
        return 0
    for line in report.verdicts:
        print(line)
    print(f"written to {args.out / JSON_NAME}, theory.csv and theory_T1/T3/T4/T6/T7.png"
          + (" and theory_T5.png" if report.transience else ""))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "theory", help="the reduced kinetic model's predictions (T1, T3, T4, T5, T6, T7) beside memorization, K=inf and K-sweep runs",
        description="Read memorization runs (frozen=attn, finite K; they log c1, the MLP's residual), K=inf runs "
        "(3 or more seeds at each N) and K sweeps, and set each prediction of the theory beside them: T1, the "
        "memorization integral I_K = A K^nu; T3, the slope of ln t_ICL on each seed's beta0 (its attention's "
        "score gap at step 0; theory: -1); T4, P_ICL(K) = F_inf(2 I_K) and its K*, against the share of seeds "
        "that ended in ICL and the fitted K*; T5, where K-sweep runs at one K and N differ in weight_decay_attn, "
        "each run's ICL fade against the flow with weight decay driven by its own logged residual; T6, the factor "
        "by which equalized contexts move K* (measured where a K sweep has equalized=false and true at one N); T7, "
        "ln(e^L_ICL - 1) against the integral of the residual the ICL and IWL losses share, run by run after "
        "acquisition. Writes theory.json, theory.csv and theory_T1/T3/T4/T6/T7.png (and theory_T5.png where a "
        "sweep varies the decay), and "
        "prints one verdict line per prediction (docs/THEORY.md).",
    )
    parser.add_argument(
        "--sweep", action="append", required=True, type=sweep_directory,
        help="sweep directory holding any of the three kinds of runs (repeatable: runs are pooled)",
    )
    parser.add_argument("--out", required=True, type=directory_to_write, help="directory for theory.json, theory.csv and the figures")
    parser.add_argument("--json", action="store_true", help="print theory.json instead of the verdict lines")
    parser.add_argument(
        "--residual", choices=RESIDUALS, default=C1,
        help="the memorization runs' logged residual that T1 and T4 integrate into I_K: c1, the MLP alone with the "
        "attention output zeroed (the theory's definition), or iwl_residual, 1 - p(target) of the whole network on "
        "the IWL set, which the memorization law follows in our runs (docs/THEORY.md, T1) and predict reads "
        "(default: %(default)s)",
    )
    add_level_options(parser, LEVELS)
    parser.set_defaults(handler=run)
