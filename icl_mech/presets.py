"""Named configs, as plain data: each preset lists the fields it changes from the defaults."""

from __future__ import annotations

from typing import Any

from icl_mech.config import RunConfig
from icl_mech.errors import ConfigError

#: The paper's minimal setting (Nguyen & Reddy 2024): N=100, K=20000, plain SGD at lr 0.01,
#: batch 128, weight decay 1e-10; an "epoch" is 60000 sequences = 469 steps, run for 1000 epochs.
PAPER: dict[str, dict[str, Any]] = {
    "task": {"K": 20000, "N": 100, "D": 63, "L": 2},
    "model": {"n_layers": 1, "n_heads": 1, "d_mlp": 512, "attn_scale": 1.0},
    "train": {
        "steps": 469_000,
        "batch_size": 128,
        "optimizer": "sgd",
        "lr": 0.01,
        "weight_decay": 1e-10,
        "weight_decay_attn": 1e-10,
        "eval_every": 469,
        "checkpoint_every": 4690,
    },
}

#: The same model at a 20-token context, where the memorization -> ICL transition sits at K in
#: the hundreds to low thousands and a run takes a minute on two CPU cores (README: measured K).
CPU: dict[str, dict[str, Any]] = {
    "task": {"K": 4096, "N": 20, "D": 63, "L": 2, "eval_size": 2000},
    "model": {"n_layers": 1, "n_heads": 1, "d_mlp": 512, "attn_scale": 1.0},
    "train": {
        "steps": 6000,
        "batch_size": 128,
        "optimizer": "adam",
        "lr": 1e-3,
        "eval_every": 100,
        "checkpoint_every": 250,
    },
}

#: The cpu preset under plain SGD at the paper's batch of 128, as the theory's gradient flow
#: assumes (docs/THEORY.md): lr 0.1, where K = infinity reaches ICL accuracy 0.95 at step 1500
#: (N = 20, seed 0); 0.03 takes 3700 steps, and at 0.3 and 1 training does not converge.
CPU_SGD: dict[str, dict[str, Any]] = {
    "task": CPU["task"],
    "model": CPU["model"],
    "train": {**CPU["train"], "optimizer": "sgd", "lr": 0.1},
}

#: The interleaved format (Reddy 2024; docs/INTERLEAVED.md): 8 (item, label) token pairs from
#: 2^14 classes, bursty (4 classes twice each), two attention-only layers with learned positions.
#: The induction circuit forms abruptly at step 600-1000 (seed 1, seed 0); attn_scale ~ sqrt(d_model).
CPU_INTERLEAVED: dict[str, dict[str, Any]] = {
    "task": {
        "format": "interleaved",
        "K": 16384,
        "N": 9,
        "D": 63,
        "L": 2,
        "B": 2,
        "p_bursty": 1.0,
        "epsilon": 0.1,
        "eval_size": 1000,
    },
    "model": {"n_layers": 2, "n_heads": 1, "attn_only": True, "attn_scale": 8.0},
    "train": {
        "steps": 3000,
        "batch_size": 128,
        "optimizer": "adam",
        "lr": 1e-3,
        "eval_every": 50,
        "checkpoint_every": 100,
    },
}

#: Reddy (2024, arXiv 2312.03002)'s own setting, as close as this model comes (docs/REDDY.md
#: gives each field's source and the differences): 8 (item, label) pairs, items from K = 512
#: classes with within-class noise 0.1, L = 32 labels read out by a softmax, bursty contexts
#: (B = 2: 4 classes twice each), two attention layers and an MLP readout; his optimizer: plain
#: SGD, lr 0.01, weight decay 1e-6, batch 128, about 10^5 iterations (docs/REDDY.md: sources).
REDDY2024: dict[str, dict[str, Any]] = {
    "task": {
        "format": "interleaved",
        "K": 512,
        "N": 9,
        "D": 63,
        "L": 32,
        "B": 2,
        "p_bursty": 1.0,
        "epsilon": 0.1,
        "zipf_alpha": 0.0,
        "distinct_labels": False,
        "eval_size": 2000,
        "reddy_eval_sets": True,
    },
    "model": {"n_layers": 2, "n_heads": 1, "attn_only": False, "d_mlp": 128, "attn_scale": 8.0},
    "train": {
        "steps": 100_000,
        "batch_size": 128,
        "optimizer": "sgd",
        "lr": 0.01,
        "weight_decay": 1e-6,
        "weight_decay_attn": 1e-6,
        "eval_every": 500,
        "checkpoint_every": 2500,
    },
}

#: Reddy's task at CPU scale: the cpu-interleaved model and schedule with his L = 32 labels under
#: the softmax and his evaluation sets (docs/REDDY.md: what it shows).
CPU_REDDY: dict[str, dict[str, Any]] = {
    "task": {**CPU_INTERLEAVED["task"], "L": 32, "distinct_labels": False, "reddy_eval_sets": True},
    "model": CPU_INTERLEAVED["model"],
    "train": CPU_INTERLEAVED["train"],
}

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "paper": PAPER,
    "cpu": CPU,
    "cpu-sgd": CPU_SGD,
    "cpu-interleaved": CPU_INTERLEAVED,
    "reddy2024": REDDY2024,
    "cpu-reddy": CPU_REDDY,
}


def preset(name: str) -> RunConfig:
    """The named preset as a validated RunConfig."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    return RunConfig.from_dict(PRESETS[name])
