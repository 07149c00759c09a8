"""``icl-mech trajectory``: several runs' checkpoints in the joint principal components of their
query logits."""

from __future__ import annotations

import argparse
import json
import sys

from icl_mech.arguments import add_reporting, add_run, directory_to_write


def run(args: argparse.Namespace) -> int:
    from icl_mech import storage
    from icl_mech.devices import resolve_device
    from icl_mech.run import load_run
    from probes.plots import plot_trajectories
    from probes.trajectory import trajectory_pca

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


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "trajectory", help="joint PCA of several runs' query logits over training",
        description="The query logits of every checkpoint of several runs on one fixed probe set "
        "(every run's ICL and IWL sequences), projected on their joint principal components: the "
        "runs' paths in PC1-PC2, the variance of each component, and which component follows the "
        "ICL - IWL accuracy difference (the axis from memorizing to ICL). The numbers do not depend "
        "on the order of the --run options.",
    )
    add_run(parser, action="append", help="run directory; repeat for each run")
    parser.add_argument("--probe-size", type=int, default=500, help="sequences of each kind (ICL, IWL) from each run in the probe set (default 500)")
    parser.add_argument("--out", type=directory_to_write, help="directory for trajectory.json, .csv and .png")
    add_reporting(parser, "print JSON instead of text")
    parser.set_defaults(handler=run)
