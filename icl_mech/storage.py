"""Files of a run directory: atomic writes, safetensors with clear errors, JSON and JSON lines.

Layout of a run directory::

    config.json                       RunConfig.to_dict()
    metrics.jsonl                     one JSON object per evaluated step
    checkpoints/step_00000123.safetensors   the model's state dict after 123 steps
    resume.safetensors                optimizer and data-RNG state at the latest checkpoint
    status.json                       written when the run ends: last step, early stop, time

No pickle anywhere. Every file except the append-only metrics log is written to a temporary file
beside it and renamed into place, so a crash leaves the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import safe_open
from torch import Tensor

from icl_mech.errors import CheckpointError, RunError

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
RESUME = "resume.safetensors"
STATUS = "status.json"


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return run_dir / CHECKPOINTS / f"step_{step:08d}.safetensors"


def checkpointed_steps(run_dir: Path) -> list[int]:
    """Steps with a checkpoint file, ascending (temporary files of an interrupted write ignored)."""
    names = (run_dir / CHECKPOINTS).glob("step_*.safetensors")
    return sorted(int(path.stem.removeprefix("step_")) for path in names)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a synced temporary file and a rename."""
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


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
    with open(path, "a") as handle:
        handle.write(json.dumps(value) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """Every complete line; a last line cut short by a crash is dropped."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
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
