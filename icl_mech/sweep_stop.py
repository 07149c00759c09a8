"""How a local sweep stops on SIGTERM (``icl_mech.sweep``): every process that trains its units
records the signal instead of dying, so that each ensemble saves where it stands and no process
is left behind.

Training handles SIGTERM itself (``icl_mech.trainer.train_members``: the current step finishes,
every member is saved, ``TrainingStopped`` is raised). Outside training (a worker starting up,
opening its runs, between units, sending a result) the signal is recorded here, and resent every
second until the unit in training has stopped at it.

A worker whose sweep process died (``kill -9``, the out-of-memory killer) stops too: it notices
that its parent is gone, stops its unit the same way (saved where it stands) and exits, so no
worker outlives its sweep.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm

#: SIGTERMs received outside training by a process that trains a local sweep's units (a worker,
#: or the sweep process itself with one worker); ``train_unit`` starts no unit after one.
stop_received: list[int] = []
#: Set in a worker once its sweep process is gone: nothing will send it work or read its results.
orphaned = threading.Event()
#: How often a worker checks that its sweep process is alive, in seconds.
PARENT_CHECK_S = 0.5


def _record_sigterm(signum: int, frame: object) -> None:
    if orphaned.is_set():  # outside training (the trainer's handler replaces this one), nothing is unsaved
        os._exit(128 + signum)
    stop_received.append(signum)


def _exit_with_parent(parent: int) -> None:
    """A worker's watchdog thread: once ``parent`` (the sweep process) is gone, SIGTERM this
    worker every second, so that training saves where it stands and stops, and the worker, back
    outside training, exits (``_record_sigterm``)."""
    while os.getppid() == parent:
        threading.Event().wait(PARENT_CHECK_S)
    orphaned.set()
    while True:
        signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)
        threading.Event().wait(1.0)


def start_worker(parent: int) -> None:
    """Initializer of a local sweep's worker process, ``parent`` being the sweep process: from here
    on, SIGTERM outside training (between units, while a unit opens its runs or sends its result)
    is recorded instead of ending the process, which would break the pool. The sweep process
    resends SIGTERM until the worker's unit has ended, and training stops at it
    (``icl_mech.trainer.train_members``). The worker started with SIGTERM blocked
    (``sigterm_blocked``), so one sent while it imported waits here. A watchdog thread ends the
    worker once the sweep process is gone (``_exit_with_parent``).

    Its (silent) progress bars lock a thread lock, not tqdm's default multiprocessing lock: a
    named semaphore that a worker killed outright leaves behind, for the resource tracker to
    warn about when the sweep ends."""
    tqdm.set_lock(threading.RLock())
    signal.signal(signal.SIGTERM, _record_sigterm)
    threading.Thread(target=_exit_with_parent, args=(parent,), name="icl-mech sweep watchdog", daemon=True).start()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


@contextmanager
def sigterm_blocked() -> Iterator[None]:
    """SIGTERM held back in this thread (delivered when the block ends); a process it starts
    meanwhile inherits the block."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextmanager
def sigterm_recorded(resend: bool) -> Iterator[list[int]]:
    """While a local sweep runs, SIGTERM is recorded in the yielded ``stop_received`` instead of
    ending this process. With ``resend`` (units trained in this process), a recorded SIGTERM is
    sent again every second, so that training begun since (whose own handler replaced this one:
    ``icl_mech.trainer``) stops at it too. Signals are caught in the main thread only: elsewhere
    (a notebook's worker thread) SIGTERM keeps its usual meaning."""
    stop_received.clear()
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _record_sigterm) if in_main_thread else None
    ended = threading.Event()

    def resend_while_stopping() -> None:
        while not ended.wait(1.0):
            if stop_received:
                signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)

    resender = threading.Thread(target=resend_while_stopping, daemon=True) if in_main_thread and resend else None
    if resender:
        resender.start()
    try:
        yield stop_received
    finally:
        ended.set()
        if resender:
            resender.join()
        if in_main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
        stop_received.clear()  # the stop was this sweep's: units trained here later are not stopped
