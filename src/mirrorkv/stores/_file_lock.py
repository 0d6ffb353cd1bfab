"""The one lock of a :class:`~mirrorkv.stores.file.FileStore`: threads and processes alike."""

from __future__ import annotations

import fcntl
import os
import threading
from types import TracebackType

__all__ = ["StoreLock"]


class StoreLock:
    """An exclusive, re-entrant lock shared by every thread and process using one root.

    A thread lock orders the threads of this process (``flock`` alone would
    not: they share the open file), and ``flock`` on a lock file orders the
    processes and the other ``FileStore`` objects over the same root. The
    lock file is opened lazily and again after a fork, so a child never
    shares its parent's lock state. The kernel drops the lock when a process
    dies, so a crash never leaves it held.
    """

    __slots__ = ("_depth", "_fd", "_path", "_pid", "_thread")

    def __init__(self, path: str) -> None:
        self._path = path
        self._thread = threading.RLock()
        self._depth = 0
        self._fd = -1
        self._pid = 0

    def __enter__(self) -> None:
        self._thread.acquire()
        if self._depth == 0:
            try:
                fcntl.flock(self._file(), fcntl.LOCK_EX)
            except BaseException:
                self._thread.release()
                raise
        self._depth += 1

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._depth -= 1
        try:
            if self._depth == 0:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread.release()

    def _file(self) -> int:
        pid = os.getpid()
        if self._pid != pid:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            self._pid = pid
        return self._fd

    def close(self) -> None:
        """Close the lock file (it is reopened if the lock is taken again)."""
        with self._thread:
            if self._fd >= 0 and self._pid == os.getpid() and self._depth == 0:
                os.close(self._fd)
                self._fd = -1
                self._pid = 0
