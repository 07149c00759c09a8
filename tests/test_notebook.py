"""The examples/ notebook runs top to bottom in a real Jupyter kernel on the shipped runs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from icl_mech.run import load_run

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.slow
def test_probing_notebook_runs_and_prints_the_verdict():
    notebook = nbformat.read(EXAMPLES / "probing_a_run.ipynb", as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(EXAMPLES)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    text = "".join(output.get("text", "") for output in outputs)
    last = load_run(EXAMPLES.parent / "checkpoints" / "reference" / "icl").steps[-1]
    assert f"step {last}: " in text and "interaction" in text
    assert "step 6000: entangled (ablating the MLP moves ICL" in text
    html = "".join(output.get("data", {}).get("text/html", "") for output in outputs)
    assert "CircuitsVis.render" in html and "unpkg.com" not in html
