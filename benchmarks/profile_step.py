"""``python -m benchmarks.profile_step``: where the time of one training step goes.

Prints the CPU's measured matmul rate, the FLOPs of one step of a preset (forward and backward,
counted by ``FlopCounterMode``), the median wall time of each phase (sampling, forward and loss,
backward, optimizer step), the fraction of the matmul rate the step reaches, and
``torch.profiler``'s operators by self CPU time. ``--members E`` profiles an ensemble's step of E
members instead (``train_ensemble``'s stacked step). The numbers behind benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.comparisons import EnsembleStep, LibraryStep
from icl_mech.presets import PRESETS, preset

PHASES = ("sample", "forward + loss", "backward", "optimizer step")


def matmul_rate(size: int, repeats: int) -> float:
    """GFLOP/s of a ``size``-cubed float32 GEMM: what these cores reach on dense work."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    began = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - began) / 1e9


def step_flops(step: LibraryStep) -> int:
    """FLOPs of one forward and backward (sampling and the optimizer do no matmuls)."""
    batch = step.sample()
    with FlopCounterMode(display=False) as counter:
        step.backward(step.loss(batch))
    return counter.get_total_flops()


def phase_seconds(step: LibraryStep, n_steps: int) -> dict[str, float]:
    """Median seconds of each phase over ``n_steps`` steps, after one warm-up step."""
    step()
    times: dict[str, list[float]] = {phase: [] for phase in PHASES}
    for _ in range(n_steps):
        marks = [time.perf_counter()]
        batch = step.sample()
        marks.append(time.perf_counter())
        loss = step.loss(batch)
        marks.append(time.perf_counter())
        step.backward(loss)
        marks.append(time.perf_counter())
        step.update()
        marks.append(time.perf_counter())
        for phase, began, ended in zip(PHASES, marks, marks[1:]):
            times[phase].append(ended - began)
    return {phase: statistics.median(values) for phase, values in times.items()}


def top_operators(step: LibraryStep, n_steps: int, rows: int) -> str:
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(n_steps):
            step()
    return profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_step", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="timed and profiled steps (default 50)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="paper", help="the run's shape (default paper)")
    parser.add_argument("--N", type=int, default=None, help="context length (default: the preset's; paper: 100)")
    parser.add_argument("--members", type=int, default=1, help="profile an ensemble step of this many members")
    parser.add_argument("--rows", type=int, default=15, help="profiler rows to print (default 15)")
    parser.add_argument(
        "--threads", type=int, default=torch.get_num_threads(),
        help=f"torch CPU threads (default: all, {torch.get_num_threads()} here)",
    )
    args = parser.parse_args(argv)
    if args.members < 1:
        parser.error("--members must be at least 1")
    torch.set_num_threads(args.threads)
    config = preset(args.preset).override(eval_size=1, **({} if args.N is None else {"N": args.N}))
    step = LibraryStep(config) if args.members == 1 else EnsembleStep(config, args.members)
    rate = matmul_rate(512, 20)
    flops = step_flops(step)
    seconds = phase_seconds(step, args.steps)
    total = sum(seconds.values())
    compute = seconds["forward + loss"] + seconds["backward"]

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.preset} preset, N={config.task.N}, "
          f"batch {config.train.batch_size}, {args.members} member(s); median of {args.steps} steps, wall clock")
    print(f"matmul rate (512^3 float32 GEMM): {rate:.1f} GFLOP/s")
    print(f"one step: {flops / 1e6:.1f} MFLOP (forward + backward), {flops / args.members / 1e6:.1f} per member")
    print(f"{'phase':<16} {'ms':>7} {'share':>6}")
    for phase, phase_s in seconds.items():
        print(f"{phase:<16} {phase_s * 1e3:>7.2f} {phase_s / total:>6.0%}")
    print(f"{'total':<16} {total * 1e3:>7.2f} ({total / args.members * 1e3:.2f} per member)")
    print(f"forward + backward: {flops / compute / 1e9:.1f} GFLOP/s = {flops / compute / 1e9 / rate:.0%} of the "
          f"matmul rate ({flops / total / 1e9:.1f} GFLOP/s = {flops / total / 1e9 / rate:.0%} over the whole step)")
    print(f"operators by self CPU time over {args.steps} steps:")
    print(top_operators(step, args.steps, args.rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
