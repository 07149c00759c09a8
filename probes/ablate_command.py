"""``icl-mech ablate`` (and the bare ``ablate`` console script): ICL and IWL accuracy with and
without one sub-circuit ablated, at one checkpoint or over training."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from icl_mech.arguments import add_over_time, checkpointed_steps, save_table_and_plot, table_text
from icl_mech.cli import main
from probes.circuit_names import CIRCUIT_NAMES, METHODS, parse_heads


def add_circuit_options(parser: argparse.ArgumentParser) -> None:
    """--method, --heads and --best-below-threshold: how a circuit is ablated and which heads it is
    (ablate, independence)."""
    parser.add_argument(
        "--method", choices=METHODS, default="resample",
        help="replace activations by their values on other sequences of the evaluation set "
        "(resample, default: keeps downstream inputs typical), by their mean over the set (per "
        "position) or by zeros",
    )
    parser.add_argument(
        "--heads", type=parse_heads,
        help="the circuit's heads as LAYER.HEAD[,...] (default: the heads whose score reaches 0.5 in "
        "the last checkpoint; in interleaved runs the induction head is searched above layer 0)",
    )
    parser.add_argument(
        "--best-below-threshold", action="store_true",
        help="in an interleaved run where no head reaches 0.5 (the circuit has not formed), take the "
        "best head and print it with its score, instead of stopping with an error (paired runs "
        "always take their best head, with the same note)",
    )


def run(args: argparse.Namespace) -> int:
    from icl_mech.devices import resolve_device
    from icl_mech.run import load_run
    from probes.over_time import ablate_run
    from probes.plots import plot_ablation

    run = load_run(args.run)
    steps = checkpointed_steps(run, args.step, args.all_steps)
    table, sites = ablate_run(
        run, args.circuit, args.method, steps, args.heads, resolve_device(args.device), not args.quiet,
        args.best_below_threshold,
    )
    what = f"{args.circuit} ({', '.join(map(str, sites))}) ablated by {args.method}"
    if args.json:
        print(json.dumps({"run": str(run.path), "circuit": args.circuit, "method": args.method,
                          "sites": [str(site) for site in sites], "rows": table.to_dict("records")}))
    else:
        print(f"{run.path}: {what}")
        print(table_text(table, index=False))
    if args.all_steps:
        stem = f"ablate-{args.circuit}-{args.method}"
        out = Path(args.out) if args.out else run.path
        save_table_and_plot(table, out, stem, lambda path: plot_ablation(table, f"{run.path.name}: {what}", path))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ablate", help="ablate a sub-circuit and measure ICL/IWL accuracy",
        description="ICL and IWL accuracy and loss with and without one sub-circuit ablated, at one "
        "checkpoint or over training (--all-steps: also a CSV and a PNG plot).",
    )
    parser.add_argument(
        "--circuit", required=True, choices=sorted(CIRCUIT_NAMES),
        help="induction: the attention head(s) that read the query's label from the context; "
        "mlp: every MLP layer's output; memorization-path: what each MLP reads from the token's "
        "own input (blocks.0.hook_resid_pre), its attention input kept; icl-path: what each MLP "
        "reads from the attention outputs, its own stream kept; previous-token (interleaved "
        "runs): the head(s) below the last layer that copy each label token's item into it",
    )
    add_circuit_options(parser)
    add_over_time(parser)
    parser.set_defaults(handler=run)


def entry() -> None:
    """The bare ``ablate`` console script: ``ablate --run DIR --circuit induction``."""
    sys.exit(main(["ablate", *sys.argv[1:]]))
