"""Are the ICL (induction) and IWL (MLP) sub-circuits independent? Two numbers per checkpoint.

(a) Cross-ablation: ICL and IWL accuracy with neither, either or both circuits ablated. Independent
    circuits each remove their own ability and leave the other's.
(b) Additivity: the interaction term logit(full) - logit(no induction) - logit(no mlp) +
    logit(neither), mean |.| relative to mean |logit(full)|, where logit is the logit toward
    the target label (``icl_mech.readout.toward_target``: the one logit for L = 2). It is zero
    when each circuit's contribution to the logit does not depend on the other's presence.
Both also at the level of paths into the MLP (``memorization-path``: what it reads from the
token's own stream; ``icl-path``: what it reads from attention), because in these models the
MLP is also the head's readout, so removing the whole MLP removes both abilities.
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
from icl_mech.readout import chance, loss_and_accuracy, n_labels, toward_target
from probes.ablation import EVAL_SETS, ablated_query_logits
from probes.circuits import Head, Site
from probes.over_time import final_sites, over_checkpoints

#: The two circuits whose independence is tested, as components and as paths into the MLP.
CIRCUIT_PAIR = ("induction", "mlp")
PATH_PAIR = ("icl-path", "memorization-path")
#: Condition name -> circuits ablated in it.
CONDITIONS: dict[str, tuple[str, ...]] = {
    "full": (),
    "no_induction": ("induction",),
    "no_mlp": ("mlp",),
    "neither": CIRCUIT_PAIR,
    "no_icl_path": ("icl-path",),
    "no_memorization_path": ("memorization-path",),
    "no_paths": PATH_PAIR,
}
#: Interaction term name -> (condition without the ICL side, without the IWL side, without both).
INTERACTIONS = {
    "interaction": ("no_induction", "no_mlp", "neither"),
    "path_interaction": ("no_icl_path", "no_memorization_path", "no_paths"),
}
#: An ablation may move the other circuit's accuracy by this much and still count as sparing it.
SPARED = 0.05
#: Largest interaction (relative to the logit) still called additive.
ADDITIVE = 0.25


@torch.no_grad()
def condition_logits(
    model: HookedTransformer, batch: Batch, sites: dict[str, list[Site]], method: str
) -> dict[str, Float[Tensor, "batch n_logits"]]:
    """The query logits under each of ``CONDITIONS``."""
    logits = {"full": query_logits(model, batch.tokens)}
    for condition, circuits in list(CONDITIONS.items())[1:]:
        ablated = [site for circuit in circuits for site in sites[circuit]]
        logits[condition] = ablated_query_logits(model, batch, ablated, method)
    return logits


def independence_at(
    model: HookedTransformer, eval_sets: dict[str, Batch], sites: dict[str, list[Site]], method: str
) -> dict[str, float]:
    """Cross-ablation accuracies ``{set}_acc[_{condition}]``, ``{set}_interaction`` and
    ``{set}_path_interaction`` for ICL and IWL, and ``chance`` (1/L)."""
    row = {"chance": chance(n_labels(model))}
    for name in EVAL_SETS:
        batch = eval_sets[name]
        logits = condition_logits(model, batch, sites, method)
        for condition, values in logits.items():
            suffix = "" if condition == "full" else f"_{condition}"
            row[f"{name}_acc{suffix}"] = loss_and_accuracy(values, batch.targets)[1].item()
        toward = {condition: toward_target(values, batch.targets) for condition, values in logits.items()}
        for term, (no_icl, no_iwl, neither) in INTERACTIONS.items():
            interaction = toward["full"] - toward[no_icl] - toward[no_iwl] + toward[neither]
            row[f"{name}_{term}"] = (interaction.abs().mean() / toward["full"].abs().mean()).item()
    return row


def independence_run(
    run: Run,
    method: str = "resample",
    steps: Iterable[int] | None = None,
    heads: Sequence[Head] | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    best_below_threshold: bool = True,
) -> pd.DataFrame:
    """``independence_at`` at every step (circuits found in the last checkpoint). Where no head
    reaches the detection threshold the best is taken, with a warning (``probes.circuits``), so
    the report of any run has its cross-ablation; ``icl-mech independence`` refuses instead
    unless given --best-below-threshold."""
    eval_sets = run.eval_sets(device)
    circuits = {"induction": heads} | {name: None for name in ("mlp", *PATH_PAIR)}
    sites = final_sites(run, circuits, eval_sets, device, best_below_threshold)
    return over_checkpoints(
        run, lambda model: independence_at(model, eval_sets, sites, method), steps, device, progress, "independence"
    )


def _verdict(row: dict[str, float] | pd.Series, term: str, icl_side: str, iwl_side: str) -> str:
    """Independent or entangled, from the two ablations named by ``INTERACTIONS[term]``."""
    no_icl, no_iwl, _ = (f"_{c}" for c in INTERACTIONS[term])
    icl_cost = row["icl_acc"] - row[f"icl_acc{no_icl}"]
    iwl_moved = row[f"iwl_acc{no_icl}"] - row["iwl_acc"]
    iwl_cost = row["iwl_acc"] - row[f"iwl_acc{no_iwl}"]
    icl_moved = row[f"icl_acc{no_iwl}"] - row["icl_acc"]
    interaction = max(row[f"icl_{term}"], row[f"iwl_{term}"])
    problems = []
    if abs(iwl_moved) > SPARED:
        problems.append(f"ablating {icl_side} moves IWL")
    if abs(icl_moved) > SPARED:
        problems.append(f"ablating {iwl_side} moves ICL")
    if interaction > ADDITIVE:
        problems.append("the logits do not add")
    label = "independent" if not problems else f"entangled ({'; '.join(problems)})"
    return (
        f"{label}: ablating {icl_side} costs ICL {icl_cost:+.2f} and moves IWL {iwl_moved:+.2f}; "
        f"ablating {iwl_side} costs IWL {iwl_cost:+.2f} and moves ICL {icl_moved:+.2f}; "
        f"interaction {interaction:.2f} of |logit|"
    )


def verdict(row: dict[str, float] | pd.Series) -> str:
    """Two lines, components then paths into the MLP: independent or entangled, with the numbers
    that decide it."""
    components = _verdict(row, "interaction", "induction", "the MLP")
    paths = _verdict(row, "path_interaction", "the icl path", "the memorization path")
    return (
        f"step {int(row['step'])}: {components} (ICL {row['icl_acc']:.2f}, IWL {row['iwl_acc']:.2f} intact, "
        f"chance {row['chance']:.2f})\n"
        f"step {int(row['step'])}, paths into the MLP: {paths}"
    )


def cross_ablation_matrix(row: dict[str, float] | pd.Series) -> pd.DataFrame:
    """One checkpoint's accuracies as a matrix: conditions down, ICL and IWL across, plus the
    interaction terms (relative to |logit|) as the last rows."""
    matrix = {
        name.upper(): [row[f"{name}_acc" + ("" if c == "full" else f"_{c}")] for c in CONDITIONS]
        + [row[f"{name}_{term}"] for term in INTERACTIONS]
        for name in EVAL_SETS
    }
    index = [c.replace("_", " ") for c in [*CONDITIONS, *INTERACTIONS]]
    return pd.DataFrame(matrix, index=index)
