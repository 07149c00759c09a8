"""Watching runs live: every evaluation's metrics row sent to TensorBoard or Weights & Biases as
training writes it, the run's config as hyperparameters, the run directory as the run's name.

``metrics.jsonl`` stays the record of a run; a live log is a view of it. So a live log that fails
(its package missing, a full disk, W&B refusing a run) warns once, is switched off and the run
goes on exactly as it would without it: nothing here can stop training or touch the run's own
files. Each run (each member of an ensemble) is its own TensorBoard run and its own W&B run:

- TensorBoard: event files in the run directory itself, so ``tensorboard --logdir SWEEP`` names
  every run by its directory. A resumed run rewrites the rows after its last checkpoint; the
  writer purges what the interrupted session logged from there on (``purge_step``), so a curve
  never shows a step twice.
- W&B: one run per run directory, its files in ``<run>/wandb/``, its id kept in
  ``<run>/wandb/icl-mech-run-id`` so a resumed run continues the same W&B run. Offline (nothing
  leaves the machine; ``wandb sync <run>/wandb/offline-run-*`` uploads later) unless the user has
  set W&B up: ``WANDB_MODE`` is honoured as set, and an API key (``WANDB_API_KEY``, or the
  ``~/.netrc`` entry ``wandb login`` writes) means online.
"""

from __future__ import annotations

import json
import netrc
import os
import secrets
import string
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from icl_mech.config import RunConfig
from icl_mech.errors import ConfigError

#: The live logs ``--log`` names, each an optional extra: ``pip install "icl-mech[tensorboard]"``.
LOGGERS = ("tensorboard", "wandb")
#: W&B project of the runs unless ``WANDB_PROJECT`` names another.
WANDB_PROJECT = "icl-mech"
#: The W&B run id of a run directory, written on its first W&B session (W&B's own folder).
WANDB_ID = Path("wandb") / "icl-mech-run-id"


def check_loggers(kinds: Sequence[str]) -> tuple[str, ...]:
    """``kinds`` as a tuple, each one of ``LOGGERS``, each once."""
    unknown = [kind for kind in kinds if kind not in LOGGERS]
    if unknown:
        raise ConfigError(f"unknown live log {unknown[0]!r}: expected one of {', '.join(LOGGERS)}")
    return tuple(dict.fromkeys(kinds))


class RunLog(Protocol):
    """One run's live log in one backend."""

    def log(self, row: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def flat_config(config: RunConfig) -> dict[str, bool | int | float | str]:
    """The config as ``section.field`` hyperparameters of the scalar types TensorBoard takes
    (None and lists as text, as the config JSON writes them)."""
    return {
        f"{section}.{name}": value if isinstance(value, (bool, int, float, str)) else json.dumps(value)
        for section, values in config.to_dict().items()
        for name, value in values.items()
    }


class TensorBoardLog:
    """A run's TensorBoard event file, in its run directory."""

    def __init__(self, config: RunConfig, run_dir: Path, start: int):
        from torch.utils.tensorboard import SummaryWriter  # ImportError without the tensorboard extra
        from torch.utils.tensorboard.summary import hparams

        self._hparams = hparams
        self.config = config
        self.writer = SummaryWriter(log_dir=str(run_dir), purge_step=start + 1 if start else None)
        self._described = False

    def log(self, row: dict[str, Any]) -> None:
        step = row["step"]
        metrics = {name: value for name, value in row.items() if name != "step"}
        if not self._described:  # the HParams tab: the config beside these metrics' last values
            for summary in self._hparams(flat_config(self.config), dict.fromkeys(metrics, 0.0)):
                self.writer.file_writer.add_summary(summary)
            self._described = True
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()  # TensorBoard is never behind metrics.jsonl (rows come at evaluations only)

    def close(self) -> None:
        self.writer.close()


def wandb_mode() -> str | None:
    """``"offline"`` unless the user has set W&B up (then None: W&B decides, as it would for
    their own scripts): ``WANDB_MODE`` set, ``WANDB_API_KEY`` set, or a ``netrc`` entry for the
    W&B host (``wandb login`` writes one). Reads no network."""
    if os.environ.get("WANDB_MODE") or os.environ.get("WANDB_API_KEY"):
        return None
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        logged_in = netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):  # none, or one Python refuses (malformed, or others may read it)
        logged_in = False  # the safe side: offline
    return None if logged_in else "offline"


def _wandb_id(run_dir: Path) -> str:
    """The run directory's W&B run id: the one saved there, or a new one, saved."""
    from icl_mech import storage  # here, not at the top: --help builds --log from this module

    path = run_dir / WANDB_ID
    if path.is_file():
        return path.read_text().strip()
    run_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
    path.parent.mkdir(parents=True, exist_ok=True)
    storage.atomic_write(path, f"{run_id}\n".encode())
    return run_id


class WandbLog:
    """A run's W&B run, named by its run directory, with its files in ``<run>/wandb/``. A resumed
    run continues the same W&B run; of the rows it logs again (those after the last checkpoint of
    a killed session) W&B keeps the steps it already has, which hold the same values (training
    resumes exactly)."""

    def __init__(self, config: RunConfig, run_dir: Path, start: int):
        import wandb  # ImportError without the wandb extra

        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", WANDB_PROJECT),
            name=str(run_dir),
            id=_wandb_id(run_dir),
            resume="allow",
            dir=str(run_dir),
            config=config.to_dict(),
            mode=wandb_mode(),
            reinit="create_new",  # an ensemble's members are runs of their own, live at once
            # console="off": the training process's stdout and stderr stay ours (one-line errors)
            settings=wandb.Settings(console="off"),
        )

    def log(self, row: dict[str, Any]) -> None:
        self.run.log({name: value for name, value in row.items() if name != "step"}, step=row["step"])

    def close(self) -> None:
        self.run.finish()


BACKENDS: dict[str, type[TensorBoardLog] | type[WandbLog]] = {"tensorboard": TensorBoardLog, "wandb": WandbLog}


class LiveLogs:
    """The live logs of runs trained together: for each kind, one ``RunLog`` per run.

    Every call into a backend is guarded: its first exception warns once (naming the kind and the
    error, and the extra to install for an ImportError) and switches that kind off for every run
    here; training never sees it.
    """

    def __init__(self, kinds: Sequence[str], runs: Sequence[tuple[RunConfig, Path, int]]):
        self._logs: dict[str, list[RunLog]] = {}
        for kind in check_loggers(kinds):
            self._logs[kind] = []
            try:
                for config, run_dir, start in runs:
                    self._logs[kind].append(BACKENDS[kind](config, run_dir, start))
            except Exception as error:
                self._switch_off(kind, error)

    def log(self, index: int, row: dict[str, Any]) -> None:
        """Send run ``index``'s metrics row to every live log still on."""
        for kind in list(self._logs):
            try:
                self._logs[kind][index].log(row)
            except Exception as error:
                self._switch_off(kind, error)

    def close(self) -> None:
        """Flush and close every live log still on."""
        for kind in list(self._logs):
            try:
                while self._logs[kind]:
                    self._logs[kind].pop().close()
            except Exception as error:
                self._switch_off(kind, error)
            self._logs.pop(kind, None)

    def _switch_off(self, kind: str, error: Exception) -> None:
        hint = f" (pip install 'icl-mech[{kind}]')" if isinstance(error, ImportError) else ""
        warnings.warn(
            f"{kind} live log switched off: {type(error).__name__}: {error}{hint}; training goes on, "
            "and metrics.jsonl keeps every row",
            RuntimeWarning,
            stacklevel=3,
        )
        for run_log in self._logs.pop(kind, []):
            with suppress(Exception):  # close what still closes
                run_log.close()


@contextmanager
def live_logs(kinds: Sequence[str], runs: Sequence[tuple[RunConfig, Path, int]]) -> Iterator[LiveLogs]:
    """``LiveLogs`` of ``runs`` (config, run directory, step training starts from), closed at the
    end however training ends."""
    logs = LiveLogs(kinds, runs)
    try:
        yield logs
    finally:
        logs.close()
