"""When Reddy (2024)'s progress measures move, against ICL's abrupt jump.

Reddy finds that ICL in the interleaved task arrives abruptly after a plateau, and that
measures of the network's inner state move before it: the query attending to label tokens, the
prediction being one of the context's labels, the previous-token head. The measures are columns
of ``probes.over_time.probe_run``'s table on an interleaved run (``icl-mech probe --all-steps``).
A measure's rise runs from its lowest value before its largest to that largest (a score can dip
first, as the previous-token score does while the network settles on the context's labels); it
is dated twice, at the step from which it stays above a tenth of that rise (it starts) and half
of it until it reaches its largest value, so that a bump in the first stage that falls back (the
induction score of one seed rose at step 100 and fell back until the jump at 1400) does not date
the measure's start: the last time it leaves its plateau does. ICL's jump
is the first step ICL accuracy is halfway from its first value to 1: the plateau of the first
stage (1/(labels in a context), 0.25 in the `cpu-reddy` preset) lies below that mark, so the date
is the jump's, not the first stage's, and a run that never leaves the plateau has none.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Column prefixes of the progress measures in ``probe_run``'s table (one column per head for scores).
MEASURES = ("context_label_acc", "label_attention_L", "label_previous_token_L", "induction_L")


def rise_step(steps: np.ndarray, values: np.ndarray, fraction: float, from_trough: bool = True) -> float:
    """The step from which ``values`` stay above ``fraction`` of their rise to their largest value
    (from the lowest value before it, ``from_trough``, or from the first value) until they reach
    it: the step after the last one below that level."""
    steps, values = np.asarray(steps), np.asarray(values, dtype=float)
    peak = int(np.argmax(values))
    start = int(np.argmin(values[: peak + 1])) if from_trough else 0
    level = values[start] + fraction * (values[peak] - values[start])
    below = np.flatnonzero(values[start : peak + 1] < level)
    return float(steps[start + below[-1] + 1 if below.size else start])


def icl_jump_step(steps: np.ndarray, icl_acc: np.ndarray) -> float:
    """The first step ICL accuracy is halfway from its first value to 1 (NaN if never)."""
    reached = np.flatnonzero(np.asarray(icl_acc) >= (icl_acc[0] + 1) / 2)
    return float(np.asarray(steps)[reached[0]]) if reached.size else float("nan")


def progress_onsets(table: pd.DataFrame) -> pd.DataFrame:
    """One row per progress measure in ``table``: its lowest value before its largest, the
    largest, the rise between, the steps from which it stayed above a tenth and half of that rise
    up to its largest (``rise_step``), and whether it
    started before ICL's jump (``icl_jump_step``, NaN when ICL never jumped). A measure that never
    rose (its largest value is its first) has no start or half step (NaN) and did not start
    before the jump.

    Raises ValueError on a table without the measures (a run in the paired format)."""
    columns = [column for prefix in MEASURES for column in table.columns if column.startswith(prefix)]
    if not columns:
        raise ValueError("progress measures need probe_run's table of an interleaved run")
    steps = table.step.to_numpy()
    jump = icl_jump_step(steps, table.icl_acc.to_numpy())
    rows = []
    for column in columns:
        values = table[column].to_numpy(dtype=float)
        peak = int(np.argmax(values))
        trough = values[: peak + 1].min()
        rose = values[peak] > trough
        start = rise_step(steps, values, 0.1) if rose else float("nan")
        half = rise_step(steps, values, 0.5) if rose else float("nan")
        rows.append({
            "measure": column, "lowest": trough, "largest": values[peak], "rise": values[peak] - trough,
            "start_step": start, "half_step": half, "starts_before_icl": start < jump,
        })
    return pd.DataFrame(rows).assign(icl_jump_step=jump)
