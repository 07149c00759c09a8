"""Files of a run directory: atomic writes, safetensors with clear errors, JSON and JSON lines.

Layout of a run directory::

    config.json                       RunConfig.to_dict()
    metrics.jsonl                     one JSON object per evaluated step
    checkpoints/step_00000123.safetensors   the model's state dict after 123 steps
    resume.safetensors                optimizer and data-RNG state at the latest checkpoint
    status.json                       written when the run ends or SIGTERM stops it: its state
                                      (finished or interrupted), last step, early stop, time
    .lock                             locked by the process training the run (icl_mech.lock)
    events.out.tfevents.*, wandb/     live logs, with --log (icl_mech.live_log)
    sweep_error.txt, slurm_jobs.jsonl written by a sweep (icl_mech.sweep, icl_mech.sweep_slurm)

No pickle anywhere. Every file except the append-only metrics log is written to a temporary file
beside it and renamed into place, so a crash leaves the old file or the new one, never half of one.
The metrics log is appended one line at a time, so a writer killed mid-line can leave its last
line cut short: reading it warns naming the file and line and skips that line (a resume rewrites
the log without it); a damaged line anywhere else is an error naming it (``read_json_lines``).
A write that fails (disk full, permission lost, read-only file system) raises ``WriteError`` naming
the file and the cause, and leaves the file as it was.
"""

from __future__ import annotations

import errno
import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import safe_open
from torch import Tensor

from icl_mech.errors import CheckpointError, RunError, WriteError

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
RESUME = "resume.safetensors"
STATUS = "status.json"
#: status.json's "state": the run ended (it reached its steps, or its stopping rule ended it), or
#: SIGTERM stopped it where it stood and it resumes from there. A status written before runs had
#: a state is a finished run's.
FINISHED, INTERRUPTED = "finished", "interrupted"


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return run_dir / CHECKPOINTS / f"step_{step:08d}.safetensors"


def checkpointed_steps(run_dir: Path) -> list[int]:
    """Steps with a checkpoint file, ascending (temporary files of an interrupted write ignored)."""
    names = (run_dir / CHECKPOINTS).glob("step_*.safetensors")
    return sorted(int(path.stem.removeprefix("step_")) for path in names)


@contextmanager
def naming_write_failures(path: Path) -> Iterator[None]:
    """Turn an OSError (disk full, permission, read-only file system) into a WriteError naming
    ``path`` and the cause, for the CLI to print as one line."""
    try:
        yield
    except OSError as error:
        code = errno.errorcode.get(error.errno, "") if error.errno else ""
        cause = f"{error.strerror} ({code})" if error.strerror else str(error)
        raise WriteError(f"cannot write {path}: {cause}") from None


def blocking_file(path: Path) -> Path | None:
    """The file that keeps ``path`` from being a directory: ``path`` itself, or the nearest path
    above it that exists, when that is not a directory; None when ``path`` is or can be one."""
    absolute = path.absolute()
    existing = next(candidate for candidate in (absolute, *absolute.parents) if candidate.exists())
    return None if existing.is_dir() else existing


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a synced temporary file and a rename; if that fails,
    the temporary file is removed and ``path`` keeps its previous content."""
    temporary = path.with_name(f".{path.name}.tmp")
    with naming_write_failures(path):
        try:
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except OSError:
            with suppress(OSError):
                temporary.unlink(missing_ok=True)
            raise


def write_json(path: Path, value: Any) -> None:
    atomic_write(path, (json.dumps(value, indent=2) + "\n").encode())


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunError(f"{path} is missing: is {path.parent} a run directory?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunError(f"{path} is not valid JSON ({error})") from None


def append_json_line(path: Path, value: dict[str, Any]) -> None:
    """Append one line; if the write fails part way, the file is cut back to its previous end, so
    the log never holds half a line (a reader, or a resume, would stop at it)."""
    data = memoryview((json.dumps(value) + "\n").encode())
    with naming_write_failures(path):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            end = os.lseek(fd, 0, os.SEEK_END)
            try:
                while data:
                    data = data[os.write(fd, data) :]
                os.fsync(fd)
            except OSError:
                with suppress(OSError):
                    os.ftruncate(fd, end)
                raise
        finally:
            os.close(fd)


def ended_status(run_dir: Path) -> dict[str, Any] | None:
    """The run's status.json if the run has ended; None while it has none (not started, training,
    killed) or was interrupted by SIGTERM."""
    path = run_dir / STATUS
    if not path.exists():
        return None
    status = read_json(path)
    return None if status.get("state", FINISHED) == INTERRUPTED else status


class CutLineWarning(UserWarning):
    """A JSON-lines file ends in a line cut short, which reading skips."""


def warn_if_cut(path: Path) -> None:
    """``read_json_lines``'s ``CutLineWarning`` when the file at ``path`` ends in a line cut short,
    reading only its last byte otherwise: opening a run says so even where nothing reads its log."""
    if path.exists() and path.stat().st_size:
        with path.open("rb") as file:
            file.seek(-1, os.SEEK_END)
            if file.read(1) != b"\n":
                read_json_lines(path)


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line's JSON object.

    A last line cut short is what a writer killed mid-line leaves (``append_json_line`` cuts a
    failed write back, but SIGKILL or a power cut can stop it first): it is not JSON and has no
    newline. It is skipped with a ``CutLineWarning`` naming the file and line, since the rows before
    it are whole and a resumed run rewrites the log without it. Any other damage (a line before
    the last, or a last line that ends in a newline, which no cut leaves) is a ``RunError`` naming
    the line, never a silent end of the log.
    """
    if not path.exists():
        return []
    try:
        text = path.read_text()
    except UnicodeDecodeError as error:
        raise RunError(f"{path} is not a text file of JSON lines ({error})") from None
    lines = text.splitlines()
    rows = []
    for number, line in enumerate(lines, start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            if number == len(lines) and not text.endswith("\n"):
                warnings.warn(
                    f"{path} line {number} of {number} is cut short (a writer killed mid-line); "
                    f"skipped, reading the {number - 1} whole line(s) before it",
                    CutLineWarning,  # attributed here: a log read twice is warned about once
                )
                break
            raise RunError(f"{path} line {number} of {len(lines)} is not valid JSON ({error})") from None
        if not isinstance(row, dict):
            raise RunError(f"{path} line {number} is {row!r}, not a JSON object")
        rows.append(row)
    return rows


def save_tensors(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str]) -> None:
    """Atomically write a safetensors file (tensors made contiguous, moved to CPU)."""
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()}
    atomic_write(path, safetensors.torch.save(tensors, metadata=metadata))


def load_tensors(path: Path, device: str | torch.device = "cpu") -> tuple[dict[str, Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file; a missing, truncated or corrupt file raises
    CheckpointError naming it."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as handle:
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
            return tensors, handle.metadata() or {}
    except Exception as error:  # safetensors raises its own error types for every kind of damage
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({error}); "
            "delete it to resume from the checkpoint before it"
        ) from None
