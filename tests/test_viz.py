"""`icl-mech viz` writes a self-contained circuitsvis page that renders offline in a browser."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from icl_mech.cli import main
from probes_fixtures import memorizing_run  # noqa: F401  (fixture)

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium, installed on first use (the CI image runs as root)."""
    if not CHROMIUM.exists():
        subprocess.run("apt-get update -qq && apt-get install -y -qq chromium", shell=True, check=True,
                       env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    return CHROMIUM


def screenshot(chromium: Path, page: Path, png: Path, profile: Path) -> np.ndarray:
    subprocess.run(
        [str(chromium), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}",
         "--virtual-time-budget=5000", f"--screenshot={png}", "--window-size=1200,900", page.as_uri()],
        check=True, capture_output=True, timeout=120,
    )
    return np.asarray(Image.open(png).convert("L"), dtype=float)


@pytest.mark.slow
def test_viz_page_is_offline_and_renders_the_attention_heads(memorizing_run, chromium, tmp_path, capsys):
    page = tmp_path / "heads.html"
    assert main(["viz", "--run", str(memorizing_run.path), "--out", str(page)]) == 0
    text = page.read_text()
    assert not re.search(r"<script[^>]*\bsrc=", text)
    assert not re.search(r"""(import|from)\s*['"]https?://""", text)
    assert "QUERY #" in text and "L0H0" in text

    pixels = screenshot(chromium, page, tmp_path / "shot.png", tmp_path / "profile")
    empty = tmp_path / "empty.html"
    empty.write_text(page.read_text().split("<script", 1)[0] + "</body></html>")
    title_only = screenshot(chromium, empty, tmp_path / "empty.png", tmp_path / "profile2")
    # The rendered heads add many non-white pixels beyond the page title.
    assert (pixels < 250).mean() > 5 * (title_only < 250).mean() + 0.01
    assert pixels.std() > 10
