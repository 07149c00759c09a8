"""``icl-mech report``: one self-contained, offline HTML page of a run."""

from __future__ import annotations

import argparse

from icl_mech.arguments import add_device, add_quiet, add_run, add_threads


def run(args: argparse.Namespace) -> int:
    from icl_mech.devices import resolve_device
    from icl_mech.run import load_run
    from icl_mech.threads import use_requested_threads
    from probes.report import LLC_SETTINGS, write_report

    use_requested_threads(args.threads)
    llc = None if args.no_llc else LLC_SETTINGS
    path = write_report(load_run(args.run), args.out, resolve_device(args.device), not args.quiet, llc)
    print(f"wrote {path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", help="one self-contained HTML report of a run (offline)",
        description="Accuracy and loss over training, every head's attention with a slider over "
        "checkpoints, match score and logit attribution over time, the cross-ablation matrix over "
        "time with the independence verdict, the local learning coefficient over time (whole model, "
        "attention, MLP; training data; shorter SGLD chains than `icl-mech llc`'s defaults) and the "
        "run's config: one HTML file that opens without network (open it with #step=N to show "
        "checkpoint N's attention). On a 2-core CPU the shipped ICL run's report (15 checkpoints) "
        "takes about 15 s, 10 s with --no-llc; the time grows with the number of checkpoints.",
    )
    add_run(parser)
    add_device(parser)
    parser.add_argument("--out", required=True, help="HTML file to write (its directory must exist)")
    add_quiet(parser)
    add_threads(parser, "every core; on a machine shared with other jobs, 1 is far faster", "process")
    parser.add_argument(
        "--no-llc", action="store_true",
        help="leave out the local learning coefficient section (its slowest part; `icl-mech llc` computes it alone)",
    )
    parser.set_defaults(handler=run)
