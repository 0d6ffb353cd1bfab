"""The connections of one SQLite store: one per thread, and a few for streams.

Every thread that uses a store gets a connection of its own (sqlite3
connections are not for sharing), opened on first use and closed when the
thread ends or the store closes. A stream returned by ``open`` holds a read
transaction, so it gets a connection of its own too, drawn from a small pool
of idle ones. After ``fork`` a child drops the connections it inherited
without touching them: closing one could checkpoint or unlock on behalf of
the parent.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import weakref
from typing import Any
from urllib.parse import quote

from ..errors import InvalidURL, MirrorKVError
from ..urls import StoreURL, parse_bool, reject_unknown
from ._sqlite_io import ErrorTranslator
from ._sqlite_schema import CONNECTION_PRAGMAS, prepare

__all__ = ["Connections", "file_options", "file_url"]

#: Seconds a writer waits for the file's lock before giving up.
DEFAULT_TIMEOUT = 30.0


def file_options(url: StoreURL, options: dict[str, Any]) -> tuple[str, bool, float]:
    """The path, ``fsync`` and ``timeout`` of a ``sqlite:`` URL and its options, checked."""
    reject_unknown(url, options, ("fsync", "timeout"))
    fsync = parse_bool("fsync", options.get("fsync", False))
    raw_timeout = options.get("timeout", DEFAULT_TIMEOUT)
    try:
        timeout = float(raw_timeout)
    except (TypeError, ValueError):
        raise InvalidURL(f"option timeout takes seconds, not {raw_timeout!r}") from None
    if timeout < 0:
        raise InvalidURL(f"option timeout takes seconds >= 0, not {raw_timeout!r}")
    return url.local_path(), fsync, timeout


def file_url(path: str, fsync: bool, timeout: float) -> str:
    """The ``sqlite:`` URL that :func:`file_options` reads back as these settings."""
    options = []
    if fsync:
        options.append("fsync=true")
    if timeout != DEFAULT_TIMEOUT:
        options.append(f"timeout={timeout:g}")
    query = f"?{'&'.join(options)}" if options else ""
    return f"sqlite://{quote(path)}{query}"


#: How many idle stream connections a store keeps for the next stream.
_IDLE_READERS = 4
#: The page cache of a thread's connection, in KiB: up to 16 MiB, allocated as
#: pages are read (SQLite's default of 2 MiB made every get of a 20,000-key
#: store miss and read from the file).
CACHE_KIB = 16 * 1024


def _close_quietly(conn: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        conn.close()


class _ThreadSlot:
    """Lives in a thread's local storage; when the thread ends, its connection closes."""

    __slots__ = ("__weakref__",)


_live: weakref.WeakSet[Connections] = weakref.WeakSet()
#: Connections inherited through fork: never used, never closed, only kept from the collector.
_inherited: list[sqlite3.Connection] = []


def _after_fork_in_child() -> None:
    for connections in list(_live):
        connections.forget()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Connections:
    """The connections of one store's file; ``local.conn`` is the calling thread's, once opened.

    Every connection is in autocommit mode (transactions are explicit), with
    the store's ``synchronous`` setting and the schema's pragmas; a thread's
    also gets the larger page cache. The first connection made checks (or
    creates) the schema.
    """

    def __init__(self, path: str, *, fsync: bool, timeout: float, errors: ErrorTranslator) -> None:
        self._path = path
        self._fsync = fsync
        self._timeout = timeout
        self._errors = errors
        self._ready = False
        self._lock = threading.Lock()
        self._finalizers: list[weakref.finalize[Any, Any]] = []
        self._idle_readers: list[sqlite3.Connection] = []
        self._readers: set[sqlite3.Connection] = set()
        self._closed = False
        #: The calling thread's connection is ``local.conn`` once it has one.
        self.local = threading.local()
        _live.add(self)

    def _open_connection(self, stream: bool) -> sqlite3.Connection:
        """A configured connection; a stream's keeps SQLite's small default page cache."""
        conn = sqlite3.connect(
            self._path,
            timeout=self._timeout,
            isolation_level=None,  # autocommit: transactions are explicit
            check_same_thread=False,  # close() closes every thread's connection
        )
        try:
            conn.execute("PRAGMA synchronous=FULL" if self._fsync else "PRAGMA synchronous=NORMAL")
            for pragma in CONNECTION_PRAGMAS:
                conn.execute(pragma)
            if not stream:
                conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            if not self._ready:
                prepare(conn, self._path)
                self._ready = True
        except BaseException:
            conn.close()
            raise
        return conn

    def connect(self) -> sqlite3.Connection:
        """Open the calling thread's connection (closed when the thread ends)."""
        with self._lock:
            self._check_open()
            with self._errors:
                conn = self._open_connection(False)
            slot = _ThreadSlot()
            self._finalizers = [f for f in self._finalizers if f.alive]
            self._finalizers.append(weakref.finalize(slot, _close_quietly, conn))
        self.local.slot = slot
        self.local.conn = conn
        return conn

    def reader(self) -> sqlite3.Connection:
        """A connection of its own for a stream; give it back with :meth:`release_reader`."""
        with self._lock:
            self._check_open()
            if self._idle_readers:
                return self._idle_readers.pop()
        with self._errors:
            conn = self._open_connection(True)
        with self._lock:
            self._readers.add(conn)
        return conn

    def release_reader(self, conn: sqlite3.Connection) -> None:
        """End a stream's read transaction and keep its connection for the next (or close it)."""
        with contextlib.suppress(sqlite3.Error):
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        with self._lock:
            if not self._closed and len(self._idle_readers) < _IDLE_READERS:
                self._idle_readers.append(conn)
                return
            self._readers.discard(conn)
        _close_quietly(conn)

    def forget(self) -> None:
        """In a forked child: drop the parent's connections without touching them."""
        self._lock = threading.Lock()
        self.local = threading.local()
        for finalizer in self._finalizers:
            detached = finalizer.detach()
            if detached is not None:
                _inherited.append(detached[2][0])
        self._finalizers = []
        _inherited.extend(self._readers)
        self._readers = set()
        self._idle_readers = []

    def close(self) -> None:
        """Close every thread's connection and every stream's; later use raises MirrorKVError."""
        with self._lock:
            self._closed = True
            finalizers, self._finalizers = self._finalizers, []
            readers, self._readers = self._readers, set()
            self._idle_readers = []
            self.local = threading.local()
        for finalizer in finalizers:
            finalizer()
        for conn in readers:
            _close_quietly(conn)
        _live.discard(self)

    def _check_open(self) -> None:
        if self._closed:
            raise MirrorKVError(f"SQLiteStore({self._path!r}) is closed")
