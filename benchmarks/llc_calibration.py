"""``python -m benchmarks.llc_calibration --out docs/figures/llc_calibration.png``: the calibration
behind the LLC's default SGLD settings (docs/LLC.md).

Left: the estimator on models with a known learning coefficient (probes/llc_calibration.py), with
the settings of tests/test_llc.py. Right: the estimate of the shipped ICL and memorizing runs' last
checkpoints (training data) against n_beta, the step size scaled as 0.1 / n_beta, localization 1,
4 chains x (200 burn-in + 200 draws): where the estimate stops moving with n_beta, the localization
no longer decides it. Prints the numbers it draws.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import torch
from matplotlib.figure import Figure

from icl_mech.run import load_run
from probes.llc import LLCWarning, RESTRICTIONS, SGLDSettings, estimate_llc, query_loss, restricted_parameters, run_draw
from probes.llc_calibration import logistic, products, square
from probes.plots import RESTRICTION_COLORS

REFERENCE = Path(__file__).resolve().parents[1] / "checkpoints" / "reference"
KNOWN = SGLDSettings(lr=3e-4, n_beta=1000.0, localization=1.0, chains=8, draws=800, burn_in=500, batch_size=500)
N_BETAS = (30.0, 100.0, 300.0, 1000.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = parser.parse_args()
    warnings.simplefilter("ignore", LLCWarning)
    figure = Figure(figsize=(12, 4.5), layout="constrained")
    known_axes, sweep_axes = figure.subplots(1, 2)

    cases = {
        "logistic d=2": (logistic(2), KNOWN), "logistic d=8": (logistic(8), KNOWN),
        "a_k b_k x_k, d=8": (products(), SGLDSettings(lr=1e-4, n_beta=500.0, localization=1.0, chains=8, draws=600, burn_in=100, batch_size=500)),
        "a^2 x, d=1": (square(), SGLDSettings(lr=1e-3, n_beta=1000.0, localization=0.1, chains=8, draws=1500, burn_in=200, batch_size=500)),
    }
    for index, (name, ((model, loss, draw, known), settings)) in enumerate(cases.items()):
        estimate = estimate_llc(model, loss, draw, settings)
        d = sum(p.numel() for p in model.parameters())
        print(f"{name}: estimate {estimate.mean:.3f} +- {estimate.std:.3f}, known {known}, d/2 {d / 2}")
        known_axes.bar(index, estimate.mean / known, yerr=estimate.std / known, color="tab:blue", capsize=4)
        known_axes.plot([index - 0.4, index + 0.4], [d / 2 / known] * 2, color="tab:red", ls="--")
    known_axes.axhline(1, color="black", lw=0.8)
    known_axes.axhspan(0.85, 1.15, color="gray", alpha=0.2)
    known_axes.set_xticks(range(len(cases)), list(cases), fontsize="small")
    known_axes.set_ylabel("estimate / known lambda")
    known_axes.set_title("known answers (bars: mean +- sd over chains; red: d/2; band: 15%)", fontsize="small")

    for run_name, style in (("icl", "-"), ("memorize", "--")):
        run = load_run(REFERENCE / run_name)
        model, draw = run.model(), run_draw(run, "train")
        for restriction in RESTRICTIONS:
            means = []
            for n_beta in N_BETAS:
                settings = SGLDSettings(lr=0.1 / n_beta, n_beta=n_beta)
                estimate = estimate_llc(model, query_loss, draw, settings, restricted_parameters(model, restriction))
                means.append(estimate.mean)
                print(f"{run_name} step {run.steps[-1]} {restriction} n_beta {n_beta:g}: {estimate.mean:.1f} +- {estimate.std:.1f}")
            sweep_axes.plot(N_BETAS, means, ls=style, marker="o", color=RESTRICTION_COLORS[restriction],
                            label=f"{run_name}, {restriction}")
    sweep_axes.set_xscale("log")
    sweep_axes.set_xlabel("n_beta (step size 0.1 / n_beta, localization 1)")
    sweep_axes.set_ylabel("LLC estimate, training data")
    sweep_axes.set_title("reference runs' last checkpoints against n_beta", fontsize="small")
    sweep_axes.legend(fontsize="small", ncol=2)
    sweep_axes.grid(alpha=0.3)
    figure.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
