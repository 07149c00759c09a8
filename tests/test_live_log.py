"""Live logs: every metrics row, the config and the run's name reach TensorBoard and W&B (read back
with TensorBoard's own reader and from W&B's offline run file), each ensemble member as its own
run; W&B stays offline unless set up; a live log that fails warns once and changes nothing."""

from __future__ import annotations

import json
import re
import struct
import sys
import warnings

import numpy as np
import pytest
from google.protobuf.json_format import MessageToDict
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2
from wandb.proto import wandb_internal_pb2

from icl_mech import live_log, preset, storage, train, trainer
from icl_mech.cli import main
from icl_mech.live_log import flat_config, wandb_mode

TINY = {"K": 64, "steps": 30, "eval_every": 5, "checkpoint_every": 10, "eval_size": 64, "batch_size": 16, "d_mlp": 16}
TINY_ARGS = [f"--set={key}={value}" for key, value in TINY.items() if key != "steps"] + ["--quiet"]


@pytest.fixture(autouse=True)
def w_and_b_never_set_up(monkeypatch, tmp_path):
    """A home with no W&B login and no W&B variables: W&B must stay offline by itself."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_PROJECT", "NETRC"):
        monkeypatch.delenv(name, raising=False)


def tensorboard_run(run_dir):
    """``{metric: [(step, value), ...]}`` and the hyperparameters of a run's event files, as
    TensorBoard reads them."""
    events = EventAccumulator(str(run_dir))
    events.Reload()
    scalars = {tag: [(event.step, event.value) for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    start = plugin_data_pb2.HParamsPluginData.FromString(events.PluginTagToContent("hparams")["_hparams_/session_start_info"])
    return scalars, MessageToDict(start.session_start_info)["hparams"]


def wandb_records(run_dir):
    """Every record of the run's offline W&B run files (``.wandb``: a LevelDB-style log of
    ``wandb_internal_pb2.Record`` protos in 32 KiB blocks after a 7-byte W&B header), in order."""
    records = []
    for path in sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb")):
        data, position, pending = path.read_bytes(), 7, b""
        while position + 7 <= len(data):
            if (left := 32768 - position % 32768) < 7:
                position += left
                continue
            _, length, kind = struct.unpack("<IHB", data[position : position + 7])
            if kind == 0:  # zero padding to the end of the block
                position += left
                continue
            chunk, position = data[position + 7 : position + 7 + length], position + 7 + length
            pending = chunk if kind in (1, 2) else pending + chunk
            if kind in (1, 4):  # a whole record, or the last chunk of one
                records.append(wandb_internal_pb2.Record.FromString(pending))
    return records


def metrics_rows(run_dir):
    return storage.read_json_lines(run_dir / storage.METRICS)


@pytest.fixture(scope="module")
def without_live_log(tmp_path_factory):
    """The tiny run trained with no live log."""
    return train(preset("cpu").override(**TINY), tmp_path_factory.mktemp("without") / "run", progress=False)


@pytest.mark.slow
def test_a_sweep_logs_every_members_rows_config_and_name_to_tensorboard_and_offline_wandb(tmp_path):
    out = tmp_path / "sweep"
    args = ["sweep", "--grid", "seed=0,1", *TINY_ARGS, "--set=steps=30", "--ensemble", "2", "--out", str(out)]
    assert main([*args, "--log", "tensorboard", "--log", "wandb"]) == 0
    for name in ("seed0", "seed1"):  # two members of one ensemble, each its own run
        run_dir = out / name
        rows, config = metrics_rows(run_dir), preset("cpu").override(**TINY, seed=int(name[-1]))
        assert [row["step"] for row in rows] == [0, 1, 2, 4, 5, 8, 10, 15, 20, 25, 30]

        scalars, hparams = tensorboard_run(run_dir)
        assert set(scalars) == set(rows[0]) - {"step"}
        for metric, logged in scalars.items():
            assert logged == [(row["step"], np.float32(row[metric])) for row in rows]
        assert hparams == {key: value if isinstance(value, str) else float(value) for key, value in flat_config(config).items()}

        records = wandb_records(run_dir)
        (run,) = [record.run for record in records if record.HasField("run")]
        assert run.display_name == str(run_dir) and run.project == live_log.WANDB_PROJECT
        logged_config = {item.key: json.loads(item.value_json) for item in run.config.update if item.key != "_wandb"}
        assert logged_config == json.loads(json.dumps(config.to_dict()))  # as config.json holds it
        history = [
            {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            for record in records
            if record.HasField("history")
        ]
        assert [{key: row[key] for key in rows[0] if key != "step"} | {"_step": row["step"]} for row in rows] == [
            {key: value for key, value in logged.items() if not key.startswith("_") or key == "_step"} for logged in history
        ]
        assert not list((run_dir / "wandb").glob("run-*"))  # offline runs only


def test_a_run_that_crashed_and_resumed_shows_each_step_once_in_tensorboard(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    real_stop_reason = trainer.stop_reason

    def crash_after_step_25(history, train_cfg):  # logged past step 20's checkpoint, then gone
        if history[-1]["step"] == 25:
            raise MemoryError("the node ran out of memory")
        return real_stop_reason(history, train_cfg)

    monkeypatch.setattr(trainer, "stop_reason", crash_after_step_25)
    with pytest.raises(MemoryError):
        train(preset("cpu").override(**{**TINY, "steps": 60}), run_dir, progress=False, log=["tensorboard"])
    monkeypatch.undo()
    assert main(["train", "--resume", "--out", str(run_dir), "--quiet", "--log", "tensorboard"]) == 0
    scalars, _ = tensorboard_run(run_dir)  # steps 25 ... 60 logged twice, the first time purged
    assert scalars["icl_acc"] == [(row["step"], np.float32(row["icl_acc"])) for row in metrics_rows(run_dir)]


def fail_tensorboard_import(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as without the extra


def fail_tensorboard_writes(monkeypatch):
    """The disk fills up once the run is well under way: every event record from the 20th fails."""
    from tensorboard.summary.writer import record_writer

    real_write, calls = record_writer.RecordWriter.write, []

    def write(self, data):
        calls.append(1)
        if len(calls) >= 20:
            raise OSError(28, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(record_writer.RecordWriter, "write", write)


def fail_wandb_import(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)


@pytest.mark.parametrize(
    ("kind", "fail", "says"),
    [
        ("tensorboard", fail_tensorboard_import, r"ModuleNotFoundError: .*\(pip install 'icl-mech\[tensorboard\]'\)"),
        ("tensorboard", fail_tensorboard_writes, r"OSError: \[Errno 28\] No space left on device"),
        ("wandb", fail_wandb_import, r"ModuleNotFoundError: .*\(pip install 'icl-mech\[wandb\]'\)"),
    ],
    ids=["tensorboard not installed", "tensorboard disk full", "wandb not installed"],
)
# TensorBoard's own writer thread dies of the full disk with a traceback before the live log's
# next call raises it, warns and switches it off: expected here, not a stray thread
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_live_log_that_fails_warns_once_and_the_run_is_as_without_it(
    kind, fail, says, without_live_log, tmp_path, monkeypatch
):
    config, without = preset("cpu").override(**TINY), without_live_log
    fail(monkeypatch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = train(config, tmp_path / "with", progress=False, log=[kind])
    (warning,) = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert str(warning.message).startswith(f"{kind} live log switched off: ")
    assert re.search(says, str(warning.message)), warning.message
    assert metrics_rows(run.path) == metrics_rows(without.path) and run.steps == without.steps
    final = storage.checkpoint_path(run.path, TINY["steps"])
    assert final.read_bytes() == storage.checkpoint_path(without.path, TINY["steps"]).read_bytes()


def test_wandb_is_offline_unless_the_user_has_set_it_up(monkeypatch, tmp_path):
    assert wandb_mode() == "offline"  # no variables, no ~/.netrc
    (tmp_path / "home").mkdir()
    netrc = tmp_path / "home" / ".netrc"
    netrc.write_text("machine example.org login user password secret\n")
    netrc.chmod(0o600)  # as `wandb login` leaves it (Python refuses a readable netrc with passwords)
    assert wandb_mode() == "offline"  # a netrc, but no W&B login in it
    netrc.write_text("machine api.wandb.ai login user password 0123456789abcdef\n")  # what `wandb login` writes
    assert wandb_mode() is None
    netrc.unlink()
    monkeypatch.setenv("WANDB_API_KEY", "0123456789abcdef")
    assert wandb_mode() is None
    monkeypatch.delenv("WANDB_API_KEY")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode() is None  # W&B reads WANDB_MODE itself
