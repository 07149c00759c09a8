"""Headless Chromium for the tests of the HTML pages (viz, report): Debian's chromium, installed
on first use, and a screenshot as grey levels."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium, installed on first use (the CI image runs as root)."""
    if not CHROMIUM.exists():
        subprocess.run("apt-get update -qq && apt-get install -y -qq chromium", shell=True, check=True,
                       env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    return CHROMIUM


def screenshot(
    chromium: Path, page: Path, png: Path, profile: Path, fragment: str = "", height: int = 900
) -> np.ndarray:
    """The top ``height`` pixels of ``page`` (opened at ``#fragment`` when given) rendered
    offline, 1200 wide, as grey levels 0-255."""
    subprocess.run(
        [str(chromium), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}",
         "--virtual-time-budget=5000", f"--screenshot={png}", f"--window-size=1200,{height}",
         page.as_uri() + (f"#{fragment}" if fragment else "")],
        check=True, capture_output=True, timeout=120,
    )
    return np.asarray(Image.open(png).convert("L"), dtype=float)


def loads_nothing_from_the_network(page_text: str) -> bool:
    """No ``<script src=...>`` and no ES-module import from an http(s) address (circuitsvis's
    ``str()`` imports from a CDN; ``.local_src`` does not)."""
    return not re.search(r"<script[^>]*\bsrc=", page_text) and not re.search(
        r"""(import|from)\s*['"]https?://""", page_text
    )
