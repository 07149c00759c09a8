"""``python -m icl_mech`` is the ``icl-mech`` command."""

from icl_mech.cli import entry

entry()
