"""The LLC estimator (probes/llc.py) against models whose learning coefficient is known, its
warnings, its weight restrictions, and `icl-mech llc` on the shipped reference runs.

Known answers (probes/llc_calibration.py), for the population loss (every SGLD batch is fresh),
with n_beta large enough that the localization hardly matters.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from icl_mech.cli import main
from icl_mech.errors import RunError
from icl_mech.run import load_run
from probes.llc_calibration import logistic, products, square
from probes.llc import (
    LLCEstimate, LLCWarning, SGLDSettings, estimate_llc, estimate_llcs, llc_run, query_loss, restricted_parameters, run_draw,
)

@pytest.fixture(autouse=True)
def one_thread():
    """These models are a few weights: a second thread only waits on the first."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


#: A regular model: the estimate is within 15% of d/2.
REGULAR_TOLERANCE = 0.15
#: The degenerate models: within 15% of their known learning coefficient.
DEGENERATE_TOLERANCE = 0.15


#: Fast, accurate sampling of small models: n_beta large against the localization, a step size
#: small against n_beta times the curvature, large batches (little minibatch noise).
CALIBRATION = SGLDSettings(lr=3e-4, n_beta=1000.0, localization=1.0, chains=8, draws=800, burn_in=200, batch_size=500)


def test_regular_model_estimate_is_within_15_percent_of_half_its_dimension():
    d = 8
    model, loss, draw, _ = logistic(d)
    estimate = estimate_llc(model, loss, draw, CALIBRATION)
    assert estimate.n_params == d and not estimate.warnings
    assert estimate.mean == pytest.approx(d / 2, rel=REGULAR_TOLERANCE)


def test_redundant_products_have_half_the_coefficient_of_their_dimension():
    k = 4
    model, loss, draw, _ = products(torch.tensor([1.0, -1.0, 1.5, 0.8]))
    settings = SGLDSettings(lr=1e-4, n_beta=500.0, localization=1.0, chains=8, draws=600, burn_in=100, batch_size=500)
    estimate = estimate_llc(model, loss, draw, settings)
    assert estimate.n_params == 2 * k
    assert estimate.mean == pytest.approx(k / 2, rel=DEGENERATE_TOLERANCE)
    assert estimate.mean < 0.75 * estimate.n_params / 2


def test_singular_quartic_model_estimate_is_a_quarter():
    model, loss, draw, _ = square()
    settings = SGLDSettings(lr=1e-3, n_beta=1000.0, localization=0.1, chains=8, draws=1500, burn_in=200, batch_size=500)
    estimate = estimate_llc(model, loss, draw, settings)
    assert estimate.mean == pytest.approx(0.25, rel=DEGENERATE_TOLERANCE)
    assert estimate.mean < 0.5 * 0.75


def dataclasses_replace(settings: SGLDSettings, **changes) -> SGLDSettings:
    return SGLDSettings.from_dict(settings.to_dict() | changes)


def test_restricting_a_regular_model_to_some_weights_counts_only_those():
    d = 8
    model, loss, draw, _ = logistic(d)
    split = nn.Module()
    split.head, split.tail = nn.Parameter(model.weight.data[0, :3].clone()), nn.Parameter(model.weight.data[0, 3:].clone())

    def split_loss(module, x, y):
        return loss(lambda inputs: (inputs @ torch.cat([module.head, module.tail]))[:, None], x, y)

    before = {name: weight.clone() for name, weight in split.named_parameters()}
    estimate = estimate_llc(split, split_loss, draw, dataclasses_replace(CALIBRATION, burn_in=500), ["head"])
    assert estimate.n_params == 3
    assert estimate.mean == pytest.approx(3 / 2, rel=REGULAR_TOLERANCE)  # the 5 others stayed put
    assert all(torch.equal(before[name], weight) for name, weight in split.named_parameters())


def test_a_step_size_too_large_warns_that_chains_diverged():
    settings = dataclasses_replace(CALIBRATION, lr=1.0, draws=40, burn_in=10, batch_size=100)
    with pytest.warns(LLCWarning, match="diverged"):
        estimate = estimate_llc(*logistic(8)[:3], settings)
    assert any("diverged" in message for message in estimate.warnings)


def test_weights_away_from_a_minimum_warn_of_a_negative_estimate():
    model, loss, draw, _ = logistic(8)
    with torch.no_grad():
        model.weight.zero_()  # far from the teacher: SGLD goes downhill
    with pytest.warns(LLCWarning, match="negative"):
        estimate = estimate_llc(model, loss, draw, dataclasses_replace(CALIBRATION, draws=300, burn_in=50))
    assert estimate.mean < 0


def test_a_trace_still_rising_warns_that_it_has_not_flattened():
    # A step size 30 times smaller: the chains need ~10^3 steps to spread, and get 400.
    settings = dataclasses_replace(CALIBRATION, lr=1e-5, draws=400, burn_in=0)
    with pytest.warns(LLCWarning, match="not flattened"):
        estimate_llc(*logistic(8)[:3], settings)


def test_a_converged_estimate_has_no_warnings_and_settings_round_trip():
    estimate = estimate_llc(*logistic(4)[:3], dataclasses_replace(CALIBRATION, draws=500, burn_in=500))
    assert isinstance(estimate, LLCEstimate) and estimate.warnings == ()
    assert SGLDSettings.from_dict(estimate.settings.to_dict()) == estimate.settings
    assert estimate.excess.shape == (8, 1000) and math.isfinite(estimate.std)


class _FlatValley(nn.Module):
    """L(w) = h/2 w_0^2: curved along w_0, constant along w_1."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(2))


def test_localization_alone_decides_the_estimate_in_a_flat_valley():
    # Along w_1 the loss is constant: only the localization gamma keeps a chain there (without it
    # the posterior is improper and the chain diffuses). Along w_0, n_beta h = gamma, so the
    # answer is the localization's too: the SGLD chain is an exact discretized Ornstein-Uhlenbeck
    # process with rate k = n_beta h + gamma, its stationary variance 1 / (k (1 - lr k / 4)), and
    # the estimate n_beta h / 2 times that: 0.263 (0.51 without gamma, 0.063 with gamma x 10, and
    # no stationary state at all with its sign flipped).
    h, settings = 0.01, SGLDSettings(lr=0.1, n_beta=100.0, localization=1.0, chains=32, draws=2000, burn_in=200, batch_size=1)
    k = settings.n_beta * h + settings.localization
    known = settings.n_beta * h / (2 * k * (1 - settings.lr * k / 4))

    def loss(model, x):
        return 0.5 * h * model.w[0].square() + 0 * x.sum()

    estimate = estimate_llc(_FlatValley(), loss, lambda n, generator: (torch.zeros(n, 1),), settings)
    assert estimate.mean == pytest.approx(known, rel=0.06)


def test_an_estimate_whose_chains_all_diverged_has_no_spread():
    settings = SGLDSettings(chains=3, draws=2, burn_in=2)
    estimate = LLCEstimate(torch.full((3, 4), math.nan), torch.zeros(3, 4), settings, 10, ())
    assert math.isnan(estimate.mean) and math.isnan(estimate.std)


def test_sampling_leaves_no_gradient_on_the_model():
    model = load_run(REFERENCE / "memorize").model()
    run = load_run(REFERENCE / "memorize")
    estimate_llc(model, query_loss, run_draw(run, "train"), SGLDSettings(chains=2, draws=2, burn_in=1, batch_size=8),
                 restricted_parameters(model, "attn"))
    assert all(weight.grad is None for weight in model.parameters())


def test_the_sgld_update_is_devinterps_optimizer():
    from devinterp.optim import SGMCMC

    model, loss, draw, _ = logistic(4)
    settings = SGLDSettings(lr=1e-3, n_beta=100.0, localization=2.0, chains=3, draws=5, burn_in=0, batch_size=50)
    chains = model.weight.detach().expand(settings.chains, 1, 4).clone().requires_grad_()
    optimizer = SGMCMC.sgld([chains], lr=settings.lr, nbeta=settings.n_beta, localization=settings.localization)
    data, noise = torch.Generator().manual_seed(settings.seed), torch.Generator().manual_seed(settings.seed + 1)
    excess = []
    for _ in range(settings.draws):
        x, y = (part.reshape(settings.chains, settings.batch_size, *part.shape[1:]) for part in draw(150, data))
        losses = torch.stack([loss(lambda inputs, w=w: inputs @ w.T, xc, yc) for w, xc, yc in zip(chains, x, y)])
        optimizer.zero_grad()
        losses.sum().backward()
        optimizer.step(noise_generator=noise)
        at_center = torch.stack([loss(model, xc, yc) for xc, yc in zip(x, y)]).detach()
        excess.append(settings.n_beta * (losses.detach() - at_center))
    ours = estimate_llc(model, loss, draw, settings)
    torch.testing.assert_close(ours.excess, torch.stack(excess, 1), rtol=1e-4, atol=1e-4)


def test_checkpoints_and_restrictions_sampled_as_one_stack_each_get_their_own_estimate():
    # The same batches and noise as each alone; rounding differs (one vmap over checkpoints), and
    # SGLD amplifies it over hundreds of steps, so a few steps compare to float tolerance.
    run = load_run(REFERENCE / "near")
    models = [run.model(step) for step in (0, 256, 4000)]
    settings, draw = SGLDSettings(chains=2, draws=4, burn_in=2, batch_size=16), run_draw(run, "train")
    restrictions = [restricted_parameters(models[0], restriction) for restriction in ("full", "mlp")]
    stacked = estimate_llcs(models, query_loss, draw, settings, restrictions)
    for names, per_model in zip(restrictions, stacked, strict=True):
        for model, estimate in zip(models, per_model, strict=True):
            alone = estimate_llc(model, query_loss, draw, settings, names)
            torch.testing.assert_close(estimate.excess, alone.excess, rtol=1e-4, atol=1e-3)
            torch.testing.assert_close(estimate.center_loss, alone.center_loss)


REFERENCE = Path(__file__).resolve().parents[1] / "checkpoints" / "reference"
#: A few SGLD steps: the command's plumbing, not its numbers.
TINY = ["--chains", "2", "--draws", "4", "--burn-in", "2", "--batch-size", "16"]


def test_restrictions_select_the_attention_and_the_mlp_weights_of_a_run():
    model = load_run(REFERENCE / "memorize").model()
    assert set(restricted_parameters(model, "attn")) == {f"blocks.0.attn.W_{m}" for m in "QKVO"}  # frozen biases left out
    assert set(restricted_parameters(model, "mlp")) == {f"blocks.0.mlp.{n}" for n in ("W_in", "b_in", "W_out", "b_out")}
    full = restricted_parameters(model, "full")
    assert set(full) > set(restricted_parameters(model, "attn")) | set(restricted_parameters(model, "mlp"))
    assert "blocks.0.ln1.w" in full and "blocks.0.attn.b_Q" not in full


def test_llc_command_writes_settings_rows_traces_and_plots(tmp_path, capsys):
    out = tmp_path / "llc"
    args = ["llc", "--run", str(REFERENCE / "memorize"), "--steps", "0,1000", "--restrict", "full,mlp",
            "--data", "train,iwl", "--out", str(out), "--json", "--quiet", "--seed", "3", *TINY]
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["settings"] == SGLDSettings(chains=2, draws=4, burn_in=2, batch_size=16, seed=3).to_dict()
    assert [(r["step"], r["restriction"], r["data"]) for r in printed["rows"]] == [
        (step, restriction, data) for step in (0, 1000) for restriction in ("full", "mlp") for data in ("train", "iwl")
    ]
    saved = json.loads((out / "llc.json").read_text())
    assert saved["settings"] == printed["settings"] and len(saved["traces"]) == 8
    assert all(len(trace["excess"]) == 2 and len(trace["excess"][0]) == 6 for trace in saved["traces"])
    assert all((out / name).stat().st_size > 0 for name in ("llc.csv", "llc.png", "llc-traces.png"))


def test_llc_command_writes_nothing_into_the_run_directory_without_out(capsys):
    run = REFERENCE / "memorize"
    before = sorted((path, path.stat().st_mtime_ns) for path in run.rglob("*"))
    assert main(["llc", "--run", str(run), "--steps", "0,1000", "--restrict", "mlp", "--quiet", *TINY]) == 0
    assert sorted((path, path.stat().st_mtime_ns) for path in run.rglob("*")) == before
    assert "no files written: --out DIR" in capsys.readouterr().err


@pytest.mark.parametrize(("command", "work"), [("llc", "probes.llc.llc_run"), ("report", "probes.report.write_report")])
@pytest.mark.parametrize(("flags", "omp", "expected"), [([], None, 1), ([], "2", 2), (["--threads", "3"], "2", 3)])
def test_llc_and_report_sample_on_threads_else_omp_num_threads_else_torchs_default(
    tmp_path, monkeypatch, command, work, flags, omp, expected
):
    """torch's default here is the autouse fixture's 1 thread (it stands for every core)."""
    seen = []

    def stub(*args, **kwargs):  # the thread count the work would run on, then stop before it
        seen.append(torch.get_num_threads())
        raise RunError("stub")

    monkeypatch.setattr(work, stub)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    if omp is not None:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    run = str(REFERENCE / "memorize")
    assert main([command, "--run", run, "--out", str(tmp_path / "out.html"), "--quiet", *flags]) == 2
    assert seen == [expected]


def test_llc_command_refuses_bad_steps_restrictions_and_settings_in_one_line(capsys):
    run = str(REFERENCE / "memorize")
    for args, expected in ((["--steps", "7"], "never checkpointed"), (["--lr", "-1"], "lr must be positive")):
        assert main(["llc", "--run", run, "--quiet", *TINY, *args]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and expected in error
    with pytest.raises(SystemExit) as exit:
        main(["llc", "--run", run, "--restrict", "heads"])
    error = capsys.readouterr().err
    assert exit.value.code == 2 and error.count("\n") == 1 and "subset of full,attn,mlp" in error


@pytest.mark.cuda
def test_llc_on_cuda_keeps_every_tensor_on_the_model_device():
    run = load_run(REFERENCE / "memorize")
    table, _ = llc_run(run, [run.steps[-1]], settings=SGLDSettings(chains=2, draws=4, burn_in=2), device="cuda", progress=False)
    assert table.llc_mean.notna().all()
