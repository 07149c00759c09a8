"""icl-mech: train transformers on in-context classification and take them apart over time.

The names below load on first use (PEP 562), so ``icl-mech train --help`` and config errors do
not pay for importing TransformerLens (about 10 s of CPU).
"""

from icl_mech.lazy_exports import lazy_exports

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

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
