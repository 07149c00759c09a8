"""Errors a user can cause with a bad input or a bad environment (a full disk, a run another
process is writing), each with a message naming the input or the file.

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


class RunLockedError(RunError):
    """Another process is writing the run (or sweep) directory; the message names it."""


class WriteError(IclMechError):
    """A file could not be written (disk full, permission, read-only file system); the message
    names the file and the cause. Whatever was complete before is kept."""


class CaptureError(IclMechError):
    """Recording the training step or the evaluation as a CUDA graph failed; the message says to
    rerun eagerly (``--eager``). Not the input's fault as such, but the user's way out is a flag."""


class TrainingStopped(BaseException):
    """Training was asked to stop (SIGTERM) and saved a checkpoint at the step it reached.

    Not an error of the input, and not an ``Exception``: code that records failures (a sweep
    worker, submitit's job runner) lets it through, so a stopped run is interrupted, not failed.
    The CLI prints its message (how to resume) and exits with 143 (128 + SIGTERM, as a shell does).
    """
