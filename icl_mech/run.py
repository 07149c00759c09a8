"""A trained run as a time series: its config, metrics and the model at every checkpointed step.

``load_run(path)`` reads only config.json (and the metrics log's last byte, to warn of a line cut
short by a killed writer); metrics and checkpoints are read when asked for, so a
run with hundreds of checkpoints opens instantly and ``Run.models()`` walks them one at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from transformer_lens import HookedTransformer

from icl_mech import storage
from icl_mech.config import RunConfig
from icl_mech.errors import CheckpointError, RunError
from icl_mech.model import build_model
from icl_mech.sampler import Batch, ItemPool, eval_set_names, make_eval_sets, training_pool
from icl_mech.theory.residual_columns import RESIDUALS


class Run:
    """A run directory written by ``icl_mech.trainer`` (see ``icl_mech.storage`` for its layout)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.is_file():
            raise RunError(f"{self.path} is a file, not a run directory")
        if not self.path.is_dir():
            raise RunError(f"run directory {self.path} does not exist")
        if not (self.path / storage.CONFIG).is_file():
            raise RunError(f"{self.path} is not a run directory: it has no {storage.CONFIG}")
        #: The task, model and training configs the run was trained with.
        self.config = RunConfig.from_dict(storage.read_json(self.path / storage.CONFIG))
        storage.warn_if_cut(self.path / storage.METRICS)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, steps={len(self.steps)}, last={self.steps[-1] if self.steps else None})"

    @property
    def steps(self) -> list[int]:
        """Every checkpointed step, ascending."""
        return storage.checkpointed_steps(self.path)

    @property
    def metrics(self) -> pd.DataFrame:
        """One row per evaluated step: step, and loss and accuracy on every evaluation set
        (``{set}_loss``, ``{set}_acc``: train, icl, iwl, and Reddy's icl_swap, iwl_iid if made),
        then ``c1``, the MLP's residual over the training items, and ``iwl_residual``, the
        network's on the IWL set, where the run logged them (finite K, paired format:
        ``icl_mech.theory.residual``; runs trained before iwl_residual was logged have c1 only)."""
        rows = storage.read_json_lines(self.path / storage.METRICS)
        sets = eval_set_names(self.config.task)
        columns = ["step", *(f"{name}_{what}" for name in sets for what in ("loss", "acc"))]
        return pd.DataFrame(rows, columns=columns + [name for name in RESIDUALS if any(name in row for row in rows)])

    @property
    def status(self) -> dict[str, Any] | None:
        """How the run ended or where SIGTERM stopped it (its ``state``: ``storage.FINISHED`` or
        ``storage.INTERRUPTED``; last step, early stop, time), or None while it has neither."""
        path = self.path / storage.STATUS
        return storage.read_json(path) if path.exists() else None

    def state_dict(self, step: int, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        """The model's state dict at ``step``, straight from its safetensors file."""
        path = storage.checkpoint_path(self.path, step)
        if not path.is_file():  # one stat per load; the directory is listed only for the error
            steps = self.steps
            raise RunError(
                f"step {step} was never checkpointed in {self.path}; "
                f"saved steps are {steps[:5]}...{steps[-3:]}"
            )
        tensors, _ = storage.load_tensors(path, device)
        return tensors

    def _load_into(self, model: HookedTransformer, step: int) -> HookedTransformer:
        try:
            model.load_state_dict(self.state_dict(step, model.cfg.device))
        except RuntimeError as error:
            raise CheckpointError(
                f"checkpoint of step {step} in {self.path} does not fit the run's model: {error}"
            ) from None
        return model.eval()

    def model(self, step: int | None = None, device: str | torch.device = "cpu") -> HookedTransformer:
        """The HookedTransformer at ``step`` (default: the last one), in eval mode."""
        if step is None:
            if not self.steps:
                raise RunError(f"{self.path} has no checkpoints yet")
            step = self.steps[-1]
        return self._load_into(build_model(self.config, device), step)

    def models(
        self, steps: Iterable[int] | None = None, device: str | torch.device = "cpu"
    ) -> Iterator[tuple[int, HookedTransformer]]:
        """``(step, model)`` over ``steps`` (default: all), loading one checkpoint at a time.

        The same model object is yielded each time with the next step's weights loaded into it,
        so walking a long run costs one model's memory; ``copy.deepcopy`` one to keep it.
        """
        model = build_model(self.config, device)
        for step in self.steps if steps is None else steps:
            yield step, self._load_into(model, step)

    @cached_property
    def pool(self) -> ItemPool | None:
        """The K training items (regenerated from the seed; None when K is infinite)."""
        return training_pool(self.config.task, self.config.train.seed)

    def eval_sets(self, device: str | torch.device = "cpu") -> dict[str, Batch]:
        """The fixed evaluation sets the trainer used (regenerated from the seed)."""
        sets = make_eval_sets(self.config.task, self.pool, self.config.train.seed)
        return {name: batch.to(device) for name, batch in sets.items()}


def load_run(path: str | Path) -> Run:
    """Open the run directory at ``path``."""
    return Run(path)
