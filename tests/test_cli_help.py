"""What ``--help`` shows and costs: every command's help reads as written, and a command's help
imports none of what training or probing needs (torch, TransformerLens), so it answers at once."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from icl_mech.cli import build_parser

HEAVY = ("torch", "transformer_lens")

#: Prints which of HEAVY are imported after ``icl-mech [command] --help`` (the command: argv[1:]).
HELP_THEN_LIST_IMPORTS = f"""
import json, sys
from icl_mech.cli import main
try:
    main([*sys.argv[1:], "--help"])
except SystemExit:
    pass
print(json.dumps([name for name in {HEAVY!r} if name in sys.modules]))
"""


def help_imports(command: str | None) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", HELP_THEN_LIST_IMPORTS, *([command] if command else [])],
        capture_output=True, text=True, check=True,
    )
    return json.loads(result.stdout.splitlines()[-1])


def command_names() -> list[str]:
    (commands,) = [action for action in build_parser()._actions if action.dest == "command"]
    return sorted(commands.choices)


#: Every command, and ``icl-mech --help`` itself (None), which builds every command's parser.
@pytest.mark.parametrize("command", [*command_names(), None])
def test_help_imports_neither_torch_nor_transformer_lens(command):
    assert help_imports(command) == []


def test_no_help_text_shows_an_argparse_percent_escape():
    parser = build_parser()
    (commands,) = [action for action in parser._actions if action.dest == "command"]
    assert "%%" not in parser.format_help()
    for name, subparser in commands.choices.items():
        assert "%%" not in subparser.format_help(), name


def test_probe_help_names_reddys_nested_logits_and_the_iwl_baselines():
    parser = build_parser()
    (commands,) = [action for action in parser._actions if action.dest == "command"]
    assert "nested logits" in " ".join(parser.format_help().split())  # the command list
    description = " ".join(commands.choices["probe"].format_help().split())
    assert "three nested logits" in description and "label prior" in description
