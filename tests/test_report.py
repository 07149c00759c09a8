"""`icl-mech report`: one self-contained HTML page per run that renders offline, with a checkpoint
selector that really re-renders the attention pattern."""

from __future__ import annotations

import io
import shutil
from pathlib import Path


import pytest

from browser import chromium, loads_nothing_from_the_network, screenshot  # noqa: F401  (fixture)
from icl_mech import storage
from icl_mech.cli import main
from icl_mech.presets import preset
from icl_mech.run import load_run
from icl_mech.trainer import train
from probes.llc import SGLDSettings
from probes.plots import METRICS_PANELS, plot_columns
from probes.report import report_html

REFERENCE = Path(__file__).resolve().parents[1] / "checkpoints" / "reference"


@pytest.mark.slow
def test_report_of_a_shipped_run_is_offline_and_its_checkpoint_selector_redraws_the_pattern(chromium, tmp_path):
    run = load_run(REFERENCE / "icl")
    page = tmp_path / "report.html"
    assert main(["report", "--run", str(run.path), "--out", str(page), "--quiet", "--no-llc"]) == 0
    text = page.read_text()
    assert loads_nothing_from_the_network(text)
    assert text.count("data:image/png;base64,") == 3  # metrics, probes, cross-ablation
    for section in ("accuracy and loss over training", "over training</h2>", "Verdict:", '"stop_icl_acc": 0.95'):
        assert section in text
    assert f"step {run.steps[-1]}: " in text  # the independence verdict of the last checkpoint

    # The page down to the attention heatmap, opened at the first and at the last checkpoint.
    first, last = run.steps[0], run.steps[-1]
    shots = {
        step: screenshot(chromium, page, tmp_path / f"{step}.png", tmp_path / f"profile{step}", f"step={step}", 2000)
        for step in (first, last)
    }
    for pixels in shots.values():
        assert pixels.std() > 10 and (pixels < 200).mean() > 0.02
    # The selector redrew the heatmap: far more pixels change than the step number beside it
    # (a few hundred), and all of them below the plots above the attention section.
    changed = abs(shots[first] - shots[last]) > 30
    assert changed.mean() > 0.01 and not changed[:900].any()


def _run_with(tmp_path: Path, steps: list[int]) -> Path:
    """A copy of the shipped ICL run that keeps only ``steps``' checkpoints."""
    source, copy = REFERENCE / "icl", tmp_path / "run"
    (copy / storage.CHECKPOINTS).mkdir(parents=True)
    for name in (storage.CONFIG, storage.METRICS):
        shutil.copy(source / name, copy / name)
    for step in steps:
        shutil.copy(storage.checkpoint_path(source, step), storage.checkpoint_path(copy, step))
    return copy


def _fails_with_one_line(args: list[str], capsys, expected: str) -> None:
    assert main(["report", "--quiet", *args]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("icl-mech report: error:") and expected in error


def test_bad_runs_and_unwritable_outputs_fail_in_one_line_and_write_nothing(tmp_path, capsys):
    out = tmp_path / "report.html"
    _fails_with_one_line(["--run", str(tmp_path / "missing"), "--out", str(out)], capsys, "does not exist")
    _fails_with_one_line(["--run", str(_run_with(tmp_path / "empty", [])), "--out", str(out)], capsys, "no checkpoints")
    assert not out.exists()

    run = _run_with(tmp_path / "one", [0])
    _fails_with_one_line(["--run", str(run), "--out", str(tmp_path / "no" / "r.html")], capsys, "No such file")
    _fails_with_one_line(["--run", str(run), "--out", str(tmp_path)], capsys, "a directory is in its place")
    _fails_with_one_line(["--run", str(run), "--out", str(run / storage.CONFIG / "r.html")], capsys, "Not a directory")
    # /proc takes no new files, even from root.
    _fails_with_one_line(["--run", str(run), "--out", "/proc/report.html"], capsys, "cannot be written")
    assert not (tmp_path / "no").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["empty", "one"]

    assert main(["report", "--quiet", "--no-llc", "--run", str(run), "--out", str(out)]) == 0
    assert "step 0" in out.read_text() and "--no-llc" in out.read_text()


def test_report_of_an_attention_only_interleaved_run_shows_both_layers_and_skips_the_mlp(tmp_path):
    config = preset("cpu-interleaved").override(steps=2, eval_every=2, checkpoint_every=2, eval_size=32)
    tiny = SGLDSettings(chains=2, draws=4, burn_in=2, batch_size=8)
    page = report_html(train(config, tmp_path / "run", progress=False), progress=False, llc=tiny)
    assert "no MLP sub-circuit" in page and "Verdict:" not in page
    assert "chance (1/L) 0.500; <code>iwl</code>: label prior" in page  # the IWL baselines
    assert '"L1H0"' in page and page.count("data:image/png;base64,") == 4  # + LLC and its chain traces
    assert "Local learning coefficient over training" in page and "&quot;batch_size&quot;: 8" in page


def test_over_training_plots_of_a_run_with_one_checkpoint_draw_its_point():
    # The shipped transient run keeps one checkpoint: its probe tables have one row.
    run = load_run(REFERENCE / "transient")
    row = run.metrics[run.metrics.step == run.steps[0]]
    figure = plot_columns(row, METRICS_PANELS, "one checkpoint", io.BytesIO())
    lines = [line for axes in figure.axes for line in axes.get_lines() if len(line.get_xdata()) == 1]
    assert len(lines) == 6 and all(line.get_marker() not in ("None", "", None) for line in lines)
