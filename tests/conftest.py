"""Shared fixtures: small real runs trained once per test session; the ``cuda`` and ``sigterm``
markers (pyproject.toml)."""

from __future__ import annotations

import signal

import pytest
import torch

from icl_mech import Run, preset, train

# CI has two cores; torch's default already uses them, tests keep it explicit.
torch.set_num_threads(2)


class StoppedBySigterm(KeyboardInterrupt):
    """pytest was sent SIGTERM (``timeout``, a batch system): the session ends where it is, with
    its summary, as on Ctrl-C; it is not a failure of the test that happened to be running."""


def _stop_the_session(signum: int, frame: object) -> None:
    raise StoppedBySigterm("pytest was sent SIGTERM (a timeout?): the session stops here, later tests did not run")


#: ``signal.signal`` itself, for the tests whose subject is SIGTERM.
_install_handler = signal.signal


def _sigterm_kept(signum: int, handler: object) -> object:
    """``signal.signal`` with SIGTERM left as it is (its current handler is returned)."""
    if signum == signal.SIGTERM:
        return signal.getsignal(signal.SIGTERM)
    return _install_handler(signum, handler)


def pytest_configure(config: pytest.Config) -> None:
    """``-m cuda`` (on a GPU machine) runs the CUDA tests even where a test module of the CPU suite
    cannot be imported (a package only it needs is not installed there): that module's error is
    reported, and the CUDA tests run instead of none."""
    if config.option.markexpr.strip() == "cuda":
        config.option.continue_on_collection_errors = True


def pytest_sessionstart(session: pytest.Session) -> None:
    """Training and sweeps catch SIGTERM to save and stop (``icl_mech.trainer``,
    ``icl_mech.sweep_stop``); under pytest that would turn a ``timeout`` into one failed test and
    a session that goes on. So in this process SIGTERM stays pytest's (``StoppedBySigterm``) from
    here on, session fixtures included, except in tests marked ``sigterm``, whose subject it is
    (``sigterm_handlers_installed``). Subprocesses keep their own handlers."""
    _install_handler(signal.SIGTERM, _stop_the_session)
    signal.signal = _sigterm_kept


def pytest_sessionfinish(session: pytest.Session) -> None:
    signal.signal = _install_handler


@pytest.fixture(autouse=True)
def sigterm_handlers_installed(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a test marked ``sigterm``, training installs its SIGTERM handler as outside pytest."""
    if request.node.get_closest_marker("sigterm"):
        monkeypatch.setattr(signal, "signal", _install_handler)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` skip, saying why, where there is no CUDA device."""
    if torch.cuda.is_available():
        return
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))


def cpu_config(**overrides):
    """The cpu preset with test-sized overrides."""
    return preset("cpu").override(**overrides)


@pytest.fixture(scope="session")
def icl_run(tmp_path_factory) -> Run:
    """A cpu-preset run at large K that acquires ICL (stops once ICL accuracy passes 0.9). Seed 0
    gets there at step 1750 on two threads and 3300 on one (float sums ordered otherwise), so the
    budget is the preset's 6000 steps: the test waits for the run, not for a lucky rounding."""
    config = cpu_config(K=4096, steps=6000, stop_icl_acc=0.9, eval_every=50, checkpoint_every=250)
    return train(config, tmp_path_factory.mktemp("runs") / "icl", progress=False)


@pytest.fixture(scope="session")
def memorizing_run(tmp_path_factory) -> Run:
    """A cpu-preset run at small K that memorizes its items."""
    config = cpu_config(K=64, steps=300, eval_every=50, checkpoint_every=100)
    return train(config, tmp_path_factory.mktemp("runs") / "memorize", progress=False)
