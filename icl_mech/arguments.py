"""What every command shares: its common arguments (``--run``, ``--step``/``--all-steps``,
``--out``, ``--json``, ``--quiet``, ``--device``, ``--set``, ``--threads``, the accuracy levels), how they are
read, and how a command prints and saves its table.

Every ``*_command.py`` module, in ``icl_mech`` and in ``probes``, builds its parser from these
helpers, so one flag reads and helps the same way in every command. The module imports nothing
heavy at load time (no torch, pandas or TransformerLens): building a parser, and so ``--help``,
stays fast; what a helper needs to read a run or write a file it imports when it runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from icl_mech.analysis.levels import Levels
from icl_mech.config import parse_value
from icl_mech.errors import ConfigError, RunError

if TYPE_CHECKING:
    import pandas as pd

    from icl_mech.run import Run

DEVICE_HELP = "cpu or cuda[:N] (default cpu)"
RUN_HELP = "run directory (written by `icl-mech train`)"

#: The ``Levels`` fields a command may set, as ``--<field>-level``, and what each means.
LEVEL_HELP = {
    "icl": "ICL accuracy defining t_ICL",
    "outcome": "final ICL accuracy separating ICL from memorizing outcomes",
    "memorized": "IWL accuracy defining the memorization time",
    "faded": "ICL accuracy below which acquired ICL has faded",
}


def add_run(parser: argparse.ArgumentParser, help: str = RUN_HELP, **options) -> None:
    """``--run DIR``, required (``options`` such as ``action="append"`` pass through)."""
    parser.add_argument("--run", required=True, help=help, **options)


def add_device(parser: argparse.ArgumentParser, help: str = DEVICE_HELP) -> None:
    parser.add_argument("--device", default="cpu", help=help)


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def add_log(parser: argparse.ArgumentParser) -> None:
    """``--log tensorboard`` / ``--log wandb`` (repeatable): the live logs a training command sends
    every metrics row to (``icl_mech.live_log``)."""
    from icl_mech.live_log import LOGGERS  # light: it imports TensorBoard and W&B only to log

    parser.add_argument(
        "--log",
        action="append",
        choices=LOGGERS,
        default=[],
        help="send every evaluation's metrics live to TensorBoard (event files in the run directory: "
        "tensorboard --logdir DIR) or Weights & Biases (offline in RUN/wandb/ unless W&B is set up); "
        "repeat for both. Needs pip install 'icl-mech[tensorboard]' or 'icl-mech[wandb]'",
    )


def add_threads(parser: argparse.ArgumentParser, default: str, process: str = "training process") -> None:
    """``--threads T``: torch CPU threads per ``process`` (read by ``icl_mech.threads``)."""
    parser.add_argument(
        "--threads",
        type=int,
        metavar="T",
        help=f"torch CPU threads per {process} (default: OMP_NUM_THREADS when set, else {default})",
    )


def add_reporting(parser: argparse.ArgumentParser, json_help: str = "print JSON instead of a table") -> None:
    """--json, --quiet and --device: how a command that probes many checkpoints reports and runs."""
    parser.add_argument("--json", action="store_true", help=json_help)
    add_quiet(parser)
    add_device(parser)


def add_steps(parser: argparse.ArgumentParser) -> None:
    """``--step STEP`` or ``--all-steps`` (read with ``checkpointed_steps``)."""
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--step", type=int, help="checkpointed step to probe (default: the last)")
    which.add_argument("--all-steps", action="store_true", help="every checkpoint; also writes a CSV and a PNG plot")


def add_over_time(parser: argparse.ArgumentParser) -> None:
    """What a probe of one run over its checkpoints takes: --run, --step/--all-steps, --out for
    the CSV and PNG of --all-steps, --json, --quiet and --device."""
    add_run(parser)
    add_steps(parser)
    parser.add_argument(
        "--out", type=directory_to_write, help="directory for the CSV and PNG (default: the run directory)"
    )
    add_reporting(parser)


def directory_to_write(text: str) -> Path:
    """An --out directory, refused at once (before any work) if a file stands in its way."""
    from icl_mech import storage

    if (blocking := storage.blocking_file(Path(text))) is not None:
        raise argparse.ArgumentTypeError(f"{blocking} is a file, not a directory")
    return Path(text)


def file_to_write(text: str) -> Path:
    """An --out file, refused at once if it is a directory or a file stands where its folder goes."""
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory; give a file name")
    directory_to_write(str(Path(text).parent))
    return Path(text)


def sweep_directory(text: str) -> Path:
    """A --sweep directory, refused at once if it is one run's directory: a sweep is the folder
    that holds run directories (``icl-mech sweep --out``), and a run alone fits no analysis."""
    from icl_mech import storage

    path = Path(text)
    if (path / storage.CONFIG).is_file():
        raise argparse.ArgumentTypeError(
            f"{text} is a run directory, not a sweep; pass the folder that holds the runs "
            f"(--sweep {path.absolute().parent}), or look at this run with icl-mech report --run {text}"
        )
    return path


def comma_choices(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    """An argument type: a comma-separated subset of ``allowed``, in the order given."""

    def parse(text: str) -> list[str]:
        chosen = [part.strip() for part in text.split(",") if part.strip()]
        if not chosen or [part for part in chosen if part not in allowed]:
            raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(allowed)}, got {text!r}")
        return list(dict.fromkeys(chosen))

    return parse


def step_list(text: str) -> list[int]:
    """An argument type: checkpointed steps as ``STEP[,STEP...]``."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected checkpointed steps as STEP[,STEP...], got {text!r}") from None


def parse_assignments(pairs: list[str]) -> dict:
    """``--set`` values: ``["lr=0.1", "K=inf"]`` -> ``{"lr": 0.1, "K": None}``."""
    values = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects FIELD=VALUE, got {pair!r}")
        values[key.strip()] = parse_value(text)
    return values


def add_level_options(parser: argparse.ArgumentParser, fields: dict[str, str]) -> None:
    """A ``--<field>-level`` flag for each of ``fields`` (names of ``Levels`` fields -> help)."""
    defaults = Levels()
    for name, meaning in fields.items():
        default = getattr(defaults, name)
        parser.add_argument(f"--{name}-level", type=float, default=default, help=f"{meaning} (default {default})")


def levels_from(args: argparse.Namespace, fields: dict[str, str]) -> Levels:
    """The ``Levels`` the flags of ``add_level_options(parser, fields)`` set."""
    return Levels(**{name: getattr(args, f"{name}_level") for name in fields})


def checkpointed_steps(run: Run, step: int | None, all_steps: bool = False) -> list[int]:
    """The steps ``--step`` / ``--all-steps`` name in ``run`` (default: its last checkpoint); a
    step it never saved is an error listing the saved ones."""
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


def table_text(frame: pd.DataFrame, **kwargs) -> str:
    """A table as printed by the commands: three decimals."""
    return frame.to_string(float_format="{:.3f}".format, **kwargs)


def save_table_and_plot(table: pd.DataFrame, out: Path, stem: str, plot: Callable[[Path], None]) -> None:
    """``stem``.csv and ``stem``.png (drawn by ``plot``) in ``out``, named on stderr."""
    from icl_mech import storage

    with storage.naming_write_failures(out):
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / f"{stem}.csv", index=False)
        plot(out / f"{stem}.png")
    print(f"wrote {out / f'{stem}.csv'} and {out / f'{stem}.png'}", file=sys.stderr)
