"""``icl-mech predict``: K*(N) from memorization and K = infinity runs, before any run near K*, by
the theory's T4 (``icl_mech.analysis.prediction``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from icl_mech.arguments import LEVEL_HELP, add_level_options, levels_from, sweep_directory
from icl_mech.errors import ConfigError

#: The accuracy levels the prediction reads runs with: t_ICL, and K* of the --measured sweeps.
LEVELS = {name: LEVEL_HELP[name] for name in ("icl",)}


def parse_n_values(text: str) -> list[int]:
    """``"10,20,40"`` -> ``[10, 20, 40]`` (the ``--N`` flag)."""
    values = [part.strip() for part in text.split(",")]
    if not all(value.isdigit() and int(value) > 1 for value in values):
        raise ConfigError(f"--N expects context lengths (integers > 1) such as 10,20,40; got {text!r}")
    return [int(value) for value in values]


def run(args: argparse.Namespace) -> int:
    from icl_mech import storage
    from icl_mech.analysis.prediction import prediction_figure
    from icl_mech.analysis.sweep_table import load_sweeps

    n_values = parse_n_values(args.N)
    levels = levels_from(args, LEVELS)
    table = load_sweeps(args.sweep, levels)
    measured = load_sweeps(args.measured, levels) if args.measured else None
    out = Path(args.out) if args.out else Path(args.sweep[0]) / "figures"
    if (blocking := storage.blocking_file(out)) is not None:
        raise ConfigError(f"--out {blocking} is a file; expected a directory")
    result = prediction_figure(table, n_values, out, levels, measured)
    for row in result.itertuples():
        line = (
            f"N={row.N}: t_ICL {row.t_icl:.0f} -> predicted K* {row.K_star_predicted:.0f} "
            f"[{row.K_star_predicted_low:.0f}, {row.K_star_predicted_high:.0f}]"
        )
        if measured is not None and isinstance(row.K_star_bound, str) and row.K_star_bound:  # none in the swept K
            line += f"; measured K* {row.K_star_bound}"
        elif measured is not None:
            line += f"; measured K* {row.K_star:.0f} [{row.K_star_low:.0f}, {row.K_star_high:.0f}]"
        print(line)
    print(
        f"I_K at step {result.horizon.iloc[0]:.0f} = {result.prefactor.iloc[0]:.3g} K^{result.nu.iloc[0]:.3f}; "
        f"written to {out / 'predict.png'} and .csv"
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict", help="predict K*(N) from memorization and K=inf runs (the kinetic argument)",
        description="The theory's T4 (docs/THEORY.md): ICL wins when its threshold, half the time to learn "
        "it at K=inf, is met before the items are memorized. Fit the memorization integral I_K = A K^nu "
        "(the integral of the IWL-set residual 1 - p(target), logged as iwl_residual) at the last step of "
        "frozen-attention runs, take t_ICL(N) (median over seeds) from K=inf runs, and solve "
        "2 A K*^nu = t_ICL(N), with a bootstrap 95% interval. Writes predict.png and predict.csv; with "
        "--measured, K*(N) fitted on transition sweeps is drawn on the same axes.",
    )
    parser.add_argument(
        "--sweep", action="append", required=True, type=sweep_directory,
        help="sweep directory holding frozen-attention runs (frozen=attn) and K=inf runs at each N (repeatable: pooled)",
    )
    parser.add_argument("--N", required=True, help="context lengths to predict K* at, e.g. 10,20,40")
    parser.add_argument("--measured", action="append", type=sweep_directory, help="transition sweep(s) whose fitted K*(N) is drawn beside")
    parser.add_argument("--out", help="where predict.png/.csv go (default: <first sweep>/figures)")
    add_level_options(parser, LEVELS)
    parser.set_defaults(handler=run)
