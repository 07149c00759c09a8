"""Which torch device a ``--device`` string names; checked before any heavy import or training."""

from __future__ import annotations

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
