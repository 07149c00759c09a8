"""The examples/ notebook runs top to bottom in a real Jupyter kernel on the shipped runs, and
shows what it promises: the verdicts, the circuitsvis view, its plots as images, the run's report
and progress bars as widgets."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from icl_mech.run import load_run

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def code_cells() -> list[nbformat.NotebookNode]:
    """The notebook's code cells, executed once for this module's tests."""
    notebook = nbformat.read(EXAMPLES / "probing_a_run.ipynb", as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(EXAMPLES)}}).execute()
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


@pytest.mark.slow
def test_probing_notebook_runs_and_prints_the_verdict(code_cells):
    outputs = [output for cell in code_cells for output in cell.outputs]
    text = "".join(output.get("text", "") for output in outputs)
    last = load_run(EXAMPLES.parent / "checkpoints" / "reference" / "icl").steps[-1]
    assert f"step {last}: " in text and "interaction" in text
    assert "step 6000: entangled (ablating the MLP moves ICL" in text
    html = "".join(output.get("data", {}).get("text/html", "") for output in outputs)
    assert "CircuitsVis.render" in html and "unpkg.com" not in html
    assert "icl-mech report: icl" in html  # the run's report, shown inline


@pytest.mark.slow
def test_every_plot_cell_shows_an_image_and_progress_bars_are_widgets(code_cells):
    """A bare matplotlib Figure displays as ``<Figure size ...>`` text unless the inline
    backend registered its PNG formatter; tqdm falls back to text without ipywidgets."""
    plots = [cell for cell in code_cells if "plot" in cell.metadata.get("tags", [])]
    # Plot cells are tagged; a cell that draws a figure without the tag is caught here.
    assert len(plots) >= 2 and all(cell in plots for cell in code_cells if "Figure(" in cell.source)
    for cell in plots:
        assert any("image/png" in output.get("data", {}) for output in cell.outputs), cell.source
    outputs = [output for cell in code_cells for output in cell.outputs]
    # A figure's text/plain is "<Figure size ...>" beside its PNG; alone, the figure did not draw.
    text_only = [output.get("data", {}).get("text/plain", "") for output in outputs if "image/png" not in output.get("data", {})]
    assert not any("<Figure size" in text for text in text_only)
    assert not any("IProgress not found" in output.get("text", "") for output in outputs)
    assert any("application/vnd.jupyter.widget-view+json" in output.get("data", {}) for output in outputs)
