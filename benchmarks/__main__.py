"""``python -m benchmarks``: time the training step, ensembles, probes and the LLC against their baselines.

Prints one table row per comparison as soon as it is measured (median seconds of several repeats,
the speedup, its target), so a run cut short shows what it measured, and exits 1 if a speedup
misses its target by more than 20 percent. ``--quick`` runs every
comparison at toy sizes to check the machinery (the smoke test); its ratios mean nothing and are
not checked. ``--device cuda`` prints the GPU table instead (benchmarks/gpu.py), or without CUDA
says so in one line and exits 2 (before importing the library).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from benchmarks.comparisons import Comparison

#: A ratio may fall this far below its target before the benchmark fails.
TOLERANCE = 0.8


TABLE_HEADER = f"{'comparison':<58} {'baseline':>30} {'ours':>24} {'ratio':>7} {'target':>7}"


def format_row(row: Comparison, check: bool = True) -> str:
    """One comparison as a line under ``TABLE_HEADER`` (MISSED: more than 20 percent short)."""
    scale = 1e3 if row.unit == "ms" else 1.0
    baseline = f"{row.baseline}: {row.baseline_seconds * scale:.2f} {row.unit}"
    ours = f"{row.ours}: {row.ours_seconds * scale:.2f} {row.unit}"
    verdict = "  MISSED" if check and row.ratio < TOLERANCE * row.target else ""
    return f"{row.name:<58} {baseline:>30} {ours:>24} {row.ratio:>6.1f}x {row.target:>6.1f}x{verdict}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="toy sizes: check it runs, not how fast")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per measurement (median)")
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default="cpu",
        help="cpu: the CPU table (default); cuda: the paper preset end to end on the GPU, against the authors' loop there",
    )
    parser.add_argument(
        "--clock", choices=("cpu", "wall"), default="wall",
        help="CPU table: wall: elapsed time (default), cpu: this process's CPU time (steadier on a machine shared "
             "with other jobs); the CUDA table times the wall clock",
    )
    parser.add_argument(
        "--threads", type=int, default=torch.get_num_threads(),
        help=f"torch CPU threads (default: all, {torch.get_num_threads()} here; 1 is steadier on a shared machine)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.device == "cuda":
        if args.clock == "cpu" or args.repeats is not None:
            parser.error("--clock cpu and --repeats are the CPU table's; the CUDA table times each run once, wall clock")
        return cuda_table(args.quick)
    from benchmarks import comparisons
    from benchmarks.comparisons import (
        c1_in_evaluation, ensemble, llc_reference_run, llc_restrictions_in_step, llc_sampler, llc_stacked, probes,
        training_step,
    )
    from probes.llc import SGLDSettings
    from probes.report import LLC_SETTINGS

    comparisons.clock = comparisons.CLOCKS[args.clock]
    repeats = args.repeats or (1 if args.quick else 5)
    if args.quick:
        tiny = {"K": 64, "N": 10, "d_mlp": 16, "eval_size": 16, "batch_size": 8}
        measurements = [lambda: training_step(2, repeats, N=10), lambda: [ensemble(2, 3, repeats, **tiny)],
                        lambda: [probes(4, repeats, **tiny)], lambda: [llc_sampler(2, repeats)],
                        lambda: [llc_stacked(SGLDSettings(chains=2, draws=1, burn_in=1, batch_size=8), repeats)],
                        lambda: [llc_restrictions_in_step(SGLDSettings(chains=2, draws=1, burn_in=1, batch_size=8), repeats)],
                        lambda: [llc_reference_run(SGLDSettings(chains=2, draws=1, burn_in=1, batch_size=8))],
                        lambda: [c1_in_evaluation(repeats, **tiny)]]
    else:
        measurements = [lambda: training_step(20, repeats), lambda: [ensemble(16, 1000, max(1, repeats // 3))],
                        lambda: [probes(100, max(1, repeats // 2))], lambda: [llc_sampler(200, max(1, repeats // 2))],
                        lambda: [llc_stacked(settings, max(1, repeats // 2)) for settings in (LLC_SETTINGS, SGLDSettings())],
                        lambda: [llc_restrictions_in_step(SGLDSettings(), 1)], lambda: [llc_reference_run()],
                        lambda: [c1_in_evaluation(repeats)]]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.clock} time, median of {repeats} repeats")
    print(TABLE_HEADER, "-" * len(TABLE_HEADER), sep="\n", flush=True)
    rows = []
    for measurement in measurements:
        for row in measurement():
            rows.append(row)
            print(format_row(row, check=not args.quick), flush=True)
    if args.quick:
        print("(--quick: toy sizes, targets not checked)")
        return 0
    missed = [row.name for row in rows if row.ratio < TOLERANCE * row.target]
    if missed:
        print(f"missed by more than {1 - TOLERANCE:.0%}: {missed}", file=sys.stderr)
    return 1 if missed else 0


def cuda_table(quick: bool) -> int:
    """The GPU table (``--quick``: toy sizes, not checked); exit status 2 without CUDA."""
    if not torch.cuda.is_available():
        why = "built without CUDA" if torch.version.cuda is None else "no GPU visible"
        print(f"python -m benchmarks --device cuda: no CUDA device here (torch {torch.__version__}, {why}); "
              "the CPU table is `python -m benchmarks`", file=sys.stderr)
        return 2
    from benchmarks import gpu

    print(gpu.device_line("cuda"), flush=True)
    began = time.perf_counter()
    measured = gpu.measure(gpu.QUICK if quick else gpu.FULL, "cuda", show=lambda line: print(line, flush=True))
    print()
    print(gpu.format_report(measured, TOLERANCE, check=not quick))
    print(f"(the table took {time.perf_counter() - began:.0f} s)")
    if quick:
        print("(--quick: toy sizes, targets not checked)")
        return 0
    missed = gpu.missed(measured, TOLERANCE)
    if missed:
        print(f"missed by more than {1 - TOLERANCE:.0%}: {missed}", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
