"""The SQLite store's plumbing: error translation, transactions and BLOB streams."""

from __future__ import annotations

import contextlib
import hashlib
import io
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from typing import IO, Any, Protocol

from ..errors import (
    CorruptValue,
    InvalidValue,
    MirrorKVError,
    ReadOnlyError,
    StoreUnavailable,
    Translator,
)
from ..store import CHUNK_SIZE

__all__ = [
    "BlobReader",
    "ErrorTranslator",
    "open_blob",
    "sized_source",
    "transaction",
    "write_blob",
]

# Primary SQLite result codes (https://sqlite.org/rescode.html).
_BUSY = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED
_CORRUPT = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_UNAVAILABLE = {10, 13, 14, 15, 22}  # IOERR, FULL, CANTOPEN, PROTOCOL, NOLFS
_READONLY = 8
_TOOBIG = 18


def translate(error: sqlite3.Error, path: str) -> MirrorKVError:
    """The mirrorkv error for an ``sqlite3`` error met on the database at ``path``."""
    code = getattr(error, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    detail = f"{path}: {error}"
    if primary in _BUSY:
        return StoreUnavailable(f"SQLite database busy (another writer holds it): {detail}")
    if primary in _CORRUPT:
        return CorruptValue(f"not an SQLite database, or a corrupt one: {detail}")
    if primary in _UNAVAILABLE:
        return StoreUnavailable(f"SQLite cannot read or write the file: {detail}")
    if primary == _READONLY:
        return ReadOnlyError(f"SQLite database is read-only: {detail}")
    if primary == _TOOBIG:
        return InvalidValue(f"value too large for SQLite: {detail}")
    if isinstance(error, sqlite3.ProgrammingError) and "closed" in str(error):
        return MirrorKVError(f"the SQLite store or stream is closed: {detail}")
    return MirrorKVError(f"SQLite error: {detail}")


class ErrorTranslator(Translator):
    """``with translator:`` turns any ``sqlite3.Error`` into a mirrorkv error, chained."""

    __slots__ = ("_path",)
    catches = sqlite3.Error

    def __init__(self, path: str) -> None:
        self._path = path

    def translate(self, error: BaseException) -> MirrorKVError:
        """See :func:`translate`."""
        assert isinstance(error, sqlite3.Error)
        return translate(error, self._path)


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection, mode: str = "IMMEDIATE") -> Iterator[None]:
    """One transaction on an autocommit connection; rolled back if the block raises.

    ``IMMEDIATE`` takes the write lock at once (waiting up to the busy
    timeout), so a read-modify-write inside never fails half way on a lock.
    """
    conn.execute(f"BEGIN {mode}")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        # SQLite may already have rolled back (e.g. on a full disk).
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def write_blob(
    conn: sqlite3.Connection, rowid: int, source: _Readable, size: int, *, hashed: bool = True
) -> str:
    """Fill the ``size``-byte value of blob row ``rowid`` from ``source``; return its hex MD5.

    The row of the ``blobs`` table must already hold a zero blob of that size
    (``zeroblob(size)``). A source that ends early raises :class:`InvalidValue`.
    """
    digest = hashlib.md5(usedforsecurity=False)
    with conn.blobopen("blobs", "data", rowid) as blob:
        remaining = size
        while remaining:
            chunk = source.read(min(CHUNK_SIZE, remaining))
            if not chunk:
                raise InvalidValue(f"the stream ended {remaining} bytes before its announced end")
            blob.write(chunk)
            if hashed:
                digest.update(chunk)
            remaining -= len(chunk)
    return digest.hexdigest() if hashed else ""


def open_blob(conn: sqlite3.Connection, rowid: int) -> sqlite3.Blob:
    """A read-only handle on the large value in blob row ``rowid``."""
    return conn.blobopen("blobs", "data", rowid, readonly=True)


@contextlib.contextmanager
def sized_source(stream: IO[bytes], small: int) -> Iterator[tuple[IO[bytes], int]]:
    """``stream`` with the number of bytes it will yield.

    A seekable stream is measured in place; any other is copied into a
    temporary file (in memory up to ``small`` bytes), so memory stays bounded.
    """
    size = _remaining(stream)
    if size is not None:
        yield stream, size
        return
    with tempfile.SpooledTemporaryFile(max_size=small) as spool:
        size = 0
        while chunk := stream.read(CHUNK_SIZE):
            spool.write(chunk)
            size += len(chunk)
        spool.seek(0)
        yield spool, size


def _remaining(stream: IO[bytes]) -> int | None:
    """How many bytes a seekable stream holds after its position; ``None`` if it cannot tell."""
    try:
        if not stream.seekable():
            return None
        start = stream.tell()
        end = stream.seek(0, io.SEEK_END)
        stream.seek(start)
    except (OSError, ValueError, AttributeError):
        return None
    return end - start


class BlobReader(io.RawIOBase):
    """A readable, seekable stream over one SQLite BLOB handle.

    The handle belongs to a connection holding a read transaction, so the
    stream reads one snapshot of the value. ``close`` releases the connection.
    """

    def __init__(
        self, blob: sqlite3.Blob, errors: ErrorTranslator, release: Callable[[], None]
    ) -> None:
        super().__init__()
        self._blob = blob
        self._errors = errors
        self._release: Callable[[], None] | None = release

    def readable(self) -> bool:
        """True."""
        return True

    def seekable(self) -> bool:
        """True."""
        return True

    def read(self, size: int | None = -1, /) -> bytes:
        """Up to ``size`` bytes (all that is left where ``size`` is negative or None)."""
        if self.closed:
            raise ValueError("I/O operation on closed stream")
        with self._errors:
            return self._blob.read(-1 if size is None or size < 0 else size)

    def readall(self) -> bytes:
        """Everything from the current position to the end."""
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        """Read into a writable buffer; return the number of bytes read."""
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        """Move to ``offset`` (within the value); return the new position."""
        if self.closed:
            raise ValueError("I/O operation on closed stream")
        with self._errors:
            self._blob.seek(offset, whence)
            return self._blob.tell()

    def tell(self) -> int:
        """The current position."""
        if self.closed:
            raise ValueError("I/O operation on closed stream")
        with self._errors:
            return self._blob.tell()

    def close(self) -> None:
        """Close the BLOB handle and end the read transaction. Closing twice is harmless."""
        release, self._release = self._release, None
        if release is not None:
            try:
                with contextlib.suppress(sqlite3.Error):
                    self._blob.close()
                release()
            finally:
                super().close()
        else:
            super().close()

    def __getstate__(self) -> Any:
        raise TypeError("a SQLite value stream cannot be pickled")
