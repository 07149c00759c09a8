"""examples/reproduce_cpu.sh's PARTs, run with stand-ins for `icl-mech` and `python` that only
record their arguments: the `reddy` PART runs every command of docs/REDDY.md's code blocks, so that
it reproduces the page; the `claim3b` PART's figures read exactly the sweeps it runs."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import numpy as np

from icl_mech.analysis.figure_names import FIGURE_NAMES

ROOT = Path(__file__).resolve().parents[1]
#: The OUT directory the page's commands write into.
DOC_OUT = "/tmp/repro"
#: Flags that change how a command runs, not what it computes.
HOW = {"--workers": 1, "--quiet": 0, "--resume": 0}


def commands_of_part(part: str, out: Path, workers: int = 2) -> list[list[str]]:
    """Every `icl-mech` and `python` command line the PART runs into ``out``, in order, each led
    by its program's name."""
    bin_dir, log = out.parent / "bin", out.parent / "commands.log"
    bin_dir.mkdir()
    for name in ("icl-mech", "python"):
        stand_in = bin_dir / name
        stand_in.write_text(f'#!/usr/bin/env bash\nprintf "%q " "$(basename "$0")" "$@" >> {shlex.quote(str(log))}\n'
                            f'echo >> {shlex.quote(str(log))}\n')
        stand_in.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["bash", "examples/reproduce_cpu.sh", str(out), str(workers), part], cwd=ROOT, check=True, env=env,
                   capture_output=True)
    return [shlex.split(line) for line in log.read_text().splitlines()]


def _canonical(words: list[str]) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """(the command words before the first option, its options with their values, sorted)."""
    head = next((i for i, word in enumerate(words) if word.startswith("--")), len(words))
    options, rest = [], words[head:]
    while rest:
        option, rest = rest[0], rest[1:]
        value = () if not rest or rest[0].startswith("--") else (rest[0],)
        rest = rest[len(value):]
        if option not in HOW:
            options.append((option, *value))
    return tuple(words[:head]), tuple(sorted(options))


def doc_commands() -> set:
    """Every icl-mech or examples/ python command in docs/REDDY.md's bash blocks."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "docs" / "REDDY.md").read_text(), flags=re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    commands = [line.split("#")[0].split() for line in lines]
    return {_canonical(words) for words in commands if words and words[0] in ("icl-mech", "python")}


def test_the_reddy_part_runs_every_command_docs_reddy_shows_and_no_other_sweep(tmp_path):
    out = tmp_path / "repro"  # a fresh OUT: nothing in it is done yet
    commands = commands_of_part("reddy", out)
    doc = doc_commands()
    script = {_canonical([word.replace(str(out), DOC_OUT) for word in words]) for words in commands}
    assert doc - script == set()  # e.g. R1's SGD sweeps and R6's minimal model, once absent
    sweeps = {command for command in script if command[0] == ("icl-mech", "sweep")}
    assert sweeps - doc == set()


def option_values(command: list[str], option: str) -> list[str]:
    return [command[i + 1] for i, arg in enumerate(command) if arg == option]


def test_claim3b_part_runs_six_converged_sweeps_and_reads_them_all_into_threshold_scaling(tmp_path):
    commands = [words[1:] for words in commands_of_part("claim3b", tmp_path / "out", workers=3) if words[0] == "icl-mech"]
    sweeps = [c for c in commands if c[0] == "sweep"]
    converged = [c for c in sweeps if "--set" in c and "stop_plateau_steps=1000" in c]
    k_values: dict[str, list[int]] = {}
    for command in converged:
        n, k = option_values(command, "--grid")[:2]
        k_values.setdefault(n, []).extend(int(value) for value in k.removeprefix("K=").split(","))
        assert "seed=0..7" in option_values(command, "--grid") and option_values(command, "--workers") == ["3"]
        assert {"steps=30000", "stop_icl_acc=0.95"} <= set(option_values(command, "--set"))
    assert list(k_values) == ["N=10", "N=20", "N=40", "N=15", "N=30", "N=60"]
    grid_sizes = {"N=10": 5, "N=20": 4, "N=40": 5, "N=15": 4, "N=30": 4, "N=60": 7}
    for n, ks in k_values.items():  # half-octave grids (a factor of sqrt 2, rounded to a multiple of L = 2)
        assert len(ks) == len(set(ks)) == grid_sizes[n] and all(k % 2 == 0 for k in ks)
        assert np.allclose(np.diff(np.log2(sorted(ks))), 0.5, atol=0.01)
    (figures,) = [c for c in commands if c[0] == "figures"]
    assert option_values(figures, "--only") == ["threshold_scaling"] and "threshold_scaling" in FIGURE_NAMES
    assert set(option_values(figures, "--sweep")) == {option_values(c, "--out")[0] for c in sweeps}
    assert option_values(figures, "--out") == [str(tmp_path / "out" / "figures" / "claim3b")]
    assert sum(Path(d).name == "theory_memorization" for d in option_values(figures, "--sweep")) == 1
