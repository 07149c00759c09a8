"""``icl-mech llc``: the local learning coefficient of a run's checkpoints (whole model,
attention, MLP; training data or the ICL / IWL sets), with its chains' traces and plots."""

from __future__ import annotations

import argparse
import json
import sys

from icl_mech.arguments import add_reporting, add_run, add_threads, checkpointed_steps, comma_choices, directory_to_write, step_list, table_text
from probes.llc_settings import DATA, RESTRICTIONS, SGLDSettings


def run(args: argparse.Namespace) -> int:
    from icl_mech import storage
    from icl_mech.devices import resolve_device
    from icl_mech.run import load_run
    from probes.llc import llc_record, llc_run
    from icl_mech.threads import use_requested_threads
    from probes.plots import plot_llc, plot_llc_traces

    use_requested_threads(args.threads)
    run = load_run(args.run)
    steps = sorted({step for chosen in (args.steps or [None]) for step in checkpointed_steps(run, chosen, args.all_steps)})
    settings = SGLDSettings(**{name: getattr(args, name) for name in SGLDSettings.__dataclass_fields__})
    table, estimates = llc_run(run, steps, args.restrict, args.data, settings, resolve_device(args.device), not args.quiet)
    record = llc_record(run, table, estimates)
    if args.json:
        print(json.dumps({key: value for key, value in record.items() if key != "traces"}))
    else:
        print(f"{run.path}: local learning coefficient (SGLD {json.dumps(settings.to_dict())})")
        print(table_text(table.drop(columns=["llc_per_chain"]), index=False))
    if out := args.out:
        with storage.naming_write_failures(out):
            out.mkdir(parents=True, exist_ok=True)
            storage.atomic_write(out / "llc.json", json.dumps(record).encode())
            table.to_csv(out / "llc.csv", index=False)
            plot_llc(table, run.metrics, f"{run.path.name}: local learning coefficient", out / "llc.png")
            plot_llc_traces(record["traces"], settings.burn_in, run.path.name, out / "llc-traces.png")
        print(f"wrote llc.json (settings, rows, traces), llc.csv, llc.png and llc-traces.png in {out}", file=sys.stderr)
    elif len(steps) > 1:
        print("no files written: --out DIR writes llc.json, llc.csv, llc.png and llc-traces.png", file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "llc", help="local learning coefficient (SGLD, devinterp) over checkpoints",
        description="The local learning coefficient of the whole model and restricted to the "
        "attention's or the MLP's weights, on fresh training sequences or the ICL / IWL sets, each "
        "with its spread over SGLD chains, at the last checkpoint, the --steps given or every "
        "checkpoint. With --out (and only then: nothing is written into the run directory), writes llc.json (the SGLD settings, rows and chain "
        "traces), llc.csv, llc.png (beside ICL and IWL accuracy) and llc-traces.png. Absolute values "
        "depend on the SGLD settings; compare estimates made with the same ones (docs/LLC.md).",
    )
    add_run(parser)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--steps", type=step_list, help="checkpointed steps, STEP[,STEP...] (default: the last)")
    which.add_argument("--all-steps", action="store_true", help="every checkpoint")
    parser.add_argument(
        "--restrict", type=comma_choices(RESTRICTIONS), default=list(RESTRICTIONS),
        help="weights the chains move: full, attn (W_Q W_K W_V W_O), mlp, comma-separated (default: all three)",
    )
    parser.add_argument(
        "--data", type=comma_choices(DATA), default=["train"],
        help="loss on: train (fresh sequences from the run's sampler), icl, iwl (its evaluation "
        "sets), comma-separated (default: train)",
    )
    defaults = SGLDSettings()
    for name, help_text in (
        ("lr", "SGLD step size"), ("n_beta", "inverse temperature n*beta"),
        ("localization", "pull toward the checkpoint's weights (gamma)"), ("chains", "SGLD chains"),
        ("draws", "steps averaged after the burn-in"), ("burn_in", "steps left out first"),
        ("batch_size", "sequences per step and chain"), ("seed", "seed of the data and the noise"),
    ):
        default = getattr(defaults, name)
        parser.add_argument(
            f"--{name.replace('_', '-')}", type=type(default), default=default, help=f"{help_text} (default {default})"
        )
    parser.add_argument("--out", type=directory_to_write, help="directory for llc.json, llc.csv, llc.png and llc-traces.png (default: none written)")
    add_reporting(parser, "print JSON (settings and rows) instead of a table")
    add_threads(parser, "every core; on a machine shared with other jobs, 1 is far faster", "process")
    parser.set_defaults(handler=run)
