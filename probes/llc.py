"""The local learning coefficient (LLC) of a checkpoint: of the whole model, or restricted to the
attention's or the MLP's weights (Wang et al. 2024), on the training distribution or on the run's
ICL or IWL set (the data-refined LLC). The only module that imports devinterp.

The estimator is Lau et al.'s (2023): run SGLD chains from the checkpoint's weights w* on the
tempered, localized posterior exp(-n_beta L(w) - gamma/2 |w - w*|^2) and average
``n_beta * (L(w_t) - L(w*))`` over the draws after burn-in. The update is devinterp's
``SGMCMC.sgld`` (n-beta, localization, noise), written out here so that a stack of checkpoints
can share its noise (a test pins it to devinterp's optimizer); devinterp supplies the weight
restrictions (``create_param_masks``, which knows a HookedTransformer's ``l0 attn`` / ``l0 mlp``).
The loop is ours, because

- it draws every SGLD batch fresh from the run's own sampler (the training distribution has no
  finite dataset: the LLC is that of the population loss), where devinterp's ``llc()`` cycles a
  fixed ``datasets.Dataset`` of token ids through a next-token loss;
- it runs all chains at once, their weights stacked and the query loss ``vmap``-ed over them
  (``torch.func``, as ``icl_mech.ensemble`` trains runs), which on a small model is several times
  faster than one chain after the other (benchmarks/: ``llc_sampler``); ``estimate_llcs`` stacks
  several checkpoints' chains the same way, with the same batches and noise for each;
- it takes the loss at w* on the very batch of each draw, so ``L(w_t) - L(w*)`` is a paired
  difference and the minibatch's own difficulty cancels out of it.

``estimate_llc`` is the estimator for any module and loss (the calibration tests use it on models
whose learning coefficient is known); ``checkpoint_llc`` and ``llc_run`` apply it to a run.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from devinterp.slt.weight_restrictions import create_param_masks
from jaxtyping import Float
from torch import Tensor, nn
from torch.func import functional_call, vmap
from tqdm.auto import tqdm

from icl_mech.errors import ConfigError
from icl_mech.model import query_logits
from icl_mech.readout import loss_and_accuracy, per_sequence_loss
from icl_mech.run import Run
from icl_mech.sampler import TRAINING_MODES, sample_batch
from probes.llc_settings import DATA, RESTRICTIONS, SGLDSettings

#: ``loss(model, *data)``: the mean loss of ``model`` on one batch.
Loss = Callable[..., Tensor]
#: ``draw(n, generator)``: ``n`` samples, as a tuple of tensors with ``n`` rows each.
Draw = Callable[[int, torch.Generator], tuple[Tensor, ...]]


class LLCWarning(UserWarning):
    """An estimate not to trust as it is: a chain diverged, a trace still drifts, or it is negative."""


@dataclass(frozen=True)
class LLCEstimate:
    """One LLC estimate and its chains."""

    #: ``n_beta * (L(w_t) - L(w*))`` at every SGLD step of every chain, burn-in included; the
    #: estimate of a chain is its mean over the draws (the steps after the burn-in).
    excess: Float[Tensor, "chain step"]
    #: L(w*) on each step's batch (its mean is the checkpoint's loss on the data).
    center_loss: Float[Tensor, "chain step"]
    settings: SGLDSettings
    #: How many weights the chains moved.
    n_params: int
    #: Why not to trust the estimate as it is (also raised as ``LLCWarning``s); empty if none.
    warnings: tuple[str, ...]

    @property
    def per_chain(self) -> Float[Tensor, " chain"]:
        """Each chain's estimate (NaN for a chain that diverged)."""
        return self.excess[:, self.settings.burn_in :].mean(dim=1)

    @property
    def mean(self) -> float:
        """The mean over the chains that did not diverge (NaN if all did)."""
        return _finite(self.per_chain).mean().item()

    @property
    def std(self) -> float:
        """The spread over the chains that did not diverge (standard deviation; 0 for one chain,
        NaN if all diverged)."""
        finite = _finite(self.per_chain)
        return finite.std().item() if len(finite) > 1 else 0.0 if len(finite) == 1 else math.nan

    def row(self) -> dict:
        """The estimate as one row of a table (no traces)."""
        return {
            "llc_mean": self.mean,
            "llc_std": self.std,
            "llc_per_chain": self.per_chain.tolist(),
            "loss": self.center_loss.mean().item(),
            "n_params": self.n_params,
            "warnings": " | ".join(self.warnings),
        }


def _finite(values: Tensor) -> Tensor:
    return values[values.isfinite()]


class _LossOf(nn.Module):
    """``loss(model, *data)`` as a module's forward, so ``functional_call`` can swap in each
    chain's weights."""

    def __init__(self, model: nn.Module, loss: Loss):
        super().__init__()
        self.model, self.loss = model, loss

    def forward(self, *data: Tensor) -> Tensor:
        return self.loss(self.model, *data)


def estimate_llc(
    model: nn.Module,
    loss: Loss,
    draw: Draw,
    settings: SGLDSettings = SGLDSettings(),
    parameters: Sequence[str] | None = None,
) -> LLCEstimate:
    """The LLC of ``model`` at its current weights w* for ``loss`` on data from ``draw``.

    ``parameters`` names the weights the chains move (default: every weight that requires a
    gradient); the others stay at w*. Every chain draws its own batch each step, on the model's
    device. The model's own weights are not changed.
    """
    return estimate_llcs([model], loss, draw, settings, [parameters])[0][0]


def estimate_llcs(
    models: Sequence[nn.Module],
    loss: Loss,
    draw: Draw,
    settings: SGLDSettings = SGLDSettings(),
    restrictions: Sequence[Sequence[str] | None] = (None,),
    bar: tqdm | None = None,
) -> list[list[LLCEstimate]]:
    """``estimate_llc`` of each of ``models`` (one architecture: a run's checkpoints) for each
    of ``restrictions`` (lists of the weights the chains move, None for every trained one): the
    estimates ``estimate_llc`` gives each alone, indexed ``[restriction][model]``.

    With few chains and small batches an SGLD step of these small models is mostly fixed cost,
    which the checkpoints then share (``stack_size`` says how many pay): every model's chains see
    the same batches and the same noise (as they would alone, with the same seed), and one
    ``vmap`` over models and chains takes their losses. The restrictions are sampled in step with
    each other, each with its own noise, so that they share what they would each compute alike:
    the step's batches and the loss at w* on them (a third of a step's cost). ``bar`` advances by
    one per SGLD step and restriction. No model's weights or ``.grad`` are touched.
    """
    if not models:
        return [[] for _ in restrictions]
    device = next(models[0].parameters()).device
    weights = [dict(model.named_parameters()) for model in models]
    trained = [n for n, w in weights[0].items() if w.requires_grad]
    names = [trained if chosen is None else list(chosen) for chosen in restrictions]
    if not all(names):
        raise ConfigError("no weights to sample: the restriction selects none of the model's trained weights")
    # Every model's weights stacked on a leading model axis: w* (all of them) and, per
    # restriction, each chain's copy of its sampled weights on a second axis.
    centers = {f"model.{n}": torch.stack([w[n].detach() for w in weights]) for n in weights[0]}
    chains = [_RestrictedChains(centers, chosen, settings, device) for chosen in names]
    wrapped = _LossOf(models[0], loss)

    def batch_loss(chain_weights: dict[str, Tensor], model_weights: dict[str, Tensor], data: tuple[Tensor, ...]) -> Tensor:
        return functional_call(wrapped, {**model_weights, **chain_weights}, data)

    # The batches are the same for every model, but stored once per model (``_per_model``): a
    # matrix product of per-model weights with one shared operand would copy it, broadcast, on
    # every call (twice a forward).
    over_chains = vmap(batch_loss, in_dims=(0, None, 0))  # a chain's weights on its own batch
    chain_losses = vmap(over_chains, in_dims=(0, 0, 0))  # every model
    center_losses = vmap(vmap(lambda w, data: functional_call(wrapped, w, data), in_dims=(None, 0)), in_dims=(0, 0))
    data_generator = torch.Generator(device).manual_seed(settings.seed)
    center = []
    for _ in range(settings.burn_in + settings.draws):
        data = _per_model(draw(settings.chains * settings.batch_size, data_generator), len(models), settings.chains)
        with torch.no_grad():
            at_center = center_losses(centers, data)
        center.append(at_center)
        for restricted in chains:
            losses = chain_losses(restricted.sampled, restricted.fixed, data)
            # Each chain's gradient of its own loss; None for a weight the loss never reads.
            gradients = torch.autograd.grad(losses.sum(), list(restricted.sampled.values()), allow_unused=True)
            with torch.no_grad():
                _sgld_update(restricted.sampled, gradients, centers, settings, restricted.noise)
            restricted.excess.append(settings.n_beta * (losses.detach() - at_center))
        if bar is not None:
            bar.update(len(chains))
    center_all = torch.stack(center, -1).cpu()
    found = [restricted.estimates(center_all) for restricted in chains]
    for estimate in (estimate for per_model in found for estimate in per_model):
        for message in estimate.warnings:
            warnings.warn(message, LLCWarning, stacklevel=2)
    return found


def _per_model(
    data: tuple[Tensor, ...], n_models: int, n_chains: int
) -> tuple[Float[Tensor, "model chain batch ..."], ...]:
    """One step's samples split into the chains' batches, a copy for each model of the stack."""
    return tuple(
        part.reshape(n_chains, -1, *part.shape[1:]).expand(n_models, n_chains, -1, *part.shape[1:]).contiguous()
        for part in data
    )


class _RestrictedChains:
    """The chains of one weight restriction in ``estimate_llcs``: their copies of the sampled
    weights (model, chain, ...), the weights they leave at w*, their own noise (seeded as an
    estimate alone seeds it) and the excess loss of every step so far."""

    def __init__(self, centers: dict[str, Tensor], names: list[str], settings: SGLDSettings, device: torch.device):
        self.settings, self.n_params = settings, sum(centers[f"model.{n}"][0].numel() for n in names)
        self.sampled = {
            key: centers[key][:, None].expand(-1, settings.chains, *centers[key].shape[1:]).clone().requires_grad_()
            for key in (f"model.{n}" for n in names)
        }
        self.fixed = {key: value for key, value in centers.items() if key not in self.sampled}
        self.noise = torch.Generator(device).manual_seed(settings.seed + 1)
        self.excess: list[Float[Tensor, "model chain"]] = []

    def estimates(self, center: Float[Tensor, "model chain step"]) -> list[LLCEstimate]:
        """Each model's estimate, with its diagnoses."""
        excess = torch.stack(self.excess, -1).cpu()
        found = []
        for index in range(len(excess)):
            estimate = LLCEstimate(excess[index], center[index], self.settings, self.n_params, ())
            found.append(dataclasses.replace(estimate, warnings=tuple(diagnose(estimate))))
        return found


def _sgld_update(
    sampled: dict[str, Float[Tensor, "model chain ..."]],
    gradients: Sequence[Tensor | None],
    centers: dict[str, Float[Tensor, "model ..."]],
    settings: SGLDSettings,
    noise_generator: torch.Generator,
) -> None:
    """devinterp's SGLD step (``SGMCMC.sgld``, tests/test_llc.py pins it to that optimizer), in
    place: w <- w - lr/2 (n_beta grad + gamma (w - w*)) + sqrt(lr) N(0, 1). The noise is drawn
    per chain, in devinterp's order of the weights, and shared by every model of the stack, which
    is what each model would draw alone from the same seed."""
    for (name, weight), gradient in zip(sampled.items(), gradients):
        if gradient is None:  # devinterp's optimizer leaves a weight without a gradient alone
            continue
        step = gradient.mul(settings.n_beta)
        if settings.localization:
            step.add_(settings.localization * (weight - centers[name][:, None]))
        weight.add_(step, alpha=-0.5 * settings.lr)
        noise = torch.normal(0.0, 1.0, size=weight.shape[1:], device=weight.device, generator=noise_generator)
        weight.add_(noise, alpha=settings.lr**0.5)


def diagnose(estimate: LLCEstimate) -> list[str]:
    """Why not to trust ``estimate`` as it is:

    - a chain diverged: a non-finite loss, or an average excess ``n_beta (L - L*)`` over its last
      quarter of draws above the number of sampled weights (twice the largest LLC a minimum can
      have, d/2): the step size is too large for the loss's curvature;
    - a trace has not flattened: the chains' mean excess over the second half of the draws differs
      from the first half's by more than 20% of the estimate and by more than three standard
      errors of that change over chains (more burn-in, a larger step size or more localization);
    - the estimate is negative: SGLD found lower loss nearby, so the checkpoint is not at a
      minimum of this loss (early in training, or on data it was not trained on).
    """
    found = []
    draws = estimate.excess[:, estimate.settings.burn_in :]
    tail = draws[:, -max(1, draws.shape[1] // 4) :].mean(dim=1)
    diverged = [c for c in range(len(draws)) if not draws[c].isfinite().all() or tail[c] > estimate.n_params]
    if diverged:
        found.append(
            f"chain(s) {diverged} diverged (non-finite or exploding loss): lower the step size "
            f"(lr {estimate.settings.lr:g}); chains with a non-finite loss are left out of the mean"
        )
    healthy = draws[[c for c in range(len(draws)) if c not in diverged]]
    if len(healthy) > 1 and healthy.shape[1] >= 4:
        half = healthy.shape[1] // 2
        # Each chain's change between the halves: their spread over chains is the standard error,
        # which (unlike the spread of single steps) knows how slowly a chain forgets.
        drift = healthy[:, half:].mean(dim=1) - healthy[:, :half].mean(dim=1)
        error = drift.std().item() / math.sqrt(len(drift))
        mean_drift = drift.mean().item()
        if abs(mean_drift) > 0.2 * abs(healthy.mean().item()) and abs(mean_drift) > 3 * error:
            found.append(
                f"the chains' trace has not flattened: its second half averages {mean_drift:+.3g} "
                f"from its first (estimate {healthy.mean().item():.3g}); more burn-in or draws"
            )
    if math.isfinite(estimate.mean) and estimate.mean < 0:
        found.append(
            f"negative estimate ({estimate.mean:.3g}): the weights are not at a minimum of this loss "
            "(SGLD found lower loss nearby)"
        )
    return found


def restricted_parameters(model: nn.Module, restriction: str) -> list[str]:
    """The trained weights a restriction (``RESTRICTIONS``) names: for ``attn`` and ``mlp``,
    devinterp's ``l<layer> attn`` / ``l<layer> mlp`` over every layer."""
    if restriction not in RESTRICTIONS:
        raise ConfigError(f"unknown weight restriction {restriction!r}; expected one of {', '.join(RESTRICTIONS)}")
    trained = {name for name, weight in model.named_parameters() if weight.requires_grad}
    if restriction == "full":
        return [name for name, _ in model.named_parameters() if name in trained]
    masks = create_param_masks(model, [f"l{layer} {restriction}" for layer in range(model.cfg.n_layers)])
    names = [name for name in masks if name in trained]
    if not names:
        raise ConfigError(f"the model has no {restriction} weights (attention-only?)")
    return names


def query_loss(model: nn.Module, tokens: Float[Tensor, "batch pos d_token"], targets: Tensor) -> Tensor:
    """The training loss on the query's logits (``icl_mech.readout``: logistic for two labels,
    softmax cross-entropy for more)."""
    return loss_and_accuracy(query_logits(model, tokens), targets)[0]


def run_draw(run: Run, data: str, device: str | torch.device = "cpu") -> Draw:
    """Samples of ``data`` (``DATA``) for ``run``: fresh sequences from the run's own sampler and
    training items (``train``), or sequences of its fixed ICL or IWL set, drawn with replacement."""
    if data not in DATA:
        raise ConfigError(f"unknown data {data!r}; expected one of {', '.join(DATA)}")
    if data == "train":
        task, pool = run.config.task, run.pool
        pool = None if pool is None else pool.to(device)

        def fresh(n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
            batch = sample_batch(task, pool, n, generator, **TRAINING_MODES[task.burstiness])
            return batch.tokens, batch.targets

        return fresh
    fixed = run.eval_sets(device)[data]

    def resampled(n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        index = torch.randint(len(fixed), (n,), generator=generator, device=generator.device)
        return fixed.tokens[index], fixed.targets[index]

    return resampled


def llc_run(
    run: Run,
    steps: Iterable[int] | None = None,
    restrictions: Sequence[str] = RESTRICTIONS,
    data: Sequence[str] = ("train",),
    settings: SGLDSettings = SGLDSettings(),
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[pd.DataFrame, dict[tuple[int, str, str], LLCEstimate]]:
    """The LLC at every step in ``steps`` (default: all) for every restriction and data: a table
    with one row per (step, restriction, data), and every estimate with its chains' traces."""
    steps = run.steps if steps is None else list(steps)
    draws = {name: run_draw(run, name, device) for name in data}
    models = [copy.deepcopy(model) for _, model in run.models(steps, device)]
    stack = stack_size(device, len(models), settings)
    stacks = [models[start : start + stack] for start in range(0, len(models), stack)]
    parameters = [restricted_parameters(models[0], restriction) for restriction in restrictions]
    estimates = {}
    total = len(stacks) * len(restrictions) * len(data) * (settings.burn_in + settings.draws)
    with tqdm(total=total, desc="llc, SGLD steps", disable=not progress) as bar:
        for name in data:
            found: list[list[LLCEstimate]] = [[] for _ in restrictions]
            with warnings.catch_warnings(record=True):  # the rows carry them; one warning below
                warnings.simplefilter("always", LLCWarning)
                for chosen in stacks:
                    for per_model, stacked in zip(found, estimate_llcs(chosen, query_loss, draws[name], settings, parameters, bar)):
                        per_model += stacked
            for restriction, per_model in zip(restrictions, found):
                estimates.update({(step, restriction, name): estimate for step, estimate in zip(steps, per_model)})
    rows = [
        {"step": step, "restriction": restriction, "data": name, **estimates[step, restriction, name].row()}
        for step in steps for restriction in restrictions for name in data
    ]
    table = pd.DataFrame(rows)
    if (flagged := int((table.warnings != "").sum())) > 0:
        warnings.warn(f"{flagged} of {len(table)} LLC estimates have warnings (the table's warnings column)", LLCWarning)
    return table, estimates


#: The sequences one SGLD step of a CPU stack takes (checkpoints x chains x batch). Stacking
#: shares a step's fixed costs; past a few thousand sequences its matrix products outgrow the
#: caches and gain nothing more. On reference/near's 18 checkpoints at the defaults (4 x 128, all
#: three restrictions), stacks of 9 took 0.85 of the time of stacks of 4, and stacks of 18 no
#: less than of 9 (benchmarks/: ``LLC, stacked``).
CPU_STACK_SEQUENCES = 4608


def stack_size(device: str | torch.device, checkpoints: int, settings: SGLDSettings) -> int:
    """How many checkpoints ``llc_run`` samples as one stack (``estimate_llcs``): all of them on
    a GPU; on a CPU as many as keep a step within ``CPU_STACK_SEQUENCES``."""
    if torch.device(device).type == "cuda":
        return checkpoints
    return max(1, min(checkpoints, CPU_STACK_SEQUENCES // (settings.chains * settings.batch_size)))


def llc_record(run: Run, table: pd.DataFrame, estimates: dict[tuple[int, str, str], LLCEstimate]) -> dict:
    """What ``llc_run`` found, as JSON: the run, the settings, one row per estimate and every
    estimate's trace of ``n_beta (L(w_t) - L(w*))`` per chain (burn-in included)."""
    settings = next(iter(estimates.values())).settings
    return {
        "run": str(run.path),
        "settings": settings.to_dict(),
        "rows": table.to_dict("records"),
        "traces": [
            {"step": step, "restriction": restriction, "data": data, "excess": estimate.excess.tolist()}
            for (step, restriction, data), estimate in estimates.items()
        ],
    }


def devinterp_sampler_llc(
    model: nn.Module,
    tokens: Float[Tensor, "sequence pos d_token"],
    targets: Tensor,
    settings: SGLDSettings = SGLDSettings(),
    parameters: Sequence[str] | None = None,
) -> float:
    """The same estimate through devinterp's high-level ``llc()`` (for the comparison in
    benchmarks/): its chains one after the other, each cycling the fixed ``tokens`` (drawn once)
    through a ``datasets.Dataset`` of indices, their results written to a temporary zarr store.
    It averages the burn-in too (devinterp's definition), so give it ``burn_in=0`` to compare."""
    import io
    import tempfile
    from contextlib import redirect_stderr

    from datasets import Dataset
    from devinterp.slt.llc import llc

    # devinterp's loss is per next-token position, so each "sequence" is [index, index]: one loss.
    dataset = Dataset.from_dict({"input_ids": [[i, i] for i in range(len(tokens))]}).with_format("torch")

    def indexed_loss(model: nn.Module, input_ids: Tensor) -> Tensor:
        index = input_ids[:, 0].to(tokens.device)
        return per_sequence_loss(query_logits(model, tokens[index]), targets[index])[:, None]

    names = restricted_parameters(model, "full") if parameters is None else parameters
    device = next(model.parameters()).device
    quiet = redirect_stderr(io.StringIO())  # its progress bars: one per chain
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings(), quiet:
        warnings.simplefilter("ignore")
        result = llc(
            model, dataset, {}, lr=settings.lr, n_beta=settings.n_beta, loss_fn=indexed_loss,
            param_masks={name: None for name in names}, num_chains=settings.chains, num_draws=settings.draws,
            num_burnin_steps=settings.burn_in, batch_size=settings.batch_size, localization=settings.localization,
            init_seed=settings.seed, device=str(device), output_path=f"{folder}/samples.zarr",
        )
        return float(result.llc_mean)
