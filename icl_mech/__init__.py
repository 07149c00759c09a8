"""icl-mech: train transformers on in-context classification and take them apart over time.

The names below load on first use (PEP 562), so ``icl-mech train --help`` and config errors do
not pay for importing TransformerLens (about 10 s of CPU).
"""

from importlib import import_module

_EXPORTS = {
    "CheckpointError": "icl_mech.errors",
    "ConfigError": "icl_mech.errors",
    "IclMechError": "icl_mech.errors",
    "RunError": "icl_mech.errors",
    "RunLockedError": "icl_mech.errors",
    "TrainingStopped": "icl_mech.errors",
    "WriteError": "icl_mech.errors",
    "ModelConfig": "icl_mech.config",
    "RunConfig": "icl_mech.config",
    "TaskConfig": "icl_mech.config",
    "TrainConfig": "icl_mech.config",
    "preset": "icl_mech.presets",
    "build_model": "icl_mech.model",
    "query_logits": "icl_mech.model",
    "Run": "icl_mech.run",
    "load_run": "icl_mech.run",
    "train": "icl_mech.trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'icl_mech' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return __all__
