"""The stopping rule: a run ends before its budget once it has committed to an outcome.

Checked at every evaluation step t (the metrics row just written, and the one ``W =
stop_plateau_steps`` steps earlier), in this order:

1. ICL: ICL accuracy at t >= ``stop_icl_acc``.
2. Memorization: W is set, IWL accuracy at t >= ``stop_plateau_iwl_acc``, and over the last W
   steps IWL accuracy rose by less than ``stop_plateau_tol`` and the train loss fell by less
   than ``stop_plateau_tol`` times its value at t - W.

A run that meets neither by ``steps`` ends uncommitted. The IWL floor of rule 2 keeps the
loss plateau before ICL appears (IWL and train loss flat at chance) from counting as committed.
"""

from __future__ import annotations

from collections.abc import Sequence

from icl_mech.config import TrainConfig

#: ``stop_reason`` values, as written to status.json.
STOP_REASONS = ("icl", "memorization")


def stop_reason(history: Sequence[dict[str, float]], train: TrainConfig) -> str | None:
    """Why the run may end at the last row of ``history`` (its metrics rows, oldest first), or None."""
    row = history[-1]
    if train.stop_icl_acc is not None and row["icl_acc"] >= train.stop_icl_acc:
        return "icl"
    if train.stop_plateau_steps is None or row["iwl_acc"] < train.stop_plateau_iwl_acc:
        return None
    earlier = [old for old in history if old["step"] == row["step"] - train.stop_plateau_steps]
    if not earlier:
        return None
    before = earlier[-1]
    iwl_rise = row["iwl_acc"] - before["iwl_acc"]
    loss_fall = (before["train_loss"] - row["train_loss"]) / before["train_loss"]
    return "memorization" if iwl_rise < train.stop_plateau_tol and loss_fall < train.stop_plateau_tol else None
