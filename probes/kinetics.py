"""Independence by learning kinetics: retrain with one sub-circuit removed or frozen at its
initialisation (same seed, same items, same data order) and compare the other's learning curve
with the full model's. If the circuits are independent, ICL is learned as fast without the MLP and
IWL as fast without a trained attention head.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from icl_mech.run import Run
from icl_mech.trainer import train

#: Variant name -> config fields it changes. "full" is retrained too, so every curve shares the
#: same step count and evaluation cadence.
VARIANTS: dict[str, dict[str, Any]] = {
    "full": {},
    "no_mlp": {"attn_only": True},
    "frozen_mlp": {"frozen": ("mlp",)},
    "frozen_attn": {"frozen": ("attn",)},
}
#: An ability counts as learned once its accuracy reaches this.
LEARNED = {"icl_acc": 0.9, "iwl_acc": 0.8}


def kinetics_curves(
    run: Run, out_dir: str | Path, steps: int, device: str = "cpu", progress: bool = True
) -> pd.DataFrame:
    """Metrics of every variant of ``run``'s config trained for ``steps`` into ``out_dir/<variant>``.

    A variant already trained there is reused (training resumes, so an interrupted call goes on).
    """
    curves = []
    for name, changes in VARIANTS.items():
        config = run.config.override(**{"steps": steps, "stop_icl_acc": None, "frozen": (), **changes})
        metrics = train(config, Path(out_dir) / name, device=device, resume=True, progress=progress).metrics
        curves.append(metrics.assign(variant=name))
    return pd.concat(curves, ignore_index=True)


def first_step_reaching(curve: pd.DataFrame, column: str, level: float) -> int | None:
    """The first evaluated step at which ``column`` reaches ``level`` (None: never)."""
    reached = curve.loc[curve[column] >= level, "step"]
    return int(reached.iloc[0]) if len(reached) else None


def kinetics_summary(curves: pd.DataFrame) -> pd.DataFrame:
    """Per variant: the step each ability was learned (``LEARNED``) and its final accuracies."""
    rows = []
    for name, curve in curves.groupby("variant", sort=False):
        row: dict[str, Any] = {"variant": name}
        for column, level in LEARNED.items():
            row[f"{column}>={level}"] = first_step_reaching(curve, column, level)
        last = curve.iloc[-1]
        row.update(step=int(last.step), icl_acc=last.icl_acc, iwl_acc=last.iwl_acc)
        rows.append(row)
    return pd.DataFrame(rows)


def kinetics_verdict(summary: pd.DataFrame) -> str:
    """One line: how the ICL learning time changes without the MLP, and IWL without attention."""
    table = summary.set_index("variant")
    icl, iwl = (f"{column}>={level}" for column, level in LEARNED.items())

    def when(variant: str, column: str) -> str:
        step = table.loc[variant, column]
        return "never" if pd.isna(step) else f"step {int(step)}"

    return (
        f"kinetics: ICL reaches {LEARNED['icl_acc']} at {when('full', icl)} in the full model, "
        f"{when('no_mlp', icl)} without the MLP, {when('frozen_mlp', icl)} with it frozen; "
        f"IWL reaches {LEARNED['iwl_acc']} at {when('full', iwl)} in the full model, "
        f"{when('frozen_attn', iwl)} with attention frozen (final IWL "
        f"{table.loc['full', 'iwl_acc']:.2f} vs {table.loc['frozen_attn', 'iwl_acc']:.2f})"
    )
