"""The stopping rule: a run ends before its budget once it has committed to an outcome.

Checked at every evaluation step t (the metrics rows up to t; ``W = stop_plateau_steps``), in
this order:

1. ICL: ICL accuracy at t >= ``stop_icl_acc``.
2. Memorization: W is set, the rows reach back to t - W, IWL accuracy at t >=
   ``stop_plateau_iwl_acc``, and the last W steps set no new best: their highest IWL accuracy
   exceeds the highest before by less than ``stop_plateau_tol``, and their lowest train loss is
   below the lowest before by less than ``stop_plateau_tol`` of it, or of ``LOSS_FLOOR`` when it
   is lower than that.

Bests rather than two single evaluations, because under Adam the train loss bounces between
evaluations (0.019, 0.028, 0.015, 0.024 at steps 1750 to 2750 of a K = 1024 run whose lowest
loss was still falling): comparing the rows at t - W and t stopped that run while it learned.

The floor, because a memorized run's train loss decays towards zero for ever: a K = 128 run at
N = 10 had IWL accuracy flat at 0.96 from step 2000 and train loss below 1e-4, still falling by
more than 1% of itself every 1000 steps at step 11000, so a purely relative rule never ended it.

A run that meets neither by ``steps`` ends uncommitted. The IWL floor of rule 2 keeps the
loss plateau before ICL appears (IWL and train loss flat at chance) from counting as committed.
"""

from __future__ import annotations

from collections.abc import Sequence

from icl_mech.config import TrainConfig

#: Train loss below which the plateau rule measures the loss's fall against this, not the loss
#: (chance is ln 2 = 0.69; a memorizing run is below 0.01 once it has its items).
LOSS_FLOOR = 0.01


def stop_reason(history: Sequence[dict[str, float]], train: TrainConfig) -> str | None:
    """Why the run may end at the last row of ``history`` (its metrics rows, oldest first):
    ``"icl"``, ``"memorization"`` (as status.json records it), or None."""
    row = history[-1]
    if train.stop_icl_acc is not None and row["icl_acc"] >= train.stop_icl_acc:
        return "icl"
    if train.stop_plateau_steps is None or row["iwl_acc"] < train.stop_plateau_iwl_acc:
        return None
    step = row["step"]
    before = [old for old in history if old["step"] <= step - train.stop_plateau_steps]
    if not before:
        return None
    recent = [new for new in history if new["step"] > step - train.stop_plateau_steps]
    iwl_rise = max(r["iwl_acc"] for r in recent) - max(r["iwl_acc"] for r in before)
    best_loss = min(r["train_loss"] for r in before)
    loss_fall = (best_loss - min(r["train_loss"] for r in recent)) / max(best_loss, LOSS_FLOOR)
    return "memorization" if iwl_rise < train.stop_plateau_tol and loss_fall < train.stop_plateau_tol else None
