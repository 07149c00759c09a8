"""The GPU engine's parts: the background checkpoint writer, the replayable (captured) update, and,
where a CUDA device is present, captured training against eager training.

Everything but the graph itself is tested on the CPU: the writer thread's ordering and failure
handling, the snapshots, the state ``replayable`` restores after its warm-up runs, and the
trainer's captured path end to end, with a stand-in for the graph (tests/graph_emulation.py) that
fails where a real capture would go wrong: a tensor read at a moved address, or a host sync.
"""

from __future__ import annotations

import contextlib
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
import graph_emulation
from graph_emulation import CAPTURE_ENDED, AddressesMoved, HostSync, emulate_graphs, emulated_capture

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


def test_an_ensemble_queues_one_metrics_write_per_evaluation_for_all_its_members(tmp_path, monkeypatch):
    """One queued write per member and evaluation would, at E = 64, fill the writer's queue of 8
    and keep training waiting for 56 fsyncs at every evaluation: all rows go in one write."""
    queued = []

    class RecordingWriter(BackgroundWriter):
        def submit(self, write):
            queued.append(write)
            super().submit(write)

    monkeypatch.setattr(trainer, "BackgroundWriter", RecordingWriter)
    runs = train_ensemble([tiny_config(steps=4, seed=seed) for seed in range(3)], [tmp_path / f"run{i}" for i in range(3)],
                          progress=False)
    metrics_writes = [write.args[0] for write in queued if getattr(write, "func", None) is trainer._append_rows]
    assert [sorted(rows) for rows in metrics_writes] == [[run.path / storage.METRICS for run in runs]] * 4  # steps 0, 1, 2, 4
    assert all(len(run.metrics) == 4 for run in runs)


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


#: What CUDA says when an operation in a capture needs the host (``.item()``, a synchronize).
REFUSED = "CUDA error: operation not permitted when stream is capturing"


def read_back_in_capture() -> None:
    """An operation that fails only while a graph is recorded, as ``.item()`` does on CUDA."""
    if graph_emulation.capturing:
        raise RuntimeError(REFUSED)


def test_a_failed_capture_names_the_failing_operation_keeps_its_error_and_restores_the_state(monkeypatch):
    """An operation fails inside the capture (emulated: ending it raises CAPTURE_ENDED, the
    operation's error its context, as torch.cuda.graph does): one error that names the operation
    and says to rerun with --eager, raised from the capture's errors, and parameters, optimizer and
    generator as before (no eager fallback: a failed capture can leave a registered generator
    marked as capturing)."""
    model, optimizer, generator, update = _training_state("adam")
    before = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    rng_before = generator.get_state()

    def update_reading_back() -> None:
        update(keep_gradients=True)
        read_back_in_capture()

    monkeypatch.setattr(graphs, "_captured", emulated_capture)
    monkeypatch.setattr(graphs, "captures", lambda device, capture: True)
    monkeypatch.setattr(graphs.torch.cuda, "synchronize", lambda device=None: None)
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    with pytest.raises(CaptureError) as failure:
        graphs.replayable(
            update_reading_back, torch.device("cpu"), generators=[generator], parameters=parameters, optimizer=optimizer,
        )
    message = str(failure.value)
    assert message.startswith("capturing a CUDA graph failed at tests/test_gpu_engine.py:")
    assert f"in read_back_in_capture `raise RuntimeError(REFUSED)` ({REFUSED}); rerun with --eager" in message
    cause = failure.value.__cause__  # a traceback shows the capture's errors, the operation's first
    assert str(cause) == CAPTURE_ENDED and str(cause.__context__) == REFUSED
    assert torch.equal(generator.get_state(), rng_before)
    assert all(torch.equal(parameter, before[name]) for name, parameter in model.named_parameters())
    assert all(not torch.is_tensor(v) or not v.any() for state in optimizer.state.values() for v in state.values())


def test_a_failed_capture_gives_back_the_stream_it_started_on(monkeypatch):
    """torch.cuda.graph (torch 2.13) ends a capture by ``capture_end()`` and only then restores the
    stream, so when ending a failed capture raises, the capture stream stays current and every
    later kernel goes to a dead stream. ``graphs._captured`` itself, with CUDA's streams and graph
    as stand-ins that keep that order."""
    class Stream(str):
        def wait_stream(self, other: str) -> None:
            pass

    streams = [Stream("default")]  # the current stream last

    @contextlib.contextmanager
    def stream(selected):
        previous = streams[-1]
        streams.append(selected)
        yield
        streams.append(previous)

    class CUDAGraph:
        def register_generator_state(self, generator: torch.Generator) -> None:
            pass

    class graph:  # torch.cuda.graph's order on leaving
        def __init__(self, cuda_graph, stream, capture_error_mode):
            self.stream = stream

        def __enter__(self):
            self.previous = streams[-1]
            streams.append(self.stream)

        def __exit__(self, kind, error, traceback):
            if error is not None:
                raise RuntimeError(CAPTURE_ENDED)  # capture_end()
            streams.append(self.previous)

    stand_ins = {
        "Stream": lambda device=None: Stream(f"stream {len(streams)}"), "current_stream": lambda device=None: streams[-1],
        "set_stream": streams.append, "stream": stream, "CUDAGraph": CUDAGraph, "graph": graph,
    }
    for name, value in stand_ins.items():
        monkeypatch.setattr(torch.cuda, name, value)
    calls = []

    def fails_in_capture() -> None:
        calls.append(streams[-1])
        if len(calls) > graphs.WARMUP_RUNS:
            raise RuntimeError(REFUSED)

    with pytest.raises(RuntimeError, match=CAPTURE_ENDED):
        graphs._captured(fails_in_capture, [], torch.device("cpu"))
    assert calls[-1].startswith("stream") and calls[-1] != calls[0]  # it ran on the capture stream
    assert streams[-1] == "default"


def test_icl_mech_train_whose_capture_fails_prints_one_line_naming_the_operation_and_resumes_with_eager(
    tmp_path, monkeypatch, capsys
):
    """The update's capture fails after step 0 is saved (an operation in the sampler needs the host,
    emulated): one line naming the operation and --eager, exit 2, and the run then goes on from
    step 0 with --eager --resume."""
    emulate_graphs(monkeypatch)
    sample_batch = trainer.sample_batch

    def sampling_then_reading_back(*args, **kwargs):
        read_back_in_capture()
        return sample_batch(*args, **kwargs)

    monkeypatch.setattr(trainer, "sample_batch", sampling_then_reading_back)
    out = tmp_path / "run"
    args = ["train", "--K", "64", "--steps", "4", "--set", "eval_size=16", "--set", "d_mlp=16", "--out", str(out), "--quiet"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("icl-mech train: error: capturing a CUDA graph failed at tests/test_gpu_engine.py:")
    assert f"in read_back_in_capture `raise RuntimeError(REFUSED)` ({REFUSED}); rerun with --eager" in err
    assert storage.checkpointed_steps(out) == [0]
    assert cli.main(args + ["--eager", "--resume"]) == 0
    assert "step 4" in capsys.readouterr().out


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
    did, and the run is the eager run exactly (12 steps: replays past evaluations at 5 and 10 and
    checkpoints at 8 and 10)."""
    config = tiny_config(optimizer=optimizer_name, lr=1e-2, steps=12)
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
    args = ["train", "--K", "64", "--steps", "2", "--set", "eval_size=16", "--set", "d_mlp=16",
            "--out", str(tmp_path / "run"), "--quiet"]
    assert cli.main(args + ["--eager"] * eager) == 0
    assert len(recorded) == (0 if eager else 2)
    assert "step 2" in capsys.readouterr().out


@pytest.mark.parametrize("eager", [False, True])
def test_icl_mech_sweep_records_graphs_unless_eager(tmp_path, monkeypatch, eager):
    """``icl-mech sweep --eager`` is the way on when a capture fails on a sweep's GPU: its units
    train without graphs (emulated here; one worker trains in the sweep process)."""
    recorded = _recording_captures(monkeypatch)
    args = ["sweep", "--grid", "seed=0,1", "--ensemble", "2", "--out", str(tmp_path / "sweep"), "--quiet",
            *(f"--set={field}={value}" for field, value in {**TINY, "steps": 2, "eval_size": 16}.items())]
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


@contextlib.contextmanager
def recording(graphs_expected: int):
    """Fails unless the block records ``graphs_expected`` graphs (a captured run records two: its
    update and its evaluation pass), so a test of the captured path cannot pass eagerly."""
    before = graphs.recorded
    yield
    assert graphs.recorded - before == graphs_expected


@pytest.mark.parametrize("graphs_on", ["emulated", pytest.param("cuda", marks=pytest.mark.cuda)])
@pytest.mark.parametrize("mode", SAMPLER_MODES)
def test_every_sampler_mode_trains_on_the_captured_path_without_a_host_sync(tmp_path, monkeypatch, mode, graphs_on):
    """A step in any sampling mode records into a graph and replays as the eager run. Emulated on
    the CPU: no operation reads a value back to the host or makes a data-dependent shape
    (``graph_emulation.HostSync``), every replay reads its tensors where the capture did, and the
    run is the eager run exactly. On CUDA: a real capture, the eager run's metrics and weights."""
    config = tiny_config(steps=4, **SAMPLER_MODES[mode])
    device = "cuda" if graphs_on == "cuda" else "cpu"
    eager = train(config, tmp_path / "eager", device=device, progress=False, capture=False)
    if graphs_on == "emulated":
        emulate_graphs(monkeypatch)
    with recording(2):
        captured = train(config, tmp_path / "captured", device=device, progress=False)
    _assert_same_metrics_and_weights(captured, eager, abs_tolerance=1e-4 if graphs_on == "cuda" else 0.0)


def test_the_sync_check_catches_a_value_read_to_the_host():
    """What the sampler-mode test relies on: ``.item()``, boolean masks and the multinomial draws
    that check their weights on the host are refused; multinomial's many draws with replacement,
    which read nothing back, are not."""
    values = torch.randn(8)
    weights = values.abs().expand(4, 8)
    for reads_back in (
        lambda: values[values > 0].sum(),
        lambda: values.max().item(),
        lambda: torch.multinomial(weights, 1, replacement=True),
        lambda: torch.multinomial(weights, 3, replacement=False),
    ):
        with pytest.raises(HostSync):
            emulated_capture(reads_back, (), torch.device("cpu"))
    emulated_capture(lambda: torch.multinomial(weights, 3, replacement=True), (), torch.device("cpu"))


def test_a_run_on_the_captured_path_stopped_and_resumed_is_the_uninterrupted_run(tmp_path, monkeypatch):
    """Resuming loads a capturable Adam's state before the warm-up runs, so ``replayable`` must
    put the loaded state back (not a fresh optimizer's zeros): emulated graphs on the CPU."""
    emulate_graphs(monkeypatch)
    config = tiny_config(steps=12)
    whole = train(config, tmp_path / "whole", progress=False)
    train(config.override(steps=5), tmp_path / "split", progress=False)  # evaluated, not a checkpoint step
    split = train(config, tmp_path / "split", resume=True, progress=False)
    _assert_same_metrics_and_weights(split, whole)


def test_the_captured_ensemble_path_on_the_cpu_keeps_its_addresses_and_members(tmp_path, monkeypatch):
    """A captured ensemble is stacked once, before its graphs are recorded, and keeps a stopped
    member in its update (seed 4 stops early on ICL accuracy 0.6 at step 10, seed 1 runs all 20):
    with emulated graphs, no replay reads a moved tensor, and both members end as the eager
    ensemble's do (to float rounding: the eager one restacks seed 1 alone)."""
    configs = [tiny_config(seed=seed, N=9, steps=20, stop_icl_acc=0.6) for seed in (4, 1)]
    eager = train_ensemble(configs, [tmp_path / "eager0", tmp_path / "eager1"], progress=False, capture=False)
    assert eager[0].status["last_step"] == 10 and eager[0].status["stopped_early"]
    assert eager[1].status["last_step"] == 20
    emulate_graphs(monkeypatch)
    captured = train_ensemble(configs, [tmp_path / "captured0", tmp_path / "captured1"], progress=False)
    for run, expected in zip(captured, eager):
        _assert_same_metrics_and_weights(run, expected, abs_tolerance=1e-5)


@pytest.mark.cuda
@pytest.mark.parametrize("optimizer_name", ["adam", "sgd"])
def test_a_captured_run_gives_the_eager_runs_metrics(tmp_path, optimizer_name):
    config = tiny_config(steps=200, optimizer=optimizer_name, lr=1e-2 if optimizer_name == "sgd" else 1e-3)
    with recording(0):
        eager = train(config, tmp_path / "eager", device="cuda", progress=False, capture=False)
    with recording(2):
        captured = train(config, tmp_path / "captured", device="cuda", progress=False)
    for eager_row, captured_row in zip(_rows(eager), _rows(captured), strict=True):
        assert eager_row.keys() == captured_row.keys()
        for key in eager_row:
            assert captured_row[key] == pytest.approx(eager_row[key], abs=1e-4), (eager_row["step"], key)


@pytest.mark.cuda
def test_a_captured_run_stopped_and_resumed_ends_where_an_uninterrupted_one_does(tmp_path):
    config = tiny_config(steps=200)
    with recording(6):  # three captured trainings
        whole = train(config, tmp_path / "whole", device="cuda", progress=False)
        train(config.override(steps=100), tmp_path / "split", device="cuda", progress=False)
        split = train(config, tmp_path / "split", device="cuda", resume=True, progress=False)
    for whole_row, split_row in zip(_rows(whole), _rows(split), strict=True):
        assert split_row == pytest.approx(whole_row, rel=0, abs=1e-6)
    for name, tensor in whole.state_dict(200).items():
        torch.testing.assert_close(split.state_dict(200)[name], tensor, rtol=0, atol=1e-6)


@pytest.mark.cuda
def test_a_captured_ensemble_gives_the_eager_ensembles_metrics(tmp_path):
    configs = [tiny_config(seed=seed, K=K, steps=200) for seed, K in [(0, 64), (1, 128), (2, 64)]]
    eager = train_ensemble(configs, [tmp_path / f"eager{i}" for i in range(3)], device="cuda", progress=False, capture=False)
    with recording(2):  # one update and one evaluation pass for all three
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
    configs = [tiny_config(steps=2, eval_size=16, seed=seed) for seed in range(members)]
    run_dirs = [tmp_path / f"run{index}" for index in range(members)]
    train_ensemble(configs, run_dirs, progress=False, capture=False)
    emulate_graphs(monkeypatch)
    capturable = []

    def recording_replayable(function, device, *, optimizer=None, **kwargs):
        if optimizer is not None:
            capturable.extend(group["capturable"] for group in optimizer.param_groups)
        return graphs.replayable(function, device, optimizer=optimizer, **kwargs)

    monkeypatch.setattr(trainer, "replayable", recording_replayable)
    longer = [config.override(steps=4) for config in configs]
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


@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_a_run_on_a_device_other_than_the_current_one_is_captured_and_trains(tmp_path):
    """Streams and graphs made on the current device (cuda:0) would not capture work on cuda:1:
    the graph would replay nothing. The captured run on cuda:1 must be the eager one."""
    config = tiny_config(steps=100)
    assert torch.cuda.current_device() == 0
    eager = train(config, tmp_path / "eager", device="cuda:1", progress=False, capture=False)
    with recording(2):
        captured = train(config, tmp_path / "captured", device="cuda:1", progress=False)
    for eager_row, captured_row in zip(_rows(eager), _rows(captured), strict=True):
        assert captured_row == pytest.approx(eager_row, abs=1e-4)


def read_back(values: torch.Tensor) -> None:
    values.sum().item()


@pytest.mark.cuda
def test_a_capture_that_fails_on_cuda_names_the_operation_and_gives_back_the_stream():
    """A real capture of an operation that needs the host: CaptureError names the line that called
    it, is raised from CUDA's errors, and the process goes on on the stream it was on."""
    values = torch.ones(4, device="cuda")
    stream = torch.cuda.current_stream()
    with pytest.raises(CaptureError) as failure:
        graphs.replayable(lambda: read_back(values), torch.device("cuda"))
    assert "at tests/test_gpu_engine.py:" in str(failure.value) and "in read_back `values.sum().item()`" in str(failure.value)
    assert failure.value.__cause__ is not None
    assert torch.cuda.current_stream() == stream
    assert torch.ones(2, device="cuda").sum().item() == 2
