"""icl-mech: train transformers on in-context classification and take them apart over time."""

from icl_mech.config import ModelConfig, RunConfig, TaskConfig, TrainConfig
from icl_mech.errors import CheckpointError, ConfigError, IclMechError, RunError
from icl_mech.model import build_model, query_logits
from icl_mech.presets import preset
from icl_mech.run import Run, load_run
from icl_mech.train import train

__all__ = [
    "CheckpointError",
    "ConfigError",
    "IclMechError",
    "ModelConfig",
    "Run",
    "RunConfig",
    "RunError",
    "TaskConfig",
    "TrainConfig",
    "build_model",
    "load_run",
    "preset",
    "query_logits",
    "train",
]
