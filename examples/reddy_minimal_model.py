"""Reddy (2024)'s minimal model trained by itself over a grid of data fields (docs/REDDY.md).

    python examples/reddy_minimal_model.py --grid B=1,2,4 --grid K=64,256,...,16384 --out b_k.csv

Each point trains ``icl_mech.reddy_model``'s model on the preset's task with the grid's values
(the same training stream and evaluation sets as a network run of that config) and prints its
final accuracies, the IWL sets' baselines beside them, and its parameters, one row per point;
``--out`` also writes them as CSV (making its folder).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from icl_mech.arguments import parse_assignments
from icl_mech.errors import IclMechError
from icl_mech.presets import preset
from icl_mech.reddy_model import minimal_grid
from icl_mech.sweep import parse_grid, plan_sweep

#: Each IWL accuracy beside what needs no memory: on ``iwl_iid`` copying where the query's class is
#: in the context, else the label prior; on ``iwl`` (query never in the context) the label prior.
COLUMNS = ["icl_acc", "icl_swap_acc", "iwl_iid_acc", "iwl_iid_copy_else_prior", "iwl_acc", "iwl_label_prior",
           "match", "readout"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="cpu-reddy", help="the task, seed, steps and batch size (default cpu-reddy)")
    parser.add_argument("--grid", action="append", default=[], help="FIELD=VALUES, as icl-mech sweep takes it (repeatable)")
    parser.add_argument("--set", action="append", default=[], help="FIELD=VALUE applied to every point (repeatable)")
    parser.add_argument("--lr", type=float, default=1e-2, help="Adam's learning rate (default 0.01)")
    parser.add_argument("--out", type=Path, help="also write the table to this CSV file")
    args = parser.parse_args(argv)
    try:
        base = preset(args.preset).override(**parse_assignments(args.set))
        points = plan_sweep(base, parse_grid(args.grid), ".")
    except IclMechError as error:
        print(f"reddy_minimal_model: error: {error}", file=sys.stderr)
        return 2
    table = minimal_grid(((point.values, point.config) for point in points), args.lr)
    print(table[[*points[0].values, *COLUMNS]].round(3).to_string(index=False))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
