"""The GPU engine's parts: the background checkpoint writer, the replayable (captured) update, and,
where a CUDA device is present, captured training against eager training.

Everything but the graph itself is tested on the CPU: the writer thread's ordering and failure
handling, the snapshots, the state ``replayable`` restores after its warm-up runs, and the
trainer's captured path end to end, with a stand-in for the graph (tests/graph_emulation.py) that
fails where a real capture would go wrong: a tensor read at a moved address, or a host sync.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading
import time

import pytest
import torch

from icl_mech import cli, graphs, preset, storage, train, trainer
from icl_mech.ensemble import train_ensemble
from icl_mech.errors import CaptureError, WriteError
from icl_mech.model import build_model, query_logits
from icl_mech.readout import loss_and_accuracy
from icl_mech.sampler import TRAINING_MODES, sample_batch, stream_generator, training_pool
from icl_mech.trainer import make_optimizer
from icl_mech.writer import BackgroundWriter, host_copy
from graph_emulation import AddressesMoved, HostSync, emulate_graphs, emulated_capture

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
TINY = {"K": 64, "steps": 40, "eval_every": 5, "checkpoint_every": 10, "eval_size": 64, "batch_size": 16, "d_mlp": 16}


def tiny_config(**overrides):
    return preset("cpu").override(**{**TINY, **overrides})


def test_the_writer_runs_writes_in_order_on_its_own_thread_and_flush_waits_for_them():
    done, threads = [], set()

    def write(index):
        time.sleep(0.01 * (index % 3))  # later writes are quicker: order must come from the queue
        threads.add(threading.current_thread())
        done.append(index)

    with BackgroundWriter(max_pending=2) as writer:
        for index in range(10):
            writer.submit(lambda index=index: write(index))
        writer.flush()
        assert done == list(range(10))
    assert threads and threading.current_thread() not in threads


def test_a_failed_write_drops_the_later_ones_and_is_raised_on_the_training_thread():
    done = []

    def fail():
        raise WriteError("cannot write x: No space left on device (ENOSPC)")

    writer = BackgroundWriter()
    writer.submit(lambda: done.append(1))
    writer.submit(fail)
    writer.submit(lambda: done.append(3))  # queued behind the failure: must not reach the disk
    with pytest.raises(WriteError, match="ENOSPC"):
        writer.flush()
    with pytest.raises(WriteError, match="ENOSPC"):
        writer.submit(lambda: done.append(4))
    with pytest.raises(WriteError, match="ENOSPC"):
        writer.__exit__(None, None, None)
    assert done == [1]


def test_leaving_on_another_error_finishes_the_submitted_writes_and_keeps_that_error():
    done = []
    with pytest.raises(KeyboardInterrupt), BackgroundWriter() as writer:
        writer.submit(lambda: (time.sleep(0.05), done.append("snapshot")))
        raise KeyboardInterrupt
    assert done == ["snapshot"]


def test_a_snapshot_keeps_the_values_of_when_it_was_taken():
    weight = torch.arange(6.0).reshape(2, 3)
    copies, wait = host_copy({"w": weight})
    weight.add_(100)  # training goes on
    wait()
    assert torch.equal(copies["w"], torch.arange(6.0).reshape(2, 3))


def _training_state(optimizer_name: str):
    """A model, its optimizer, its data generator and an update function, as the trainer builds them."""
    config = tiny_config(optimizer=optimizer_name, lr=1e-2)
    model = build_model(config, "cpu")
    optimizer = make_optimizer(model.named_parameters(), config.train)
    pool = training_pool(config.task, 0)
    generator = stream_generator(0, "train")

    def update(keep_gradients: bool) -> None:
        batch = sample_batch(config.task, pool, 16, generator, **TRAINING_MODES["bursty"])
        loss = loss_and_accuracy(query_logits(model, batch.tokens), batch.targets)[0]
        optimizer.zero_grad(set_to_none=not keep_gradients)
        loss.backward()
        optimizer.step()

    return model, optimizer, generator, update


@pytest.mark.parametrize("optimizer_name", ["adam", "sgd"])
def test_the_replayed_update_takes_the_eager_trajectory_from_the_first_step(monkeypatch, optimizer_name):
    """``replayable`` runs the update a few times before capturing it; what it restores afterwards
    (parameters, optimizer state created by the warm-up, generator) must make the first replay the
    eager first step. The capture is replaced by eager calls here, the bookkeeping is the real one."""
    eager_model, _, _, eager_update = _training_state(optimizer_name)
    for _ in range(5):
        eager_update(keep_gradients=False)

    model, optimizer, generator, update = _training_state(optimizer_name)
    calls = []

    def eager_capture(function, generators, device):
        for _ in range(graphs.WARMUP_RUNS + 1):  # the warm-up runs and the (not replayed) capture
            function()
        calls.append(generators)
        return function

    monkeypatch.setattr(graphs, "_captured", eager_capture)
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    monkeypatch.setattr(graphs, "captures", lambda device, capture: True)
    replay = graphs.replayable(
        lambda: update(keep_gradients=True), torch.device("cpu"), generators=[generator],
        parameters=parameters, optimizer=optimizer, capture=True,
    )
    assert calls == [[generator]]
    for _ in range(5):
        replay()
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter, eager_model.get_parameter(name), rtol=0, atol=0, msg=name)


def test_a_failed_capture_says_to_rerun_eagerly_and_restores_the_state_it_started_with(monkeypatch):
    """No eager fallback in the process (a failed capture can leave a registered generator marked
    as capturing): one error that names --eager, with parameters, optimizer and generator as before."""
    model, optimizer, generator, update = _training_state("adam")
    before = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    rng_before = generator.get_state()

    def failing_capture(function, generators, device):
        function()  # a warm-up run got through, then capture hit an operation it cannot record
        raise RuntimeError("operation not permitted when stream is capturing\nCUDA kernel errors ...")

    monkeypatch.setattr(graphs, "_captured", failing_capture)
    monkeypatch.setattr(graphs, "captures", lambda device, capture: True)
    monkeypatch.setattr(graphs.torch.cuda, "synchronize", lambda device=None: None)
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    with pytest.raises(CaptureError, match=r"\(operation not permitted when stream is capturing\); rerun with --eager"):
        graphs.replayable(
            lambda: update(keep_gradients=True), torch.device("cpu"),
            generators=[generator], parameters=parameters, optimizer=optimizer,
        )
    assert torch.equal(generator.get_state(), rng_before)
    assert all(torch.equal(parameter, before[name]) for name, parameter in model.named_parameters())
    assert all(not torch.is_tensor(v) or not v.any() for state in optimizer.state.values() for v in state.values())


def test_icl_mech_train_whose_capture_fails_prints_one_line_and_resumes_with_eager(tmp_path, monkeypatch, capsys):
    """The update's capture fails after step 0 is saved: one line naming --eager, exit 2, and the
    run then goes on from step 0 with --eager --resume."""
    emulate_graphs(monkeypatch)

    def failing_update_capture(function, generators, device):
        if generators:  # the update registers the data generator; the evaluation none
            raise RuntimeError("operation not permitted when stream is capturing")
        return emulated_capture(function, generators, device)

    monkeypatch.setattr(graphs, "_captured", failing_update_capture)
    monkeypatch.setattr(graphs.torch.cuda, "synchronize", lambda device=None: None)
    out = tmp_path / "run"
    args = ["train", "--K", "64", "--steps", "10", "--set", "eval_size=64", "--set", "d_mlp=16", "--out", str(out), "--quiet"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "rerun with --eager" in err and "Traceback" not in err
    assert storage.checkpointed_steps(out) == [0]
    assert cli.main(args + ["--eager", "--resume"]) == 0
    assert "step 10" in capsys.readouterr().out


def test_the_interleaved_sampler_decides_burstiness_from_the_config_not_the_draw():
    """No host synchronization in sampling: a p_bursty < 1 batch draws its iid alternative even
    when every sequence came out bursty (a graph cannot branch on data)."""
    task = tiny_config(format="interleaved", N=9, B=2, p_bursty=0.999, K=64).task
    pool = training_pool(task, 0)
    generator = stream_generator(0, "train")
    state = generator.get_state()
    sample_batch(task, pool, 4, generator, replacement=True, query="in_context")
    drawn = generator.get_state()
    generator.set_state(state)
    always_bursty = dataclasses.replace(task, p_bursty=1.0)
    sample_batch(always_bursty, pool, 4, generator, replacement=True, query="in_context")
    assert not torch.equal(drawn, generator.get_state())  # p_bursty < 1 drew more numbers


def test_training_on_cpu_writes_the_same_files_through_the_writer(tmp_path):
    """Metrics rows, checkpoints and status all reach the disk by the end of train()."""
    run = train(tiny_config(), tmp_path / "run", progress=False)
    steps = [json.loads(line)["step"] for line in (run.path / storage.METRICS).read_text().splitlines()]
    checkpoints = [0, 1, 2, 4, 8, 10, 20, 30, 40]  # every checkpoint step is evaluated too
    assert steps == sorted({*range(0, 41, 5), *checkpoints}) and run.steps == checkpoints
    assert run.status["last_step"] == 40 and not list(tmp_path.rglob("*.tmp"))


def _rows(run):
    return [json.loads(line) for line in (run.path / storage.METRICS).read_text().splitlines()]


def test_the_emulated_capture_fails_when_a_read_tensor_moves():
    """The stand-in for a graph must catch what a real graph gets wrong silently."""
    weight, inputs = torch.randn(3, 2), torch.randn(4, 3)
    total = torch.zeros(())

    def step():
        total.copy_((inputs @ weight).sum())

    replay = emulated_capture(step, (), torch.device("cpu"))
    replay()
    weight.data = weight.data.clone()  # re-pointed after capture, as a restacking would
    with pytest.raises(AddressesMoved):
        replay()


def _assert_same_metrics_and_weights(run, expected, abs_tolerance=0.0):
    assert run.status["last_step"] == expected.status["last_step"]
    for row, expected_row in zip(_rows(run), _rows(expected), strict=True):
        assert row == pytest.approx(expected_row, rel=0, abs=abs_tolerance)
    for name, tensor in expected.state_dict(expected.steps[-1]).items():
        torch.testing.assert_close(run.state_dict(run.steps[-1])[name], tensor, rtol=0, atol=abs_tolerance)


@pytest.mark.parametrize("optimizer_name", ["adam", "sgd"])
def test_the_captured_path_on_the_cpu_gives_the_eager_run_with_fixed_addresses(tmp_path, monkeypatch, optimizer_name):
    """The trainer's CUDA-graph path (gradients kept, the warm-up undone, evaluation by one
    replay) run on the CPU with emulated graphs: every replay reads its tensors where the capture
    did, and the run is the eager run exactly."""
    config = tiny_config(optimizer=optimizer_name, lr=1e-2)
    eager = train(config, tmp_path / "eager", progress=False, capture=False)
    emulate_graphs(monkeypatch)
    _assert_same_metrics_and_weights(train(config, tmp_path / "captured", progress=False), eager)


def _recording_captures(monkeypatch) -> list:
    """Emulated graphs (tests/graph_emulation.py); the returned list gets one entry per graph recorded."""
    emulate_graphs(monkeypatch)
    recorded = []

    def recording_capture(function, generators, device):
        recorded.append(function)
        return emulated_capture(function, generators, device)

    monkeypatch.setattr(graphs, "_captured", recording_capture)
    return recorded


@pytest.mark.parametrize("eager", [False, True])
def test_icl_mech_train_records_graphs_unless_eager(tmp_path, monkeypatch, capsys, eager):
    """``icl-mech train`` takes the captured path where graphs are recorded (emulated here: the
    evaluation pass and the update), and ``--eager`` records none."""
    recorded = _recording_captures(monkeypatch)
    args = ["train", "--K", "64", "--steps", "10", "--set", "eval_size=64", "--set", "d_mlp=16",
            "--out", str(tmp_path / "run"), "--quiet"]
    assert cli.main(args + ["--eager"] * eager) == 0
    assert len(recorded) == (0 if eager else 2)
    assert "step 10" in capsys.readouterr().out


@pytest.mark.parametrize("eager", [False, True])
def test_icl_mech_sweep_records_graphs_unless_eager(tmp_path, monkeypatch, eager):
    """``icl-mech sweep --eager`` is the way on when a capture fails on a sweep's GPU: its units
    train without graphs (emulated here; one worker trains in the sweep process)."""
    recorded = _recording_captures(monkeypatch)
    args = ["sweep", "--grid", "seed=0,1", "--ensemble", "2", "--out", str(tmp_path / "sweep"), "--quiet",
            *(f"--set={field}={value}" for field, value in {**TINY, "steps": 10}.items())]
    assert cli.main(args + ["--eager"] * eager) == 0
    assert len(recorded) == (0 if eager else 2)


#: Every sampler mode a training step can draw in (issue 11: all of them on the device, none syncing).
SAMPLER_MODES = {
    "bursty": {},
    "iid": {"burstiness": "iid"},
    "no_repeats": {"burstiness": "no_repeats"},
    "K infinite": {"K": None},
    "equalized": {"N": 21, "equalized": True},
    "epsilon": {"epsilon": 0.1},
    "interleaved": {
        "format": "interleaved", "N": 9, "B": 2, "p_bursty": 0.75, "zipf_alpha": 1.0, "n_layers": 2, "attn_only": True,
    },
    "4 labels, Reddy's sets": {"L": 4, "reddy_eval_sets": True},
    "interleaved, 32 labels": {"format": "interleaved", "N": 9, "B": 2, "L": 32, "n_layers": 2, "attn_only": True},
}


@pytest.mark.parametrize("mode", SAMPLER_MODES)
def test_every_sampler_mode_trains_on_the_captured_path_without_a_host_sync(tmp_path, monkeypatch, mode):
    """A step in any sampling mode records into a graph: no operation reads a value back to the
    host or makes a data-dependent shape (``graph_emulation.HostSync``), every replay reads its
    tensors where the capture did, and the run is the eager run."""
    config = tiny_config(steps=12, **SAMPLER_MODES[mode])
    eager = train(config, tmp_path / "eager", progress=False, capture=False)
    emulate_graphs(monkeypatch)
    _assert_same_metrics_and_weights(train(config, tmp_path / "captured", progress=False), eager)


def test_the_sync_check_catches_a_value_read_to_the_host():
    """What the sampler-mode test relies on: ``.item()`` and boolean masks inside are refused."""
    values = torch.randn(8)
    with pytest.raises(HostSync):
        emulated_capture(lambda: values[values > 0].sum(), (), torch.device("cpu"))
    with pytest.raises(HostSync):
        emulated_capture(lambda: values.max().item(), (), torch.device("cpu"))


def test_a_run_on_the_captured_path_stopped_and_resumed_is_the_uninterrupted_run(tmp_path, monkeypatch):
    """Resuming loads a capturable Adam's state before the warm-up runs, so ``replayable`` must
    put the loaded state back (not a fresh optimizer's zeros): emulated graphs on the CPU."""
    emulate_graphs(monkeypatch)
    config = tiny_config()
    whole = train(config, tmp_path / "whole", progress=False)
    train(config.override(steps=15), tmp_path / "split", progress=False)
    split = train(config, tmp_path / "split", resume=True, progress=False)
    _assert_same_metrics_and_weights(split, whole)


def test_the_captured_ensemble_path_on_the_cpu_keeps_its_addresses_and_members(tmp_path, monkeypatch):
    """A captured ensemble is stacked once, before its graphs are recorded, and keeps a stopped
    member in its update (seed 0 stops early on ICL accuracy 0.56, seed 1 runs all 60): with
    emulated graphs, no replay reads a moved tensor, and both members end as the eager ensemble's
    do (to float rounding: the eager one restacks seed 1 alone)."""
    configs = [tiny_config(seed=seed, N=9, d_mlp=32, eval_size=100, steps=60, stop_icl_acc=0.56) for seed in (0, 1)]
    eager = train_ensemble(configs, [tmp_path / "eager0", tmp_path / "eager1"], progress=False, capture=False)
    assert eager[0].status["stopped_early"] and eager[1].status["last_step"] == 60
    emulate_graphs(monkeypatch)
    captured = train_ensemble(configs, [tmp_path / "captured0", tmp_path / "captured1"], progress=False)
    for run, expected in zip(captured, eager):
        _assert_same_metrics_and_weights(run, expected, abs_tolerance=1e-5)


@needs_cuda
@pytest.mark.parametrize("optimizer_name", ["adam", "sgd"])
def test_a_captured_run_gives_the_eager_runs_metrics(tmp_path, optimizer_name):
    config = tiny_config(steps=200, optimizer=optimizer_name, lr=1e-2 if optimizer_name == "sgd" else 1e-3)
    eager = train(config, tmp_path / "eager", device="cuda", progress=False, capture=False)
    captured = train(config, tmp_path / "captured", device="cuda", progress=False)
    for eager_row, captured_row in zip(_rows(eager), _rows(captured), strict=True):
        assert eager_row.keys() == captured_row.keys()
        for key in eager_row:
            assert captured_row[key] == pytest.approx(eager_row[key], abs=1e-4), (eager_row["step"], key)


@needs_cuda
def test_a_captured_run_stopped_and_resumed_ends_where_an_uninterrupted_one_does(tmp_path):
    config = tiny_config(steps=200)
    whole = train(config, tmp_path / "whole", device="cuda", progress=False)
    train(config.override(steps=100), tmp_path / "split", device="cuda", progress=False)
    split = train(config, tmp_path / "split", device="cuda", resume=True, progress=False)
    for whole_row, split_row in zip(_rows(whole), _rows(split), strict=True):
        assert split_row == pytest.approx(whole_row, rel=0, abs=1e-6)
    for name, tensor in whole.state_dict(200).items():
        torch.testing.assert_close(split.state_dict(200)[name], tensor, rtol=0, atol=1e-6)


@needs_cuda
def test_a_captured_ensemble_gives_the_eager_ensembles_metrics(tmp_path):
    configs = [tiny_config(seed=seed, K=K, steps=200) for seed, K in [(0, 64), (1, 128), (2, 64)]]
    eager = train_ensemble(configs, [tmp_path / f"eager{i}" for i in range(3)], device="cuda", progress=False, capture=False)
    captured = train_ensemble(configs, [tmp_path / f"captured{i}" for i in range(3)], device="cuda", progress=False)
    for eager_run, captured_run in zip(eager, captured):
        assert captured_run.status["last_step"] == eager_run.status["last_step"]
        for eager_row, captured_row in zip(_rows(eager_run), _rows(captured_run), strict=True):
            assert captured_row == pytest.approx(eager_row, abs=1e-4)


@pytest.mark.parametrize("members", [1, 2])
def test_an_adam_run_saved_eagerly_resumes_on_the_captured_path_with_a_capturable_optimizer(tmp_path, monkeypatch, members):
    """``load_state_dict`` takes ``capturable`` from the saved groups: a run saved under --eager
    would resume uncapturable, and on CUDA its capture would fail. The resumed update's optimizer
    must be capturable (emulated graphs; a single run and an ensemble)."""
    configs = [tiny_config(steps=10, seed=seed) for seed in range(members)]
    run_dirs = [tmp_path / f"run{index}" for index in range(members)]
    train_ensemble(configs, run_dirs, progress=False, capture=False)
    emulate_graphs(monkeypatch)
    capturable = []

    def recording_replayable(function, device, *, optimizer=None, **kwargs):
        if optimizer is not None:
            capturable.extend(group["capturable"] for group in optimizer.param_groups)
        return graphs.replayable(function, device, optimizer=optimizer, **kwargs)

    monkeypatch.setattr(trainer, "replayable", recording_replayable)
    longer = [config.override(steps=20) for config in configs]
    if members == 1:
        train(longer[0], run_dirs[0], resume=True, progress=False)
    else:
        train_ensemble(longer, run_dirs, resume=True, progress=False)
    assert capturable and all(capturable)


def test_a_run_trained_on_another_kind_of_device_is_refused_in_one_line(tmp_path):
    """A CUDA generator's state (a Philox seed and offset, 16 bytes) does not fit a CPU generator:
    resuming there is one error naming --device, not torch's "RNG state is wrong size" traceback."""
    run_dir = tmp_path / "run"
    train(tiny_config(steps=4), run_dir, progress=False)
    tensors, meta = storage.load_tensors(run_dir / storage.RESUME)
    tensors["data_rng"] = torch.zeros(16, dtype=torch.uint8)  # what a run on cuda saves
    storage.save_tensors(run_dir / storage.RESUME, tensors, meta)
    result = subprocess.run(
        [sys.executable, "-m", "icl_mech", "train", "--resume", "--out", str(run_dir), "--steps", "8", "--quiet"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"icl-mech train: error: cannot resume {run_dir} on cpu: it was trained on another kind of device "
        "(its data-RNG state is not a cpu generator's); resume it with the --device it was trained on"
    ]


def test_building_a_model_leaves_every_global_generator_alone(monkeypatch):
    """The init is seeded on a forked CPU generator; torch.manual_seed would also reseed every CUDA
    device's default generator, which a user's own CUDA code draws from."""
    seeded_cuda = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: seeded_cuda.append(seed))
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda seed: seeded_cuda.append(seed))
    before = torch.random.get_rng_state()
    first = build_model(tiny_config(), "cpu")
    assert seeded_cuda == [] and torch.equal(torch.random.get_rng_state(), before)
    again = build_model(tiny_config(), "cpu")
    for name, parameter in first.named_parameters():
        assert torch.equal(parameter, again.get_parameter(name)), name


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_a_run_on_a_device_other_than_the_current_one_is_captured_and_trains(tmp_path):
    """Streams and graphs made on the current device (cuda:0) would not capture work on cuda:1:
    the graph would replay nothing. The captured run on cuda:1 must be the eager one."""
    config = tiny_config(steps=100)
    assert torch.cuda.current_device() == 0
    eager = train(config, tmp_path / "eager", device="cuda:1", progress=False, capture=False)
    recorded_before = graphs.recorded
    captured = train(config, tmp_path / "captured", device="cuda:1", progress=False)
    assert graphs.recorded - recorded_before == 2
    for eager_row, captured_row in zip(_rows(eager), _rows(captured), strict=True):
        assert captured_row == pytest.approx(eager_row, abs=1e-4)
