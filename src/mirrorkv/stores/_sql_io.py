"""The SQL store's plumbing: pooled connections leased per thread, and large-value streams."""

from __future__ import annotations

import contextlib
import io
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa

from ..errors import MirrorKVError
from ._sql_errors import ErrorTranslator, is_disconnect

__all__ = ["BATCH", "ChunkReader", "Lease", "Leases", "Once", "batches", "split_chunks"]

#: Keys per statement where MySQL needs one placeholder each (``IN (...)``).
BATCH = 1000


class Lease:
    """One pooled connection held by one user (a thread, or an open stream), with its cursor.

    The driver's own connection and cursor are used directly: SQLAlchemy's
    per-statement machinery is measured overhead on a single get or put.
    """

    __slots__ = ("__weakref__", "_fairy", "connection", "cursor")

    def __init__(self, engine: sa.Engine) -> None:
        self._fairy: Any = None  # set first: __del__ runs even where connecting failed
        fairy = engine.raw_connection()
        driver: Any = fairy.driver_connection
        self._fairy = fairy
        self.connection: Any = driver
        self.cursor: Any = driver.cursor(binary=True) if _is_psycopg(driver) else driver.cursor()

    def release(self) -> None:
        """Give the connection back to the pool. Releasing twice is harmless."""
        fairy, self._fairy = self._fairy, None
        if fairy is not None:
            with contextlib.suppress(Exception):
                self.cursor.close()
            with contextlib.suppress(Exception):
                fairy.close()

    def discard(self) -> None:
        """Close the connection for good (it failed); the pool opens a fresh one later."""
        fairy, self._fairy = self._fairy, None
        if fairy is not None:
            with contextlib.suppress(Exception):
                fairy.invalidate()

    def __del__(self) -> None:
        # A thread that ended takes its thread-local lease with it: back to the pool.
        self.release()


class Leases:
    """Each thread's lease on a pooled connection, taken on first use and kept.

    A thread keeps its connection between calls (a checkout per call costs
    a third of a loopback round trip, measured), so the pool's size bounds how many
    threads use the store at once; a thread that ends gives its connection back.
    """

    def __init__(self, engine: sa.Engine, errors: ErrorTranslator) -> None:
        self.engine = engine
        self._errors = errors
        self._local = threading.local()
        self._all: weakref.WeakSet[Lease] = weakref.WeakSet()
        self._lock = threading.Lock()
        self.closed = False

    def get(self) -> Lease:
        """The calling thread's lease."""
        try:
            lease: Lease = self._local.lease
        except AttributeError:
            lease = self._new()
        return lease

    def _new(self) -> Lease:
        if self.closed:
            raise MirrorKVError("the SQL store is closed")
        with self._errors:
            lease = Lease(self.engine)
        with self._lock:
            self._all.add(lease)
        self._local.lease = lease
        return lease

    def private(self) -> Lease:
        """A lease of its own (for a stream), released by its user."""
        if self.closed:
            raise MirrorKVError("the SQL store is closed")
        with self._errors:
            return Lease(self.engine)

    def failed(self, lease: Lease, error: BaseException) -> None:
        """Forget the calling thread's lease after ``error``; empty the pool after a disconnect.

        After a disconnect every pooled connection is suspect (the server
        went away), so the pool is emptied and refills with fresh ones.
        """
        if getattr(self._local, "lease", None) is lease:
            del self._local.lease
        if is_disconnect(error):
            lease.discard()
            with contextlib.suppress(Exception):
                self.engine.dispose()
        else:
            lease.release()

    def rollback(self, lease: Lease, error: BaseException | None) -> None:
        """End ``lease``'s transaction after ``error`` (None: any other exception).

        A lease that lost its connection, or cannot roll back, is given up
        (:meth:`failed`) instead.
        """
        if error is not None and is_disconnect(error):
            self.failed(lease, error)
            return
        try:
            lease.cursor.execute("ROLLBACK")
        except self._errors.catches as failure:
            self.failed(lease, failure)

    def close(self) -> None:
        """Give every lease back and close the pool's connections."""
        self.closed = True
        with self._lock:
            leases = list(self._all)
            self._all.clear()
        for lease in leases:
            lease.release()
        with contextlib.suppress(AttributeError):
            del self._local.lease
        self.engine.dispose()


def split_chunks(first: bytes, read: Callable[[int], bytes], size: int) -> Iterator[bytes]:
    """Chunks of ``size`` bytes (the last shorter): ``first``, then what ``read`` yields."""
    buffer = first
    while True:
        while len(buffer) < size:
            more = read(size - len(buffer))
            if not more:
                break
            buffer += more
        if not buffer:
            return
        yield buffer[:size]
        buffer = buffer[size:]


class ChunkReader(io.RawIOBase):
    """A readable stream over the chunks of one large value, read one at a time.

    It holds a lease of its own in a repeatable-read transaction, so it
    reads one snapshot of the value even if the key is overwritten or
    deleted meanwhile. ``close`` ends the transaction and releases the lease.
    """

    def __init__(
        self,
        lease: Lease,
        read_chunk: str,
        blob_id: int,
        size: int,
        errors: ErrorTranslator,
        on_failure: Callable[[Lease, BaseException], None],
    ) -> None:
        super().__init__()
        self._lease: Lease | None = lease
        self._sql = read_chunk
        self._blob_id = blob_id
        self._size = size
        self._errors = errors
        self._on_failure = on_failure
        self._seq = 0
        self._chunk = memoryview(b"")
        self._offset = 0
        self._position = 0

    def readable(self) -> bool:
        """True."""
        return True

    def _next_chunk(self) -> bool:
        lease = self._lease
        if lease is None:
            raise ValueError("I/O operation on closed stream")
        if self._position >= self._size:
            return False
        try:
            lease.cursor.execute(self._sql, (self._blob_id, self._seq))
            row = lease.cursor.fetchone()
        except Exception as error:
            self._lease = None
            self._on_failure(lease, error)
            raise self._errors.translate(error) from error
        if row is None:
            raise MirrorKVError(f"chunk {self._seq} of a large value is missing")
        self._chunk = memoryview(bytes(row[0]))
        self._offset = 0
        self._seq += 1
        return True

    def read(self, size: int | None = -1, /) -> bytes:
        """Up to ``size`` bytes (all that is left where ``size`` is negative or None)."""
        if self.closed:
            raise ValueError("I/O operation on closed stream")
        if size is None or size < 0:
            whole = []
            while part := self.read(1 << 20):
                whole.append(part)
            return b"".join(whole)
        parts: list[memoryview] = []
        wanted = size
        while wanted:
            if self._offset >= len(self._chunk) and not self._next_chunk():
                break
            piece = self._chunk[self._offset : self._offset + wanted]
            parts.append(piece)
            self._offset += len(piece)
            self._position += len(piece)
            wanted -= len(piece)
        return b"".join(parts)

    def readall(self) -> bytes:
        """Everything from the current position to the end."""
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        """Read into a writable buffer; return the number of bytes read."""
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def tell(self) -> int:
        """The number of bytes read so far."""
        return self._position

    def close(self) -> None:
        """End the snapshot and give the connection back. Closing twice is harmless."""
        lease, self._lease = self._lease, None
        if lease is not None:
            try:
                lease.cursor.execute("ROLLBACK")
            except Exception as error:  # the connection is gone: nothing to end
                self._on_failure(lease, error)
            else:
                lease.release()
        super().close()

    def __getstate__(self) -> Any:
        raise TypeError("a SQL value stream cannot be pickled")


def _is_psycopg(connection: Any) -> bool:
    """True for a psycopg connection, whose cursors can fetch results in binary."""
    return type(connection).__module__.startswith("psycopg")


def batches(keys: list[str]) -> Iterator[list[str]]:
    """``keys`` in lists of at most :data:`BATCH`."""
    for start in range(0, len(keys), BATCH):
        yield keys[start : start + BATCH]


class Once:
    """Chunks that tell whether anything was taken from them yet (then they cannot be replayed)."""

    __slots__ = ("_items", "started")

    def __init__(self, items: Iterator[bytes]) -> None:
        self._items = items
        self.started = False

    def __iter__(self) -> Iterator[bytes]:
        self.started = True
        return self._items
