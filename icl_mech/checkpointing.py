"""A run's saved state: the checkpoint of its weights at a step, and the resume state beside the
latest one (the optimizer's ``state_dict`` and the data generator's state), written from snapshots
and read back into the live objects.

Weights go to ``checkpoints/step_XXXXXXXX.safetensors``; the resume state to one ``resume.safetensors``
that names the step it belongs to, written after the checkpoint it points at, so a run killed
between the two resumes from the previous pair. Tensors are safetensors, everything else JSON in
their metadata (no pickle).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor
from transformer_lens import HookedTransformer

from icl_mech import storage
from icl_mech.errors import RunError
from icl_mech.writer import host_copy


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict, capturable: bool) -> None:
    """``optimizer.load_state_dict(state)``, keeping the optimizer's ``capturable``.

    ``load_state_dict`` takes every param-group key from the saved state, so an Adam run saved
    eagerly (``--eager``, or on the CPU) would resume uncapturable on CUDA, and its capture fail."""
    optimizer.load_state_dict(state)
    for group in optimizer.param_groups:
        if "capturable" in group:
            group["capturable"] = capturable


def checkpoint_write(
    run_dir: Path, step: int, model: HookedTransformer, optimizer_state: dict, data_rng: torch.Generator
) -> Callable[[], None]:
    """Snapshot the model at ``step``, the optimizer state (a ``state_dict``) and the data-RNG
    state needed to resume from it; returns the write of the snapshot, for the writer's thread:
    the model's checkpoint, then the resume state that points at it."""
    weights, weights_copied = host_copy(model.state_dict())
    optimizer_tensors: dict[str, Tensor] = {}
    plain: dict[str, dict] = {}
    for index, values in optimizer_state["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                optimizer_tensors[f"optimizer.{index}.{key}"] = value
            else:
                plain.setdefault(str(index), {})[key] = value
    resume_tensors, resume_copied = host_copy(optimizer_tensors)
    resume_tensors["data_rng"] = data_rng.get_state()
    meta = {"step": str(step)}
    resume_meta = {**meta, "optimizer": json.dumps({"param_groups": optimizer_state["param_groups"], "plain_state": plain})}

    def write() -> None:
        weights_copied()
        storage.save_tensors(storage.checkpoint_path(run_dir, step), weights, meta)
        resume_copied()
        storage.save_tensors(run_dir / storage.RESUME, resume_tensors, resume_meta)

    return write


def restore(run_dir: Path, model: HookedTransformer, data_rng: torch.Generator) -> tuple[int, dict]:
    """Load the latest resume state's checkpoint and data-RNG state into the live objects;
    returns its step and the optimizer ``state_dict`` saved with it."""
    tensors, meta = storage.load_tensors(run_dir / storage.RESUME)
    step = int(meta["step"])
    weights, _ = storage.load_tensors(storage.checkpoint_path(run_dir, step), model.cfg.device)
    model.load_state_dict(weights)
    saved = json.loads(meta["optimizer"])
    state: dict[int, dict] = {}
    for index, values in saved["plain_state"].items():
        state.setdefault(int(index), {}).update(values)
    for name, tensor in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = tensor
    try:
        data_rng.set_state(tensors["data_rng"])
    except RuntimeError:  # CPU and CUDA generators keep states of different sizes
        raise RunError(
            f"cannot resume {run_dir} on {data_rng.device}: it was trained on another kind of device "
            f"(its data-RNG state is not a {data_rng.device.type} generator's); resume it with the "
            "--device it was trained on"
        ) from None
    return step, {"state": state, "param_groups": saved["param_groups"]}
