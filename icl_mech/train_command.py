"""``icl-mech train``: train (or resume) one run from a preset plus overrides.

Building the parser imports nothing heavy (no torch, TransformerLens): ``--help`` and a bad flag
answer at once; what a run needs is imported when it runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from icl_mech.arguments import add_device, add_log, add_quiet, add_threads, parse_assignments
from icl_mech.config import REDDY_EVAL_SETS, RunConfig, parse_value
from icl_mech.errors import ConfigError, RunError
from icl_mech.presets import PRESETS, preset
from icl_mech.threads import use_requested_threads


def default_run_dir(config: RunConfig, preset_name: str) -> Path:
    """checkpoints/<preset>-K<K>-N<N>-seed<seed>."""
    task = config.task
    k = "inf" if task.K is None else task.K
    return Path("checkpoints") / f"{preset_name}-K{k}-N{task.N}-seed{config.train.seed}"


def run_config_from_args(args: argparse.Namespace) -> RunConfig:
    """The preset (or, resuming without --preset, the saved config) with the flags applied."""
    from icl_mech import storage

    if args.preset is None and args.resume and args.out is not None:
        base = RunConfig.from_dict(storage.read_json(_existing_run(Path(args.out)) / storage.CONFIG))
    else:
        base = preset(args.preset or "cpu")
    flags = {key: getattr(args, key) for key in ("K", "N", "seed", "steps") if hasattr(args, key)}
    assignments = parse_assignments(args.set)
    if twice := sorted(flags.keys() & assignments.keys()):
        raise ConfigError(f"--{twice[0]} and --set {twice[0]}=... both set {twice[0]}; give it once")
    return base.override(**flags, **assignments)


def _existing_run(out: Path) -> Path:
    """``out``, which --resume requires to hold a run: a typo must not start a new run."""
    from icl_mech import storage

    if not (out / storage.CONFIG).is_file():
        raise RunError(f"--resume: {out} holds no run (no {storage.CONFIG}); check the path, or leave out --resume to start one")
    return out


def run(args: argparse.Namespace) -> int:
    from icl_mech.devices import resolve_device

    config = run_config_from_args(args)
    resolve_device(args.device)
    use_requested_threads(args.threads)
    from icl_mech.trainer import train  # imports TransformerLens: only once the inputs are valid

    out = Path(args.out) if args.out else default_run_dir(config, args.preset or "cpu")
    if args.resume:
        _existing_run(out)
    result = train(
        config, out, device=args.device, resume=args.resume, progress=not args.quiet, capture=not args.eager, log=args.log
    )
    last = result.metrics.iloc[-1]
    reddy = "".join(f"  {name}_acc {last[f'{name}_acc']:.3f}" for name in REDDY_EVAL_SETS if f"{name}_acc" in last)
    print(
        f"{out}: step {int(last.step)}  icl_acc {last.icl_acc:.3f}  iwl_acc {last.iwl_acc:.3f}{reddy}  "
        f"train_acc {last.train_acc:.3f}  ({len(result.steps)} checkpoints)"
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train one run (writes a run directory of dense checkpoints)",
        description="Train the transformer on the in-context classification task and write a run "
        "directory: config.json, metrics.jsonl and one safetensors checkpoint per saved step "
        "(log-spaced early, evenly spaced later).",
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="named config: 'paper' (N=100, K=20000, SGD lr 0.01) or 'cpu' (N=20, minutes on a "
        "CPU). Default cpu; when resuming without it, the run's saved config.",
    )
    parser.add_argument("--K", type=parse_value, default=argparse.SUPPRESS, help="task diversity (number of training items); 'inf' for fresh items every sequence")
    parser.add_argument("--N", type=int, default=argparse.SUPPRESS, help="tokens per sequence (context pairs plus the query)")
    parser.add_argument("--seed", type=int, default=argparse.SUPPRESS, help="seed of items, eval sets, data order and init")
    parser.add_argument("--steps", type=int, default=argparse.SUPPRESS, help="optimizer steps")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="any other config field, e.g. --set lr=0.01 --set optimizer=sgd --set weight_decay_attn=3e-3 "
        "--set equalized=true (repeatable)",
    )
    parser.add_argument("--out", help="run directory (default checkpoints/<preset>-K<K>-N<N>-seed<seed>)")
    add_device(parser)
    parser.add_argument(
        "--eager",
        action="store_true",
        help="on CUDA, run every step and evaluation eagerly instead of replaying the CUDA graphs recorded "
        "at the start (slower; the same metrics to float tolerance; for debugging, e.g. hooks that should "
        "run at every step). No effect on the CPU, where nothing is captured",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last checkpoint (model, optimizer and RNG state); "
        "an error if --out holds no run",
    )
    add_threads(parser, "torch's own default")
    add_log(parser)
    add_quiet(parser)
    parser.set_defaults(handler=run)
