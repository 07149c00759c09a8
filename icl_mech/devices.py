"""Which torch device a ``--device`` string names; checked before any heavy import or training."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

from icl_mech.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``cpu`` or ``cuda[:N]``; a CUDA request without a CUDA device is a ConfigError."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; expected 'cpu' or 'cuda[:N]'") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device {name!r}; expected 'cpu' or 'cuda[:N]'")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but no CUDA device is available; use 'cpu'")
    return device


def current(device: torch.device) -> AbstractContextManager:
    """Make ``device`` the current CUDA device inside the block (nothing to do off CUDA).

    Streams, events and graph captures that name no device are made on the current one: training
    on ``cuda:1`` while ``cuda:0`` is current would record an empty graph and time its checkpoint
    copies on the wrong stream."""
    return torch.cuda.device(device) if device.type == "cuda" else nullcontext()
