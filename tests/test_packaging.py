"""The package as an outside user gets it: the wheel installed away from the repository, and the
metadata (license, citation) that says who may use it and how to cite it.

CI installs the repository editable, so every other test imports the checkout itself; a module or
data file that the wheel leaves out would pass them all. Here the wheel is built, installed into
a fresh virtual environment and run from a directory outside the repository, with nothing
downloaded: its dependencies are the test environment's own.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
# The packages of [tool.setuptools.packages.find] and the files the build reads besides them.
PACKAGES = ("icl_mech", "probes")
BUILD_INPUTS = ("pyproject.toml", "README.md", "LICENSE", *PACKAGES)
# The CFF 1.2.0 schema, as cffconvert ships it (tests/data/README.md).
CFF_SCHEMA = Path(__file__).resolve().parent / "data" / "cff-1.2.0.schema.json"

# Printed by the venv's interpreter: where it imports the packages from, and its site-packages.
WHERE = """
import json, sysconfig, icl_mech, icl_mech.analysis, probes
print(json.dumps({"site": sysconfig.get_path("purelib"), "icl_mech": icl_mech.__file__,
                  "icl_mech.analysis": icl_mech.analysis.__file__, "probes": probes.__file__}))
"""


def run(*args: str | Path, cwd: Path) -> str:
    """Run a command to completion and return its stdout; a failure shows its stderr."""
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    result = subprocess.run(
        [str(arg) for arg in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"{' '.join(map(str, args))} failed:\n{result.stderr}"
    return result.stdout


def package_files(root: Path) -> set[str]:
    """Paths, relative to ``root``, of every file in the packages (compiled caches aside)."""
    return {
        str(path.relative_to(root))
        for package in PACKAGES
        for path in (root / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def build_wheel(tmp: Path) -> Path:
    """The wheel, built offline from a copy of the sources (an in-tree build would reuse a stale
    ``build/`` directory, which can hold modules that no longer exist)."""
    source = tmp / "source"
    source.mkdir()
    for name in BUILD_INPUTS:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, source / name)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
        "-q", "-w", tmp / "dist", source, cwd=tmp)
    (wheel,) = (tmp / "dist").glob("icl_mech-*.whl")
    return wheel


def venv_with(wheel: Path, tmp: Path) -> Path:
    """A fresh venv holding only the wheel, which finds its dependencies in the test
    environment's site directories. (``--system-site-packages`` would give it the base
    interpreter's instead, which lack them whenever the tests themselves run in a venv.) Those
    directories come after the venv's own, so the wheel's packages shadow the editable checkout
    that CI installs there."""
    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp)
    python = venv / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
        "-q", wheel, cwd=tmp)
    purelib = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp).strip())
    site_dirs = site.getsitepackages() + ([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])
    (purelib / "test_environment.pth").write_text(
        "import site; " + "; ".join(f"site.addsitedir({directory!r})" for directory in site_dirs) + "\n"
    )
    return venv


@pytest.mark.slow
def test_wheel_installed_outside_the_repository_trains_and_ablates(tmp_path):
    venv = venv_with(build_wheel(tmp_path), tmp_path)
    outside = tmp_path / "user"
    outside.mkdir()

    where = json.loads(run(venv / "bin" / "python", "-c", WHERE, cwd=outside))
    installed = Path(where.pop("site"))
    for module, file in where.items():
        assert Path(file).is_relative_to(installed), f"{module} imported from {file}, not the wheel"
    left_out = package_files(REPO) - package_files(installed)
    assert not left_out, f"in the repository's packages but not in the wheel: {sorted(left_out)}"
    assert list(installed.glob("icl_mech-*.dist-info/licenses/LICENSE"))

    run(venv / "bin" / "icl-mech", "train", "--preset", "cpu", "--K", "64", "--steps", "20",
        "--set", "d_mlp=16", "--set", "eval_size=200", "--set", "eval_every=10",
        "--set", "checkpoint_every=10", "--out", "run", "--quiet", cwd=outside)
    final = json.loads((outside / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    ablation = json.loads(run(venv / "bin" / "ablate", "--run", "run", "--circuit", "induction",
                              "--json", cwd=outside))
    (row,) = ablation["rows"]
    assert row["step"] == final["step"] == 20
    # The intact model is the checkpoint training evaluated last: the same accuracies (to less
    # than one sequence of the 200).
    assert row["icl_acc"] == pytest.approx(final["icl_acc"], abs=0.004)
    assert row["iwl_acc"] == pytest.approx(final["iwl_acc"], abs=0.004)
    assert 0 <= row["icl_acc_ablated"] <= 1 and 0 <= row["iwl_acc_ablated"] <= 1


def test_citation_file_is_valid_cff_and_names_this_version_license_and_repository():
    # safe_load reads the file as the schema's JSON types (years as integers); a date field,
    # if one is added, would need quoting, since YAML reads a bare date as a date object.
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    jsonschema.validate(citation, json.loads(CFF_SCHEMA.read_text()))
    metadata = importlib.metadata.metadata("icl-mech")
    assert citation["version"] == metadata["Version"]
    assert citation["license"] == metadata["License-Expression"]
    assert f"Source, {citation['repository-code']}" in metadata.get_all("Project-URL")
