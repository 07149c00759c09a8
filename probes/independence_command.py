"""``icl-mech independence``: are the induction and MLP sub-circuits independent? The
cross-ablation matrix and additivity verdicts, and optionally the learning kinetics."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from icl_mech.arguments import add_over_time, checkpointed_steps, save_table_and_plot, table_text
from probes.ablate_command import add_circuit_options


def run(args: argparse.Namespace) -> int:
    from icl_mech.devices import resolve_device
    from icl_mech.run import load_run
    from probes.independence import cross_ablation_matrix, independence_run, verdict
    from probes.kinetics import kinetics_curves, kinetics_summary, kinetics_verdict
    from probes.plots import independence_panels, plot_columns

    run = load_run(args.run)
    device = resolve_device(args.device)
    steps = checkpointed_steps(run, args.step, args.all_steps)
    table = independence_run(run, args.method, steps, args.heads, device, not args.quiet, args.best_below_threshold)
    last = table.iloc[-1]
    out = Path(args.out) if args.out else run.path
    report = {"run": str(run.path), "method": args.method, "rows": table.to_dict("records"), "verdict": verdict(last)}
    if args.kinetics:
        summary = kinetics_summary(
            kinetics_curves(run, out / "kinetics", args.steps or run.config.train.steps, str(device), not args.quiet)
        )
        report.update(kinetics=summary.to_dict("records"), kinetics_verdict=kinetics_verdict(summary))
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{run.path}: cross-ablation ({args.method}) and interaction / |logit|")
        print(table_text(table, index=False) if len(table) > 1 else table_text(cross_ablation_matrix(last)))
        if args.kinetics:
            print(table_text(summary, index=False))
            print(report["kinetics_verdict"])
        print(report["verdict"])
    if args.all_steps:
        panels = independence_panels(table)
        save_table_and_plot(table, out, "independence", lambda path: plot_columns(table, panels, run.path.name, path))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "independence", help="are the induction and MLP sub-circuits independent?",
        description="Cross-ablation matrix and additivity of the two circuits' logit contributions, "
        "as components (head, MLP) and as paths into the MLP (icl-path, memorization-path), at the "
        "last step or over training with --all-steps; a verdict line for each, and with "
        "--kinetics the learning curves retrained without the MLP or with a sub-circuit frozen.",
    )
    add_circuit_options(parser)
    parser.add_argument(
        "--kinetics", action="store_true",
        help="also retrain the run's config as full / no MLP / frozen MLP / frozen attention (same "
        "seed and data order) into <out>/kinetics and compare learning times (costly)",
    )
    parser.add_argument("--steps", type=int, help="training steps of the --kinetics runs (default: the run's)")
    add_over_time(parser)
    parser.set_defaults(handler=run)
