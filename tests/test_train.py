import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from icl_mech import CheckpointError, RunError, cli, load_run, storage, train
from icl_mech.model import full_query_logits
from icl_mech.readout import loss_and_accuracy
from icl_mech.trainer import checkpoint_steps, evaluate

from conftest import cpu_config


def icl_mech_cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "icl_mech", *args], capture_output=True, text=True, **kwargs
    )


def test_checkpoint_schedule_is_log_spaced_early_then_even():
    assert checkpoint_steps(1000, 250) == [0, 1, 2, 4, 8, 16, 32, 64, 128, 250, 500, 750, 1000]
    assert checkpoint_steps(90, 40) == [0, 1, 2, 4, 8, 16, 32, 40, 80, 90]


@pytest.mark.slow
def test_small_K_run_memorizes_without_learning_in_context(memorizing_run):
    final = memorizing_run.metrics.iloc[-1]
    assert final.iwl_acc >= 0.9
    assert final.icl_acc <= 0.65


@pytest.mark.slow
def test_large_K_run_acquires_in_context_learning(icl_run):
    metrics = icl_run.metrics
    assert metrics.icl_acc.iloc[0] <= 0.6
    assert metrics.icl_acc.iloc[-1] >= 0.9
    assert icl_run.status["stopped_early"]


@pytest.mark.slow
def test_run_directory_loads_with_config_steps_and_metrics(icl_run):
    run = load_run(icl_run.path)
    assert run.config == cpu_config(K=4096, steps=6000, stop_icl_acc=0.9, eval_every=50, checkpoint_every=250)
    assert run.steps[:5] == [0, 1, 2, 4, 8] and run.steps == sorted(run.steps)
    assert run.steps[-1] == run.metrics.step.iloc[-1] == run.status["last_step"]
    assert list(run.metrics.columns) == [
        "step", "train_loss", "train_acc", "icl_loss", "icl_acc", "iwl_loss", "iwl_acc", "c1", "iwl_residual"
    ]
    assert set(run.steps) <= set(run.metrics.step)
    assert not any(run.path.rglob("*.pt")) and not any(run.path.rglob("*.pkl"))


@pytest.mark.slow
def test_loaded_checkpoints_reproduce_the_logits_the_trainer_saw(icl_run):
    eval_sets = icl_run.eval_sets()
    metrics = icl_run.metrics.set_index("step")
    for step in (icl_run.steps[0], icl_run.steps[len(icl_run.steps) // 2], icl_run.steps[-1]):
        model = icl_run.model(step)
        assert not model.training
        for name in ("icl", "iwl"):
            loss, acc = evaluate(model, eval_sets[name])
            assert loss == pytest.approx(metrics.loc[step, f"{name}_loss"], rel=1e-6)
            assert acc == metrics.loc[step, f"{name}_acc"]
            with torch.no_grad():
                full = full_query_logits(model, eval_sets[name].tokens)
            full_loss, _ = loss_and_accuracy(full, eval_sets[name].targets)
            assert full_loss.item() == pytest.approx(loss, rel=1e-5)


@pytest.mark.slow
def test_models_iterates_checkpoints_lazily_in_order(memorizing_run):
    seen = [(step, model.blocks[0].mlp.W_in.sum().item()) for step, model in memorizing_run.models()]
    assert [step for step, _ in seen] == memorizing_run.steps
    assert len({weight for _, weight in seen}) == len(seen)  # each step's own weights


def run_metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_killed_run_resumes_to_identical_metrics_and_weights(tmp_path):
    args = ["train", "--K", "256", "--steps", "800", "--set", "checkpoint_every=100", "--set", "eval_every=25", "--quiet"]
    reference = icl_mech_cli(*args, "--out", str(tmp_path / "reference"))
    assert reference.returncode == 0, reference.stderr

    killed_dir = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "icl_mech", *args, "--out", str(killed_dir)])
    deadline = time.time() + 600
    while not (killed_dir / "checkpoints" / "step_00000200.safetensors").exists():
        assert time.time() < deadline and process.poll() is None, "run ended before it could be killed"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed_dir / "status.json").exists()

    resumed = icl_mech_cli(*args, "--out", str(killed_dir), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert run_metrics(killed_dir) == run_metrics(tmp_path / "reference")
    original, restarted = load_run(tmp_path / "reference"), load_run(killed_dir)
    assert original.steps == restarted.steps
    for name, tensor in original.state_dict(800).items():
        assert torch.equal(tensor, restarted.state_dict(800)[name]), name


@pytest.mark.slow
def test_resuming_a_finished_run_trains_only_the_added_steps(tmp_path):
    config = cpu_config(K=64, steps=40, eval_every=20, checkpoint_every=20)
    train(config, tmp_path / "run", progress=False)
    again = train(config, tmp_path / "run", resume=True, progress=False)
    assert again.status["last_step"] == 40
    assert again.metrics.step.tolist() == [0, 1, 2, 4, 8, 16, 20, 40]  # eval and checkpoint steps
    longer = train(config.override(steps=80), tmp_path / "run", resume=True, progress=False)
    assert longer.metrics.step.tolist() == [0, 1, 2, 4, 8, 16, 20, 40, 60, 80]


def test_existing_run_is_never_overwritten_without_resume(tmp_path):
    config = cpu_config(K=64, steps=4, eval_every=2, checkpoint_every=2)
    train(config, tmp_path / "run", progress=False)
    before = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    with pytest.raises(RunError, match="already holds a run; pass --resume"):
        train(config, tmp_path / "run", progress=False)
    with pytest.raises(RunError, match=r"saved config differs in \['task.K'\]"):
        train(config.override(K=128), tmp_path / "run", resume=True, progress=False)
    assert before == {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}


def test_truncated_checkpoint_is_refused_with_a_clear_message(tmp_path):
    train(cpu_config(K=64, steps=4, eval_every=2, checkpoint_every=2), tmp_path / "run", progress=False)
    path = tmp_path / "run" / "checkpoints" / "step_00000004.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="step_00000004.safetensors is corrupt or truncated"):
        load_run(tmp_path / "run").model(4)
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_run(tmp_path / "run").model(4)


def test_a_metrics_log_cut_mid_line_is_read_to_its_last_whole_line_with_a_warning_naming_the_line(tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(Path(__file__).resolve().parents[1] / "checkpoints" / "reference" / "memorize", run_dir)
    log = run_dir / storage.METRICS
    whole = load_run(run_dir).metrics
    lines = log.read_text().count("\n")
    log.write_text(log.read_text() + '{"step": 1001, "train_lo')  # as a writer killed mid-line leaves it
    with pytest.warns(storage.CutLineWarning, match=rf"{re.escape(str(log))} line {lines + 1} of {lines + 1} is cut short"):
        assert load_run(run_dir).metrics.equals(whole)
    log.write_text(log.read_text() + "\n")  # a newline after it: no cut leaves that, so it is damage
    with pytest.raises(RunError, match=f"line {lines + 1} of {lines + 1} is not valid JSON"):
        load_run(run_dir).metrics


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--K", "1"], "K must be an integer >= 2"),
        (["--K", "63"], "K=63 must be a multiple of L=2"),
        (["--N", "1"], "N must be >= 2"),
        (["--preset", "huge"], "invalid choice: 'huge'"),
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--device", "cuda:7"] if not torch.cuda.is_available() else ["--set", "lr=-1"], "cuda:7|lr must be > 0"),
        (["--set", "optimizer=lbfgs"], "optimizer must be one of"),
        (["--set", "colour=red"], "unknown config field 'colour'"),
    ],
)
def test_bad_train_arguments_give_one_clear_error_and_no_run_directory(tmp_path, args, message):
    out = tmp_path / "run"
    result = icl_mech_cli("train", *args, "--steps", "2", "--out", str(out), "--quiet")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and re.search(message, errors[0]), result.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("flags", "omp", "expected"), [([], "1", 1), (["--threads", "3"], "1", 3), (["--threads", "3"], None, 3)]
)
def test_train_runs_on_threads_else_omp_num_threads(tmp_path, monkeypatch, flags, omp, expected):
    """OMP_NUM_THREADS set after torch started (as here) would be ignored by torch itself."""
    seen = []

    def train_stub(*args, **kwargs):  # what training would run on, then stop before any work
        seen.append(torch.get_num_threads())
        raise RunError("stub")

    monkeypatch.setattr("icl_mech.trainer.train", train_stub)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    if omp is not None:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    before = torch.get_num_threads()
    try:
        cli.main(["train", "--K", "64", "--steps", "2", *flags, "--out", str(tmp_path / "run"), "--quiet"])
    finally:
        torch.set_num_threads(before)
    assert seen == [expected]


def test_missing_or_non_run_directories_give_one_clear_error(tmp_path):
    for preset in ([], ["--preset", "cpu"]):  # with a preset, a typo must not start a new run either
        missing = icl_mech_cli("train", *preset, "--resume", "--out", str(tmp_path / "nothing"))
        assert missing.returncode == 2 and "nothing holds no run (no config.json)" in missing.stderr
        assert "Traceback" not in missing.stderr and not (tmp_path / "nothing").exists()
    with pytest.raises(RunError, match="does not exist"):
        load_run(tmp_path / "nothing")
    (tmp_path / "stuff").mkdir()
    with pytest.raises(RunError, match="not a run directory"):
        load_run(tmp_path / "stuff")
    train(cpu_config(K=64, steps=2, eval_every=1, checkpoint_every=2), tmp_path / "run", progress=False)
    with pytest.raises(RunError, match="step 3 was never checkpointed"):
        load_run(tmp_path / "run").model(3)


def test_a_run_the_stopping_rule_ended_goes_on_when_a_resume_turns_the_rule_off(tmp_path, capsys):
    """docs/SWEEPS.md: the stop fields may change on resume. A run whose new rule no longer ends it
    continues (can a stopped memorizer still turn to ICL?); with the rule unchanged it stays ended."""
    out = str(tmp_path / "run")
    common = ["--K", "64", "--set", "eval_every=2", "--set", "checkpoint_every=4", "--set", "eval_size=64", "--quiet"]
    assert cli.main(["train", *common, "--steps", "8", "--set", "stop_icl_acc=0.01", "--out", out]) == 0
    stopped = load_run(out)
    assert stopped.status["stop_reason"] == "icl" and stopped.status["last_step"] == 0
    assert cli.main(["train", "--resume", "--out", out, "--quiet"]) == 0  # same rule: nothing to train
    assert load_run(out).status["last_step"] == 0
    assert cli.main(["train", "--resume", "--out", out, "--quiet", "--set", "stop_icl_acc=none", "--set", "steps=12"]) == 0
    resumed = load_run(out)
    assert resumed.status["last_step"] == 12 and not resumed.status["stopped_early"]
    assert resumed.metrics.step.tolist() == [0, 1, 2, 4, 6, 8, 10, 12]
    assert "step 12" in capsys.readouterr().out
