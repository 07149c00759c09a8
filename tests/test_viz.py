"""`icl-mech viz` writes a self-contained circuitsvis page that renders offline in a browser."""

from __future__ import annotations

import pytest

from browser import chromium, loads_nothing_from_the_network, screenshot  # noqa: F401  (fixture)
from icl_mech.cli import main
from probes_fixtures import memorizing_run  # noqa: F401  (fixture)


@pytest.mark.slow
def test_viz_page_is_offline_and_renders_the_attention_heads(memorizing_run, chromium, tmp_path, capsys):
    page = tmp_path / "heads.html"
    assert main(["viz", "--run", str(memorizing_run.path), "--out", str(page)]) == 0
    text = page.read_text()
    assert loads_nothing_from_the_network(text)
    assert "QUERY #" in text and "L0H0" in text

    pixels = screenshot(chromium, page, tmp_path / "shot.png", tmp_path / "profile")
    empty = tmp_path / "empty.html"
    empty.write_text(page.read_text().split("<script", 1)[0] + "</body></html>")
    title_only = screenshot(chromium, empty, tmp_path / "empty.png", tmp_path / "profile2")
    # The rendered heads add many non-white pixels beyond the page title.
    assert (pixels < 250).mean() > 5 * (title_only < 250).mean() + 0.01
    assert pixels.std() > 10
