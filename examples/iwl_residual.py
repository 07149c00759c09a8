"""T1 and T4 (docs/THEORY.md) with the residual read on the IWL set instead of the logged c1.

The logged c1 zeroes the attention output and reads the MLP alone, but the MLP of a
memorization run was trained with its (frozen) attention's output in its input, so that path is
off its distribution (a run at K = 1024 with IWL loss 0.001 keeps c1 at 0.37). Here the residual
is 1 - p(target) of the whole network on the run's IWL evaluation set (trained items, their copy
absent from the context), at every checkpoint; its trapezoid integral is I_K. Then T1's law
I_K = A K^nu at the runs' last step, and T4's K* (2 I_K* = the median K = infinity t_ICL) at each
N of ``icl-mech theory``'s K = infinity runs.

    python examples/iwl_residual.py --sweep MEMORIZATION_SWEEP --theory THEORY_DIR/theory.json

It reads runs trained before the trainer logged this residual (``iwl_residual``) at every
evaluation; on newer runs the logged column has the finer resolution.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from icl_mech import load_run
from icl_mech.analysis.fits import fit_power_law
from icl_mech.model import query_logits
from icl_mech.theory.predictions import predicted_threshold
from icl_mech.theory.residual import memorization_integral, target_residual


@torch.no_grad()
def iwl_memorization_integral(run_dir: Path) -> tuple[int, float, float]:
    """(K, last step, I_K there) of one memorization run, from its checkpoints."""
    run = load_run(run_dir)
    iwl = run.eval_sets()["iwl"]
    steps, residual = [], []
    for step, model in run.models():
        steps.append(step)
        residual.append(target_residual(query_logits(model, iwl.tokens), iwl.targets).item())
    return run.config.task.K, steps[-1], float(memorization_integral(np.array(steps, float), np.array(residual))[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", required=True, type=Path, help="memorization sweep (frozen=attn runs)")
    parser.add_argument("--theory", required=True, type=Path, help="theory.json of icl-mech theory (its K = infinity runs)")
    args = parser.parse_args()
    rows = [iwl_memorization_integral(d) for d in sorted(args.sweep.iterdir()) if (d / "config.json").exists()]
    k, horizon, memorized = (np.array(column, float) for column in zip(*rows))
    law = fit_power_law(k, memorized)
    print(f"T1 (IWL residual): I_K at step {horizon.min():.0f} = {law.prefactor:.3g} K^{law.exponent:.2f}, "
          f"nu [{law.interval[0]:.2f}, {law.interval[1]:.2f}] over {len(rows)} runs")
    runs = pd.DataFrame(json.loads(args.theory.read_text())["runs"])
    for n, at_n in runs[runs.part == "K=inf"].groupby("N"):
        k_star = predicted_threshold(at_n.t_icl.to_numpy(float), law.prefactor, law.exponent)
        print(f"T4 N={n}: predicted K* {k_star.value:.0f} [{k_star.low:.0f}, {k_star.high:.0f}] from {k_star.n} K=inf seeds")


if __name__ == "__main__":
    main()
