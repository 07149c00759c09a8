"""Checkpoint and metrics writes off the training thread, in the order they were asked for.

A checkpoint costs a serialization and an fsync per file; on a GPU, where a step takes well under a
millisecond, waiting for them would dominate a dense run. So training takes a snapshot (``host_copy``:
on CUDA an asynchronous copy into pinned host memory, on the CPU a clone) and hands a write closure to
``BackgroundWriter``, whose one thread performs the writes first in, first out. Every write is
still ``icl_mech.storage``'s atomic one (temporary file, fsync, rename), and the order on disk is
the order of the loop, so a run killed at any moment resumes as it does with synchronous writes.

The first failed write stops the writer: later writes are dropped, so the disk holds a prefix of
what the loop asked for, and the error is raised in the training thread at its next ``submit`` or
``flush``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from types import TracebackType

import torch
from torch import Tensor

#: Snapshots waiting to be written at most; a loop that outruns the disk waits for it here.
MAX_PENDING = 8


class BackgroundWriter:
    """One thread that runs write closures in submission order; use it as a context manager."""

    def __init__(self, max_pending: int = MAX_PENDING):
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="icl-mech checkpoint writer", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                if self._error is None:
                    job()
            except BaseException as error:  # kept for the training thread, which raises it
                self._error = error
            finally:
                self._jobs.task_done()
        self._jobs.task_done()

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, write: Callable[[], None]) -> None:
        """Queue ``write``; raises the failure of an earlier write instead, if there was one."""
        self._raise_failure()
        self._jobs.put(write)

    def flush(self) -> None:
        """Wait until every submitted write is done; raises the first failure."""
        self._jobs.join()
        self._raise_failure()

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        """Finish what was submitted (a snapshot already taken is worth keeping, even when the loop
        failed) and stop the thread; a write failure is raised unless another error is on its way."""
        self._jobs.put(None)
        self._thread.join()
        if kind is None:
            self._raise_failure()


def host_copy(tensors: dict[str, Tensor]) -> tuple[dict[str, Tensor], Callable[[], None]]:
    """Copies of ``tensors`` in host memory, which training may go on changing the originals of,
    and a function that waits until the copies are complete (call it on the writer's thread).

    On CUDA the copies go to pinned memory without blocking the training thread; an event recorded
    after them on their device's current stream marks their end. On the CPU they are plain clones.
    """
    cuda = [tensor for tensor in tensors.values() if tensor.is_cuda]
    if not cuda:
        return {name: tensor.detach().clone() for name, tensor in tensors.items()}, lambda: None
    copies = {}
    for name, tensor in tensors.items():
        copy = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=tensor.is_cuda)
        copies[name] = copy.copy_(tensor.detach(), non_blocking=True)
    done = torch.cuda.Event()
    done.record(torch.cuda.current_stream(cuda[0].device))
    return copies, done.synchronize
