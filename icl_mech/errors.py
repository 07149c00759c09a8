"""Errors a user can cause with a bad input, each with a message naming the input.

The CLI prints these as one line (no traceback); anything else escaping is a bug.
"""


class IclMechError(Exception):
    """Base of every error that is the input's fault, not the code's."""


class ConfigError(IclMechError, ValueError):
    """A config value (task, model, training or preset) is invalid."""


class RunError(IclMechError):
    """A run directory is missing, is not a run, or does not hold what was asked for."""


class CheckpointError(IclMechError):
    """A checkpoint file is corrupt, truncated or does not fit the run's model."""


class OutputError(IclMechError):
    """An output file cannot be written where it was asked for (no such directory, a directory
    in its place, no permission)."""
