"""One writer per directory: an OS-level lock held by the process that trains a run (or runs a sweep).

The lock is ``flock`` on ``<dir>/.lock``, kept open for as long as the writer works. The kernel
drops it when the file is closed or the process dies, however it dies (SIGKILL, OOM, a node
reboot), so a lock is never stale and there is nothing to clean up. The file stays in place
between writers (deleting it would let two processes lock two different files) and holds the
current holder's pid, host and start time, which a refused writer names. Readers never lock:
every file a reader opens is written whole by a rename, or appended line by line.

``flock`` works across NFS clients (Linux emulates it with byte-range locks) and on Lustre mounted
with ``-o flock``; a file system without locks is refused with its error, never silently unlocked.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from icl_mech.errors import RunLockedError, WriteError

LOCK = ".lock"


class DirectoryLock:
    """The exclusive lock of ``directory`` (created if missing), as a context manager.

    ``what`` names the directory in messages ("run", "sweep"). Acquiring never waits: a directory
    another process holds raises ``RunLockedError`` at once, and nothing in it is changed.
    """

    def __init__(self, directory: Path, what: str = "run"):
        self.path = Path(directory) / LOCK
        self.what = what
        self._fd: int | None = None

    def __enter__(self) -> DirectoryLock:
        directory = self.path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise WriteError(f"cannot create the lock {self.path}: {error.strerror or error}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = _read_holder(fd)
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise RunLockedError(
                    f"{self.what} directory {directory} is in use by {holder}; "
                    "wait for it to end or stop it (one writer per directory)"
                ) from None
            raise WriteError(
                f"cannot lock {self.path}: {error.strerror or error} (the file system must support "
                "flock; on Lustre mount it with -o flock)"
            ) from None
        try:
            holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        except OSError as error:
            os.close(fd)
            raise WriteError(f"cannot write {self.path}: {error.strerror or error}") from None
        self._fd = fd
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor releases the flock
            self._fd = None


def _read_holder(fd: int) -> str:
    """Who holds the lock, from its lock file: ``pid 123 on host node7 since 2026-11-26 18:00:00 UTC``."""
    try:
        holder = json.loads(os.pread(fd, 4096, 0))
        return f"pid {holder['pid']} on host {holder['host']} since {holder['started']}"
    except (OSError, ValueError, KeyError, TypeError):  # the holder has locked but not yet written
        return "another process (its pid is not written yet)"
