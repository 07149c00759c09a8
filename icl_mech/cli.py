"""The ``icl-mech`` command: a thin layer whose subcommands are library functions.

Subcommands are registered under the ``icl_mech.commands`` entry-point group (pyproject.toml):
each entry names a ``register(subparsers)`` function. That is how packages outside ``icl_mech``
(the probes) add commands without ``icl_mech`` importing them.
"""

from __future__ import annotations

import argparse
import signal
import sys
import typing
import warnings
from functools import partial
from importlib.metadata import entry_points

from icl_mech.errors import IclMechError, TrainingStopped


class _OneLineParser(argparse.ArgumentParser):
    """argparse, except that a bad argument is one line naming it (no usage block), like every
    other bad input; ``--help`` still shows the usage. Subparsers inherit the class."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with every registered subcommand, or only ``command``'s when it names one
    (so running one command never imports the others' dependencies)."""
    parser = _OneLineParser(
        prog="icl-mech",
        description="Train small transformers on in-context classification and take them apart "
        "over training time (TransformerLens HookedTransformer models, dense checkpoints).",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    entries = sorted(entry_points(group="icl_mech.commands"), key=lambda e: e.name)
    if command in {entry.name for entry in entries}:
        entries = [entry for entry in entries if entry.name == command]
    for entry in entries:
        entry.load()(subparsers)
    return parser


def _one_line_warning(command: str, shown: set[str], message: Warning | str, *details: object) -> None:
    """A warning during a command, as one line like the errors (no source file and line), and once
    (a run's log read in two places is cut short once)."""
    line = f"icl-mech {command}: warning: {message}"
    if line not in shown:
        shown.add(line)
        print(line, file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the subcommand; input errors print one line and return 2, training
    stopped by SIGTERM (after saving) prints how to resume and returns 143."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = partial(_one_line_warning, args.command, set())
            return args.handler(args) or 0
    except IclMechError as error:
        print(f"icl-mech {args.command}: error: {error}", file=sys.stderr)
        return 2
    except TrainingStopped as stopped:
        print(f"icl-mech {args.command}: {stopped}", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print(f"icl-mech {args.command}: interrupted; what was saved is kept", file=sys.stderr)
        return 130


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
