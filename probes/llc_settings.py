"""What an LLC estimate is asked for (``probes.llc``): its SGLD settings, the weight restrictions
and the data it can take. Apart from the estimator, so that ``icl-mech llc``'s parser and the
report's settings need neither torch nor devinterp (``--help`` answers at once)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from icl_mech.errors import ConfigError

#: Weight restrictions: every trained weight, the attention blocks' W_Q W_K W_V W_O, the MLPs'.
RESTRICTIONS = ("full", "attn", "mlp")
#: Data the loss is taken on: fresh training sequences, the run's ICL set, its IWL set.
DATA = ("train", "icl", "iwl")


@dataclass(frozen=True)
class SGLDSettings:
    """What an LLC estimate depends on besides the model and the data. Absolute values move with
    every one of these, so a study fixes them and compares estimates made with the same settings
    (docs/LLC.md); every output saves them."""

    #: SGLD step size epsilon.
    lr: float = 3e-4
    #: Inverse temperature n*beta: the weight of the loss against the injected noise. Above about
    #: 300 the reference runs' estimates hardly change with it (docs/LLC.md, calibration).
    n_beta: float = 300.0
    #: Localization gamma: the pull back toward the checkpoint's weights w*, weak against n_beta
    #: times the loss's curvature so that it does not decide the estimate.
    localization: float = 1.0
    #: Independent chains; the estimate is their mean and the spread their standard deviation.
    chains: int = 4
    #: SGLD steps averaged, after the burn-in.
    draws: int = 200
    #: SGLD steps taken first and left out of the average.
    burn_in: int = 200
    #: Samples (sequences) per SGLD step and chain.
    batch_size: int = 128
    #: Seeds the data and the noise; the same at every checkpoint, so that differences between
    #: checkpoints are not differences of random draws.
    seed: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> SGLDSettings:
        return cls(**values)

    def __post_init__(self) -> None:
        for name in ("lr", "n_beta", "localization"):
            if not math.isfinite(getattr(self, name)):
                raise ConfigError(f"SGLD setting {name} must be a finite number, got {getattr(self, name)}")
        for name in ("lr", "n_beta", "chains", "draws", "batch_size"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"SGLD setting {name} must be positive, got {getattr(self, name)}")
        for name in ("localization", "burn_in"):
            if getattr(self, name) < 0:
                raise ConfigError(f"SGLD setting {name} must be >= 0, got {getattr(self, name)}")
