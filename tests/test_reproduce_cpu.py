"""examples/reproduce_cpu.sh's PARTs, run with a stand-in `icl-mech` that only records its
arguments: which sweeps a PART runs and that its figures read exactly those."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import numpy as np

from icl_mech.analysis.figure_names import FIGURE_NAMES

SCRIPT = Path(__file__).parents[1] / "examples" / "reproduce_cpu.sh"


def commands_of_part(part: str, tmp_path: Path) -> list[list[str]]:
    """Every `icl-mech` command line the PART runs, in order."""
    bin_dir, log = tmp_path / "bin", tmp_path / "commands.log"
    bin_dir.mkdir()
    stand_in = bin_dir / "icl-mech"
    stand_in.write_text(f'#!/usr/bin/env bash\nprintf "%q " "$@" >> {shlex.quote(str(log))}\necho >> {shlex.quote(str(log))}\n')
    stand_in.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["bash", str(SCRIPT), str(tmp_path / "out"), "3", part], check=True, env=env, capture_output=True)
    return [shlex.split(line) for line in log.read_text().splitlines()]


def option_values(command: list[str], option: str) -> list[str]:
    return [command[i + 1] for i, arg in enumerate(command) if arg == option]


def test_claim3b_part_runs_six_converged_sweeps_and_reads_them_all_into_threshold_scaling(tmp_path):
    commands = commands_of_part("claim3b", tmp_path)
    sweeps = [c for c in commands if c[0] == "sweep"]
    converged = [c for c in sweeps if "--set" in c and "stop_plateau_steps=1000" in c]
    k_values: dict[str, list[int]] = {}
    for command in converged:
        n, k = option_values(command, "--grid")[:2]
        k_values.setdefault(n, []).extend(int(value) for value in k.removeprefix("K=").split(","))
        assert "seed=0..7" in option_values(command, "--grid") and option_values(command, "--workers") == ["3"]
        assert {"steps=30000", "stop_icl_acc=0.95"} <= set(option_values(command, "--set"))
    assert list(k_values) == ["N=10", "N=20", "N=40", "N=15", "N=30", "N=60"]
    for n, ks in k_values.items():  # half-octave grids (a factor of sqrt 2, rounded to a multiple of L = 2)
        assert len(ks) == (5 if n == "N=10" else 4) and all(k % 2 == 0 for k in ks)
        assert np.allclose(np.diff(np.log2(ks)), 0.5, atol=0.01)
    (figures,) = [c for c in commands if c[0] == "figures"]
    assert option_values(figures, "--only") == ["threshold_scaling"] and "threshold_scaling" in FIGURE_NAMES
    assert set(option_values(figures, "--sweep")) == {option_values(c, "--out")[0] for c in sweeps}
    assert option_values(figures, "--out") == [str(tmp_path / "out" / "figures" / "claim3b")]
    assert sum(Path(d).name == "theory_memorization" for d in option_values(figures, "--sweep")) == 1
