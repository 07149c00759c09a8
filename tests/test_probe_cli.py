"""The probe commands: tables, JSON, files, and one clear line for every bad input."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from icl_mech import preset, train
from icl_mech.cli import main
from probes.circuits import BelowThresholdWarning
from probes.independence import independence_run
from probes_fixtures import memorizing_run  # noqa: F401  (fixture)


def test_bogus_circuit_is_rejected_with_the_choices(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["ablate", "--run", "anything", "--circuit", "bogus"])
    assert exit_info.value.code != 0
    assert "invalid choice: 'bogus'" in capsys.readouterr().err


def test_missing_run_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["ablate", "--run", str(tmp_path / "nope"), "--circuit", "mlp"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "does not exist" in err


def test_ablate_takes_an_unformed_interleaved_induction_head_above_layer_0_only_when_asked(tmp_path, capsys):
    # Two steps in, no head reaches 0.5; without --best-below-threshold ablate refuses
    # (tests/test_bad_inputs.py), with it the best head of layer 1 is taken and named with its score.
    config = preset("cpu-interleaved").override(steps=2, eval_every=2, checkpoint_every=2, eval_size=32)
    run = train(config, tmp_path / "run", progress=False)
    argv = ["ablate", "--run", str(run.path), "--circuit", "induction", "--json", "--quiet", "--best-below-threshold"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["sites"] == ["blocks.1.attn.hook_z[head 0]"]
    assert re.fullmatch(
        r"icl-mech ablate: warning: no head in layer\(s\) 1 reaches induction score 0.5 \(the best: head 1.0, "
        r"0\.\d\d\); taking it\n", captured.err,
    ), captured.err


def test_independence_run_of_an_unformed_interleaved_run_takes_the_best_head_with_a_warning(tmp_path):
    # What the report reads for every run, formed or not; the independence command refuses
    # such a run unless given --best-below-threshold (tests/test_bad_inputs.py).
    config = preset("cpu-interleaved").override(attn_only=False, d_mlp=16, steps=2, eval_every=2, checkpoint_every=2, eval_size=32)
    run = train(config, tmp_path / "run", progress=False)
    with pytest.warns(BelowThresholdWarning, match=r"no head in layer\(s\) 1 reaches induction score 0.5"):
        table = independence_run(run, progress=False)
    assert table.step.tolist() == run.steps


def test_probe_and_report_of_a_run_whose_log_was_cut_mid_line_say_so_once(tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(Path(__file__).resolve().parents[1] / "checkpoints" / "reference" / "memorize", run_dir)
    lines = (run_dir / "metrics.jsonl").read_text().count("\n")
    with (run_dir / "metrics.jsonl").open("a") as log:
        log.write('{"step": 1001, "train_lo')  # as a writer killed mid-line leaves it
    cut = f"{run_dir / 'metrics.jsonl'} line {lines + 1} of {lines + 1} is cut short"
    # probe reads only checkpoints, report the log too (twice): each says it once, and goes on
    for argv in (["probe", "--run", str(run_dir), "--quiet"], ["report", "--run", str(run_dir), "--out",
                 str(tmp_path / "report.html"), "--no-llc", "--quiet"]):
        assert main(argv) == 0
        assert capsys.readouterr().err.count(cut) == 1, argv


def test_bare_ablate_command_reports_a_missing_run():
    result = subprocess.run(
        [sys.executable, "-c", "from probes.ablate_command import entry; entry()",
         "--run", "/nonexistent/run", "--circuit", "induction"],
        capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "icl-mech ablate: error: run directory /nonexistent/run does not exist"


@pytest.mark.slow
def test_step_never_saved_names_the_saved_steps(memorizing_run, capsys):
    for command in (["ablate", "--circuit", "mlp"], ["probe"], ["independence"], ["viz", "--out", "x.html"]):
        assert main([*command, "--run", str(memorizing_run.path), "--step", "3"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "step 3 was never checkpointed" in err and "0, 1, 2, 4" in err


@pytest.mark.slow
def test_ablate_json_has_one_row_per_step_with_intact_and_ablated_accuracy(memorizing_run, capsys):
    assert main(["ablate", "--run", str(memorizing_run.path), "--circuit", "mlp", "--json", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sites"] == ["blocks.0.hook_mlp_out"]
    [row] = report["rows"]
    assert row["step"] == memorizing_run.steps[-1]
    assert row["iwl_acc"] > 0.9 and row["iwl_acc_ablated"] < 0.6


@pytest.mark.slow
def test_all_steps_writes_csv_and_png_over_training(memorizing_run, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--run", str(memorizing_run.path), "--all-steps", "--out", str(out), "--quiet"]
    assert main(["ablate", "--circuit", "induction", "--method", "resample", *args]) == 0
    assert main(["probe", *args]) == 0
    for stem in ("ablate-induction-resample", "probe"):
        table = pd.read_csv(out / f"{stem}.csv")
        assert table.step.tolist() == memorizing_run.steps
        assert (out / f"{stem}.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_independence_prints_the_matrix_and_a_verdict(memorizing_run, capsys):
    assert main(["independence", "--run", str(memorizing_run.path), "--quiet"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith("no mlp") for line in out)
    assert any(line.startswith("no memorization path") for line in out)
    assert out[-2].startswith(f"step {memorizing_run.steps[-1]}: ") and "interaction" in out[-2]
    assert out[-1].startswith(f"step {memorizing_run.steps[-1]}, paths into the MLP: ")


def test_a_named_step_is_the_one_probed_and_viz_writes_it(tmp_path, capsys):
    reference = str(Path(__file__).resolve().parents[1] / "checkpoints" / "reference" / "memorize")
    assert main(["ablate", "--run", reference, "--circuit", "mlp", "--step", "500", "--json", "--quiet"]) == 0
    [row] = json.loads(capsys.readouterr().out)["rows"]
    assert row["step"] == 500
    out = tmp_path / "heads.html"
    assert main(["viz", "--run", reference, "--step", "500", "--out", str(out)]) == 0
    assert out.stat().st_size > 100_000
