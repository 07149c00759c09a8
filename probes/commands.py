"""The probe subcommands of ``icl-mech`` (ablate, probe, independence, viz, report, llc,
trajectory) and the bare ``ablate``.

Each handler loads the run, calls one library function from ``probes`` and prints or saves what
it returns; a notebook calls the same functions with the same arguments.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from icl_mech import storage
from icl_mech.cli import main
from icl_mech.errors import RunError
from icl_mech.run import Run, load_run
from icl_mech.sampler import REDDY_EVAL_SETS
from icl_mech.devices import resolve_device
from probes.ablation import METHODS
from probes.circuits import CIRCUITS, parse_heads
from probes.independence import cross_ablation_matrix, independence_run, verdict
from probes.llc import DATA, RESTRICTIONS, SGLDSettings, llc_record, llc_run
from probes.kinetics import kinetics_curves, kinetics_summary, kinetics_verdict
from probes.over_time import ablate_run, probe_run
from probes.plots import (
    independence_panels,
    plot_ablation,
    plot_columns,
    plot_llc,
    plot_llc_traces,
    plot_trajectories,
    probe_panels,
)
from probes.progress import progress_onsets
from probes.report import write_report
from probes.trajectory import trajectory_pca
from probes.viz import head_patterns_view, write_view


def _directory_to_write(text: str) -> Path:
    """An --out directory, refused at once (before any probing) if a file stands in its way."""
    if (blocking := storage.blocking_file(Path(text))) is not None:
        raise argparse.ArgumentTypeError(f"{blocking} is a file, not a directory")
    return Path(text)


def _file_to_write(text: str) -> Path:
    """An --out file, refused at once if it is a directory or a file stands where its folder goes."""
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory; give a file name")
    _directory_to_write(str(Path(text).parent))
    return Path(text)


def _add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")


def _add_reporting(parser: argparse.ArgumentParser, json_help: str = "print JSON instead of a table") -> None:
    """--json, --quiet and --device: how a command that probes many checkpoints reports and runs."""
    parser.add_argument("--json", action="store_true", help=json_help)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_device(parser)


def _add_common(parser: argparse.ArgumentParser, over_time: bool = True) -> None:
    parser.add_argument("--run", required=True, help="run directory (written by `icl-mech train`)")
    if not over_time:
        _add_device(parser)
        return
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--step", type=int, help="checkpointed step to probe (default: the last)")
    which.add_argument("--all-steps", action="store_true", help="every checkpoint; also writes a CSV and a PNG plot")
    parser.add_argument(
        "--out", type=_directory_to_write, help="directory for the CSV and PNG (default: the run directory)"
    )
    _add_reporting(parser)


def _add_circuit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--method", choices=METHODS, default="resample",
        help="replace activations by their values on other sequences of the evaluation set "
        "(resample, default: keeps downstream inputs typical), by their mean over the set (per "
        "position) or by zeros",
    )
    parser.add_argument(
        "--heads", type=parse_heads,
        help="the circuit's heads as LAYER.HEAD[,...] (default: detected in the last checkpoint, "
        "heads whose score is >= 0.5, else the best one)",
    )


def _steps(run: Run, step: int | None, all_steps: bool = False) -> list[int]:
    if not run.steps:
        raise RunError(f"{run.path} has no checkpoints yet")
    if all_steps:
        return run.steps
    if step is None:
        return [run.steps[-1]]
    if step not in run.steps:
        raise RunError(
            f"step {step} was never checkpointed in {run.path}; saved steps are "
            f"{', '.join(map(str, run.steps))}"
        )
    return [step]


def _table(frame: pd.DataFrame, **kwargs) -> str:
    return frame.to_string(float_format="{:.3f}".format, **kwargs)


def _save(table: pd.DataFrame, run: Run, args: argparse.Namespace, stem: str, plot: Callable[[Path], None]) -> None:
    """``stem``.csv and ``stem``.png in --out (default: the run directory)."""
    out = Path(args.out) if args.out else run.path
    with storage.naming_write_failures(out):
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / f"{stem}.csv", index=False)
        plot(out / f"{stem}.png")
    print(f"wrote {out / f'{stem}.csv'} and {out / f'{stem}.png'}", file=sys.stderr)


def run_ablate(args: argparse.Namespace) -> int:
    run = load_run(args.run)
    table, sites = ablate_run(
        run, args.circuit, args.method, _steps(run, args.step, args.all_steps), args.heads, resolve_device(args.device), not args.quiet
    )
    what = f"{args.circuit} ({', '.join(map(str, sites))}) ablated by {args.method}"
    if args.json:
        print(json.dumps({"run": str(run.path), "circuit": args.circuit, "method": args.method,
                          "sites": [str(site) for site in sites], "rows": table.to_dict("records")}))
    else:
        print(f"{run.path}: {what}")
        print(_table(table, index=False))
    if args.all_steps:
        stem = f"ablate-{args.circuit}-{args.method}"
        _save(table, run, args, stem, lambda path: plot_ablation(table, f"{run.path.name}: {what}", path))
    return 0


def run_probe(args: argparse.Namespace) -> int:
    run = load_run(args.run)
    table = probe_run(run, _steps(run, args.step, args.all_steps), resolve_device(args.device), not args.quiet)
    if args.json:
        print(json.dumps({"run": str(run.path), "rows": table.to_dict("records")}))
    else:
        print(_table(table.set_index("step").T if len(table) == 1 else table, index=len(table) == 1))
    if args.all_steps:
        panels = probe_panels(table)
        _save(table, run, args, "probe", lambda path: plot_columns(table, panels, run.path.name, path))
        if "context_label_acc" in table and not args.json:  # interleaved: Reddy's progress measures
            onsets = progress_onsets(table)
            jump = onsets.icl_jump_step.iloc[0]
            print("progress measures: the steps each covered a tenth and half of its rise, against ICL's jump "
                  + ("(none: ICL never got halfway from its start to 1)" if math.isnan(jump) else f"(step {jump:.0f})"))
            print(_table(onsets.drop(columns="icl_jump_step"), index=False))
    return 0


def run_independence(args: argparse.Namespace) -> int:
    run = load_run(args.run)
    device = resolve_device(args.device)
    table = independence_run(run, args.method, _steps(run, args.step, args.all_steps), args.heads, device, not args.quiet)
    last = table.iloc[-1]
    report = {"run": str(run.path), "method": args.method, "rows": table.to_dict("records"), "verdict": verdict(last)}
    if args.kinetics:
        out = (Path(args.out) if args.out else run.path) / "kinetics"
        steps = args.steps or run.config.train.steps
        summary = kinetics_summary(kinetics_curves(run, out, steps, str(device), not args.quiet))
        report.update(kinetics=summary.to_dict("records"), kinetics_verdict=kinetics_verdict(summary))
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{run.path}: cross-ablation ({args.method}) and interaction / |logit|")
        print(_table(table, index=False) if len(table) > 1 else _table(cross_ablation_matrix(last)))
        if args.kinetics:
            print(_table(summary, index=False))
            print(report["kinetics_verdict"])
        print(report["verdict"])
    if args.all_steps:
        panels = independence_panels(table)
        _save(table, run, args, "independence", lambda path: plot_columns(table, panels, run.path.name, path))
    return 0


def run_viz(args: argparse.Namespace) -> int:
    run = load_run(args.run)
    step = _steps(run, args.step)[0]
    device = resolve_device(args.device)
    eval_sets = run.eval_sets(device)
    if args.set not in eval_sets:
        raise RunError(f"{run.path} has no {args.set} set: it was trained without reddy_eval_sets")
    view = head_patterns_view(run.model(step, device), eval_sets[args.set], args.index)
    title = f"{run.path.name}, step {step}: attention of every head on {args.set} sequence {args.index}"
    with storage.naming_write_failures(args.out):
        print(f"wrote {write_view(view, args.out, title)}")
    return 0


def _choices(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    """A comma-separated subset of ``allowed``, in the order given."""

    def parse(text: str) -> list[str]:
        chosen = [part.strip() for part in text.split(",") if part.strip()]
        if not chosen or (unknown := [part for part in chosen if part not in allowed]):
            raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(allowed)}, got {text!r}")
        return list(dict.fromkeys(chosen))

    return parse


def _step_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected checkpointed steps as STEP[,STEP...], got {text!r}") from None


def run_llc(args: argparse.Namespace) -> int:
    run = load_run(args.run)
    steps = [step for chosen in (args.steps or [None]) for step in _steps(run, chosen, args.all_steps)]
    steps = sorted(set(steps))
    settings = SGLDSettings(**{name: getattr(args, name) for name in SGLDSettings.__dataclass_fields__})
    table, estimates = llc_run(run, steps, args.restrict, args.data, settings, resolve_device(args.device), not args.quiet)
    record = llc_record(run, table, estimates)
    if args.json:
        print(json.dumps({key: value for key, value in record.items() if key != "traces"}))
    else:
        print(f"{run.path}: local learning coefficient (SGLD {json.dumps(settings.to_dict())})")
        shown = table.drop(columns=["llc_per_chain"])
        print(_table(shown, index=False))
    if args.out or len(steps) > 1:
        out = Path(args.out) if args.out else run.path
        with storage.naming_write_failures(out):
            out.mkdir(parents=True, exist_ok=True)
            storage.atomic_write(out / "llc.json", json.dumps(record).encode())
            table.to_csv(out / "llc.csv", index=False)
            plot_llc(table, run.metrics, f"{run.path.name}: local learning coefficient", out / "llc.png")
            plot_llc_traces(record["traces"], settings.burn_in, run.path.name, out / "llc-traces.png")
        print(f"wrote llc.json (settings, rows, traces), llc.csv, llc.png and llc-traces.png in {out}", file=sys.stderr)
    return 0


def run_trajectory(args: argparse.Namespace) -> int:
    runs = [load_run(path) for path in args.run]
    result = trajectory_pca(runs, args.probe_size, resolve_device(args.device), not args.quiet)
    summary = result.summary()
    if args.json:
        print(json.dumps(summary))
    else:
        print(result.describe())
    if args.out:
        with storage.naming_write_failures(args.out):
            args.out.mkdir(parents=True, exist_ok=True)
            storage.atomic_write(args.out / "trajectory.json", json.dumps(summary).encode())
            result.points.to_csv(args.out / "trajectory.csv", index=False)
            plot_trajectories(result, args.out / "trajectory.png")
        print(f"wrote trajectory.json, trajectory.csv and trajectory.png in {args.out}", file=sys.stderr)
    return 0


def run_report(args: argparse.Namespace) -> int:
    llc = None if args.no_llc else SGLDSettings()
    path = write_report(load_run(args.run), args.out, resolve_device(args.device), not args.quiet, llc)
    print(f"wrote {path}")
    return 0


def register_ablate(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ablate", help="ablate a sub-circuit and measure ICL/IWL accuracy",
        description="ICL and IWL accuracy and loss with and without one sub-circuit ablated, at one "
        "checkpoint or over training (--all-steps: also a CSV and a PNG plot).",
    )
    parser.add_argument(
        "--circuit", required=True, choices=sorted(CIRCUITS),
        help="induction: the attention head(s) that read the query's label from the context; "
        "mlp: every MLP layer's output; memorization-path: what each MLP reads from the token's "
        "own input (blocks.0.hook_resid_pre), its attention input kept; icl-path: what each MLP "
        "reads from the attention outputs, its own stream kept; previous-token (interleaved "
        "runs): the head(s) below the last layer that copy each label token's item into it",
    )
    _add_circuit_options(parser)
    _add_common(parser)
    parser.set_defaults(handler=run_ablate)


def register_probe(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "probe", help="attention-pattern scores and logit attribution",
        description="Per head: match score (attention from the query to the context tokens holding "
        "its item) and previous-token score; per component: mean direct logit attribution toward "
        "the correct label on the ICL and IWL sets. Interleaved runs add the two-layer circuit's "
        "scores (induction, label previous-token, label attention) and the share of predictions "
        "that are a label of the context; with --all-steps, Reddy (2024)'s progress measures are "
        "dated against ICL's jump (the steps each covered a tenth and half of its rise).",
    )
    _add_common(parser)
    parser.set_defaults(handler=run_probe)


def register_independence(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "independence", help="are the induction and MLP sub-circuits independent?",
        description="Cross-ablation matrix and additivity of the two circuits' logit contributions, "
        "as components (head, MLP) and as paths into the MLP (icl-path, memorization-path), at the "
        "last step or over training with --all-steps; a verdict line for each, and with "
        "--kinetics the learning curves retrained without the MLP or with a sub-circuit frozen.",
    )
    _add_circuit_options(parser)
    parser.add_argument(
        "--kinetics", action="store_true",
        help="also retrain the run's config as full / no MLP / frozen MLP / frozen attention (same "
        "seed and data order) into <out>/kinetics and compare learning times (costly)",
    )
    parser.add_argument("--steps", type=int, help="training steps of the --kinetics runs (default: the run's)")
    _add_common(parser)
    parser.set_defaults(handler=run_independence)


def register_viz(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "viz", help="circuitsvis attention patterns of every head (offline HTML)",
        description="Attention patterns of every head on one evaluation sequence, tokens labelled "
        "#item:label and the query marked, as one self-contained HTML file.",
    )
    _add_common(parser, over_time=False)
    parser.add_argument("--step", type=int, help="checkpointed step (default: the last)")
    parser.add_argument(
        "--set", choices=("icl", "iwl", "train", *REDDY_EVAL_SETS), default="icl",
        help="evaluation set (default icl; icl_swap and iwl_iid in runs with Reddy's sets, docs/REDDY.md)",
    )
    parser.add_argument("--index", type=int, default=0, help="sequence of the set (default 0)")
    parser.add_argument("--out", required=True, type=_file_to_write, help="HTML file to write")
    parser.set_defaults(handler=run_viz)


def register_report(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", help="one self-contained HTML report of a run (offline)",
        description="Accuracy and loss over training, every head's attention with a slider over "
        "checkpoints, match score and logit attribution over time, the cross-ablation matrix over "
        "time with the independence verdict, the local learning coefficient over time (whole model, "
        "attention, MLP; training data; default SGLD settings) and the run's config: one HTML file that opens "
        "without network (open it with #step=N to show checkpoint N's attention).",
    )
    _add_common(parser, over_time=False)
    parser.add_argument("--out", required=True, help="HTML file to write (its directory must exist)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--no-llc", action="store_true",
        help="leave out the local learning coefficient section (its slowest; `icl-mech llc` computes it alone)",
    )
    parser.set_defaults(handler=run_report)


def register_llc(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "llc", help="local learning coefficient (SGLD, devinterp) over checkpoints",
        description="The local learning coefficient of the whole model and restricted to the "
        "attention's or the MLP's weights, on fresh training sequences or the ICL / IWL sets, each "
        "with its spread over SGLD chains, at the last checkpoint, the --steps given or every "
        "checkpoint. With --out or several steps, writes llc.json (the SGLD settings, rows and chain "
        "traces), llc.csv, llc.png (beside ICL and IWL accuracy) and llc-traces.png. Absolute values "
        "depend on the SGLD settings; compare estimates made with the same ones (docs/LLC.md).",
    )
    parser.add_argument("--run", required=True, help="run directory (written by `icl-mech train`)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--steps", type=_step_list, help="checkpointed steps, STEP[,STEP...] (default: the last)")
    which.add_argument("--all-steps", action="store_true", help="every checkpoint")
    parser.add_argument(
        "--restrict", type=_choices(RESTRICTIONS), default=list(RESTRICTIONS),
        help="weights the chains move: full, attn (W_Q W_K W_V W_O), mlp, comma-separated (default: all three)",
    )
    parser.add_argument(
        "--data", type=_choices(DATA), default=["train"],
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
    parser.add_argument("--out", type=_directory_to_write, help="directory for the files (default: the run directory)")
    _add_reporting(parser, "print JSON (settings and rows) instead of a table")
    parser.set_defaults(handler=run_llc)


def register_trajectory(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "trajectory", help="joint PCA of several runs' query logits over training",
        description="The query logits of every checkpoint of several runs on one fixed probe set "
        "(fresh ICL sequences and the first run's IWL sequences), projected on their joint "
        "principal components: the runs' paths in PC1-PC2, the variance of each component, and "
        "which component follows the ICL - IWL accuracy difference (the axis from memorizing to ICL).",
    )
    parser.add_argument("--run", required=True, action="append", help="run directory; repeat for each run")
    parser.add_argument("--probe-size", type=int, default=500, help="sequences of each kind in the probe set (default 500)")
    parser.add_argument("--out", type=_directory_to_write, help="directory for trajectory.json, .csv and .png")
    _add_reporting(parser, "print JSON instead of text")
    parser.set_defaults(handler=run_trajectory)


def ablate_entry() -> None:
    """The bare ``ablate`` console script: ``ablate --run DIR --circuit induction``."""
    sys.exit(main(["ablate", *sys.argv[1:]]))
