"""``icl-mech viz``: every head's attention on one evaluation sequence, as an offline
circuitsvis HTML page."""

from __future__ import annotations

import argparse

from icl_mech.arguments import add_device, add_run, checkpointed_steps, file_to_write
from icl_mech.errors import RunError
from icl_mech.config import REDDY_EVAL_SETS


def run(args: argparse.Namespace) -> int:
    from icl_mech import storage
    from icl_mech.devices import resolve_device
    from icl_mech.run import load_run
    from probes.viz import head_patterns_view, write_view

    run = load_run(args.run)
    step = checkpointed_steps(run, args.step)[0]
    device = resolve_device(args.device)
    eval_sets = run.eval_sets(device)
    if args.set not in eval_sets:
        raise RunError(f"{run.path} has no {args.set} set: it was trained without reddy_eval_sets")
    view = head_patterns_view(run.model(step, device), eval_sets[args.set], args.index)
    title = f"{run.path.name}, step {step}: attention of every head on {args.set} sequence {args.index}"
    with storage.naming_write_failures(args.out):
        print(f"wrote {write_view(view, args.out, title)}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "viz", help="circuitsvis attention patterns of every head (offline HTML)",
        description="Attention patterns of every head on one evaluation sequence, tokens labelled "
        "#item:label and the query marked, as one self-contained HTML file.",
    )
    add_run(parser)
    add_device(parser)
    parser.add_argument("--step", type=int, help="checkpointed step (default: the last)")
    parser.add_argument(
        "--set", choices=("icl", "iwl", "train", *REDDY_EVAL_SETS), default="icl",
        help="evaluation set (default icl; icl_swap and iwl_iid in runs with Reddy's sets, docs/REDDY.md)",
    )
    parser.add_argument("--index", type=int, default=0, help="sequence of the set (default 0)")
    parser.add_argument("--out", required=True, type=file_to_write, help="HTML file to write")
    parser.set_defaults(handler=run)
