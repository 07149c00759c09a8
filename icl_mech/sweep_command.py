"""``icl-mech sweep``: train a grid of runs (resumable) on local processes or a Slurm job array."""

from __future__ import annotations

import argparse

from icl_mech.arguments import add_device, add_log, add_quiet, add_threads, parse_assignments
from icl_mech.presets import PRESETS, preset
from icl_mech.threads import available_cores


def _slurm_extra(pairs: list[str]) -> tuple[tuple[str, str], ...]:
    return tuple((key, str(value)) for key, value in parse_assignments(pairs).items())


def run(args: argparse.Namespace) -> int:
    from icl_mech.sweep import STATUSES, SlurmOptions, parse_grid, run_sweep  # torch, pandas: only to run

    base = preset(args.preset).override(**parse_assignments(args.set))
    slurm = SlurmOptions(
        partition=args.slurm_partition,
        time_min=args.slurm_time,
        gpus=args.slurm_gpus,
        cpus=args.slurm_cpus,
        parallelism=args.slurm_parallelism,
        extra=_slurm_extra(args.slurm_option),
        max_requeues=args.slurm_max_requeues,
        signal_delay_s=args.slurm_signal_delay,
    )
    index = run_sweep(
        base,
        parse_grid(args.grid),
        args.out,
        executor=args.executor,
        workers=args.workers,
        device=args.device,
        capture=not args.eager,
        ensemble=args.ensemble,
        threads=args.threads,
        slurm=slurm,
        progress=not args.quiet,
        log=args.log,
    )
    counts = index.status.value_counts()
    print(f"{args.out}/index.csv: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in STATUSES))
    for row in index[index.status == "failed"].itertuples():
        print(f"  failed {row.run}: {row.error}")
    return 1 if counts.get("failed", 0) else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="train a grid of runs (one run directory per point, resumable)",
        description="Train one run per point of the grid (the Cartesian product of every --grid) into "
        "OUT/<point name>, and keep OUT/index.csv with each run's status and final metrics. Running "
        "the same command again skips finished runs and resumes interrupted or failed ones.",
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu", help="base config (default cpu)")
    parser.add_argument(
        "--grid",
        action="append",
        default=[],
        required=True,
        metavar="FIELD=VALUES",
        help="a config field and its values: a comma list (lr=1e-3,1e-2; K=inf), an integer range "
        "(seed=0..7) or a progression (K=64,128,...,4096). Repeat for more fields.",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a config field held fixed over the sweep, e.g. --set steps=3000 --set stop_icl_acc=0.95",
    )
    parser.add_argument("--out", required=True, help="sweep directory")
    parser.add_argument("--executor", choices=("local", "slurm"), default="local", help="default local")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help=f"local worker processes, each training on --threads torch threads (this machine: {available_cores()} cores)",
    )
    add_threads(parser, "the cores divided among the workers, or --slurm-cpus on Slurm; T and OMP_NUM_THREADS count per worker, not in total")
    add_device(parser, help="cpu or cuda[:N], for every run (default cpu)")
    parser.add_argument(
        "--eager",
        action="store_true",
        help="on CUDA, train without the CUDA graphs (as icl-mech train --eager; the way on when recording "
        "a graph fails). No effect on the CPU",
    )
    parser.add_argument(
        "--ensemble",
        type=int,
        default=1,
        metavar="E",
        help="train up to E runs that differ only in seed and K together in one process "
        "(icl_mech.ensemble.train_ensemble); default 1: one run per process",
    )
    slurm = parser.add_argument_group("slurm (with --executor slurm; see docs/SWEEPS.md)")
    slurm.add_argument("--slurm-partition", help="partition (default: the cluster's)")
    slurm.add_argument(
        "--slurm-time",
        type=int,
        default=60,
        metavar="MINUTES",
        help="time limit per task (default 60); a run that needs longer is saved and requeued at the limit",
    )
    slurm.add_argument(
        "--slurm-max-requeues",
        type=int,
        default=3,
        metavar="N",
        help="times a task is saved and requeued at its time limit (default 3); after that it is marked "
        "failed, and running the sweep again resumes it",
    )
    slurm.add_argument(
        "--slurm-signal-delay",
        type=int,
        default=90,
        metavar="SECONDS",
        help="how long before the time limit Slurm tells a task to save and requeue (default 90; Slurm "
        "checks limits every 30 s, so the signal may come up to 30 s earlier)",
    )
    slurm.add_argument("--slurm-gpus", type=int, default=0, help="GPUs per run (default 0; pair with --device cuda)")
    slurm.add_argument("--slurm-cpus", type=int, default=2, help="CPU cores per run (default 2)")
    slurm.add_argument("--slurm-parallelism", type=int, default=64, help="array tasks running at once (default 64)")
    slurm.add_argument(
        "--slurm-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other sbatch option, e.g. --slurm-option account=mylab --slurm-option qos=short",
    )
    add_log(parser)
    add_quiet(parser)
    parser.set_defaults(handler=run)
