"""examples/reproduce_cpu.sh's `reddy` PART runs what docs/REDDY.md shows: every command of the
page's code blocks, so that the PART reproduces the page (run with stand-ins for icl-mech and
python that only record their arguments)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The OUT directory the page's commands write into.
DOC_OUT = "/tmp/repro"
#: Flags that change how a command runs, not what it computes.
HOW = {"--workers": 1, "--quiet": 0, "--resume": 0}
RECORD = '#!/bin/sh\nprintf "%s\\n" "$(basename "$0") $*" >> "$RECORD"\n'


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


def script_commands(tmp_path: Path) -> set:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("icl-mech", "python"):
        (bin_dir / name).write_text(RECORD)
        (bin_dir / name).chmod(0o755)
    record, out = tmp_path / "record", tmp_path / "repro"  # a fresh OUT: nothing in it is done yet
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "RECORD": str(record)}
    subprocess.run(["bash", "examples/reproduce_cpu.sh", str(out), "2", "reddy"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    lines = record.read_text().replace(str(out), DOC_OUT).splitlines()
    return {_canonical(line.split()) for line in lines}


def test_the_reddy_part_runs_every_command_docs_reddy_shows_and_no_other_sweep(tmp_path):
    doc, script = doc_commands(), script_commands(tmp_path)
    assert doc - script == set()  # e.g. R1's SGD sweeps and R6's minimal model, once absent
    sweeps = {command for command in script if command[0] == ("icl-mech", "sweep")}
    assert sweeps - doc == set()
