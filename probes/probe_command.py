"""``icl-mech probe``: attention-pattern scores and direct logit attribution per checkpoint, the
IWL sets' baselines beside their accuracies; for interleaved runs Reddy (2024)'s three nested
logits, and over training his progress measures dated against ICL's jump."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from icl_mech.arguments import add_over_time, checkpointed_steps, save_table_and_plot, table_text


def run(args: argparse.Namespace) -> int:
    from icl_mech.devices import resolve_device
    from icl_mech.run import load_run
    from probes.over_time import probe_run
    from probes.plots import plot_columns, probe_panels
    from probes.progress import progress_onsets

    run = load_run(args.run)
    steps = checkpointed_steps(run, args.step, args.all_steps)
    table = probe_run(run, steps, resolve_device(args.device), not args.quiet)
    if args.json:
        print(json.dumps({"run": str(run.path), "rows": table.to_dict("records")}))
    else:
        print(table_text(table.set_index("step").T if len(table) == 1 else table, index=len(table) == 1))
    if args.all_steps:
        panels = probe_panels(table)
        out = Path(args.out) if args.out else run.path
        save_table_and_plot(table, out, "probe", lambda path: plot_columns(table, panels, run.path.name, path))
        if "context_label_acc" in table and not args.json:  # interleaved: Reddy's progress measures
            onsets = progress_onsets(table)
            jump = onsets.icl_jump_step.iloc[0]
            print("progress measures: the steps from which each stayed above a tenth and half of its rise, "
                  "against ICL's jump "
                  + ("(none: ICL never got halfway from its start to 1)" if math.isnan(jump) else f"(step {jump:.0f})"))
            print(table_text(onsets.drop(columns="icl_jump_step"), index=False, na_rep="none"))  # never rose
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "probe", help="attention-pattern scores, logit attribution and Reddy's nested logits",
        description="Per head: match score (attention from the query to the context tokens holding "
        "its item) and previous-token score; per component: mean direct logit attribution toward "
        "the correct label on the ICL and IWL sets; beside the IWL accuracies, what needs no memory "
        "(the label prior, copying where the query's class is in the context). Interleaved runs add "
        "the two-layer circuit's scores (induction, label previous-token, label attention), the share "
        "of predictions that are a label of the context, and Reddy (2024)'s three nested logits "
        "(nl_*: the previous-token share read from layer 0, the match and readout fitted to the "
        "network, and how well they stand in for it); with --all-steps, his progress measures are "
        "dated against ICL's jump (the steps from which each stayed above a tenth and half of its rise).",
    )
    add_over_time(parser)
    parser.set_defaults(handler=run)
