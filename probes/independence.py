"""Are the ICL (induction) and IWL (MLP) sub-circuits independent? Two numbers per checkpoint.

(a) Cross-ablation: ICL and IWL accuracy with neither, either or both circuits ablated. Independent
    circuits each remove their own ability and leave the other's.
(b) Additivity: the interaction term logit(full) - logit(no induction) - logit(no mlp) +
    logit(neither), mean |.| relative to mean |logit(full)|. It is zero when each circuit's
    contribution to the logit does not depend on the other's presence.
The third way, learning kinetics with one circuit removed or frozen, retrains and lives in
``probes.kinetics``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens import HookedTransformer

from icl_mech.model import query_logits
from icl_mech.run import Run
from icl_mech.sampler import Batch
from icl_mech.trainer import logistic_loss_and_accuracy
from probes.ablation import EVAL_SETS, ablated_query_logits
from probes.circuits import Head, Site
from probes.over_time import final_sites, over_checkpoints

#: The two circuits whose independence is tested.
CIRCUIT_PAIR = ("induction", "mlp")
#: Condition name -> circuits ablated in it.
CONDITIONS: dict[str, tuple[str, ...]] = {
    "full": (),
    "no_induction": ("induction",),
    "no_mlp": ("mlp",),
    "neither": CIRCUIT_PAIR,
}
#: An ablation may move the other circuit's accuracy by this much and still count as sparing it.
SPARED = 0.05
#: Largest interaction (relative to the logit) still called additive.
ADDITIVE = 0.25


@torch.no_grad()
def condition_logits(
    model: HookedTransformer, batch: Batch, sites: dict[str, list[Site]], method: str
) -> dict[str, Float[Tensor, " batch"]]:
    """The query logit under each of ``CONDITIONS``."""
    logits = {"full": query_logits(model, batch.tokens)}
    for condition, circuits in list(CONDITIONS.items())[1:]:
        ablated = [site for circuit in circuits for site in sites[circuit]]
        logits[condition] = ablated_query_logits(model, batch, ablated, method)
    return logits


def independence_at(
    model: HookedTransformer, eval_sets: dict[str, Batch], sites: dict[str, list[Site]], method: str
) -> dict[str, float]:
    """Cross-ablation accuracies ``{set}_acc[_{condition}]`` and ``{set}_interaction`` for ICL and IWL."""
    row = {}
    for name in EVAL_SETS:
        batch = eval_sets[name]
        logits = condition_logits(model, batch, sites, method)
        for condition, values in logits.items():
            suffix = "" if condition == "full" else f"_{condition}"
            row[f"{name}_acc{suffix}"] = logistic_loss_and_accuracy(values, batch.targets)[1].item()
        interaction = logits["full"] - logits["no_induction"] - logits["no_mlp"] + logits["neither"]
        row[f"{name}_interaction"] = (interaction.abs().mean() / logits["full"].abs().mean()).item()
    return row


def independence_run(
    run: Run,
    method: str = "resample",
    steps: Iterable[int] | None = None,
    heads: Sequence[Head] | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> pd.DataFrame:
    """``independence_at`` at every step (circuits found in the last checkpoint)."""
    eval_sets = run.eval_sets(device)
    sites = final_sites(run, {"induction": heads, "mlp": None}, eval_sets, device)
    return over_checkpoints(
        run, lambda model: independence_at(model, eval_sets, sites, method), steps, device, progress, "independence"
    )


def verdict(row: dict[str, float] | pd.Series) -> str:
    """One line: independent or entangled, with the numbers that decide it."""
    icl_cost = row["icl_acc"] - row["icl_acc_no_induction"]
    iwl_side = row["iwl_acc_no_induction"] - row["iwl_acc"]
    iwl_cost = row["iwl_acc"] - row["iwl_acc_no_mlp"]
    icl_side = row["icl_acc_no_mlp"] - row["icl_acc"]
    interaction = max(row["icl_interaction"], row["iwl_interaction"])
    problems = []
    if abs(iwl_side) > SPARED:
        problems.append("ablating induction moves IWL")
    if abs(icl_side) > SPARED:
        problems.append("ablating the MLP moves ICL")
    if interaction > ADDITIVE:
        problems.append("the logits do not add")
    label = "independent" if not problems else f"entangled ({'; '.join(problems)})"
    return (
        f"step {int(row['step'])}: {label}: ablating induction costs ICL {icl_cost:+.2f} and moves "
        f"IWL {iwl_side:+.2f}; ablating the MLP costs IWL {iwl_cost:+.2f} and moves ICL "
        f"{icl_side:+.2f}; interaction {interaction:.2f} of |logit| "
        f"(ICL {row['icl_acc']:.2f}, IWL {row['iwl_acc']:.2f} intact)"
    )


def cross_ablation_matrix(row: dict[str, float] | pd.Series) -> pd.DataFrame:
    """One checkpoint's accuracies as a matrix: conditions down, ICL and IWL across, plus the
    interaction term (relative to |logit|) as the last row."""
    matrix = {
        name.upper(): [row[f"{name}_acc" + ("" if c == "full" else f"_{c}")] for c in CONDITIONS]
        + [row[f"{name}_interaction"]]
        for name in EVAL_SETS
    }
    index = [c.replace("_", " ") for c in CONDITIONS] + ["interaction"]
    return pd.DataFrame(matrix, index=index)
