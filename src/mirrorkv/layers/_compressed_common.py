"""What the value-transforming layers (Compressed, Encrypted) share.

Both store a transformed value and keep, in reserved metadata names beside
it, what callers must see instead: the logical size and etag. This module
holds the pieces of that bookkeeping common to both: their base class
:class:`LogicalRecords` (heads, listings and conditional deletes in
logical terms), reserved names, the
mapping of a caller's ``if_match`` (a logical etag) to the stored etag for
conditional puts and deletes, a
reader over decoded chunks, and the spool a stream is encoded into before
its metadata is known.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import IO, BinaryIO, cast

from ..errors import InvalidValue, KeyNotFound, PreconditionFailed
from ..meta import NO_METADATA, Meta
from ..store import PutOptions, Store, check_precondition
from .base import Layer

__all__ = [
    "SMALL",
    "SPOOL_BYTES",
    "ChunkReader",
    "LogicalRecords",
    "check_reserved",
    "delete_if_logical",
    "inner_condition",
    "read_exact",
    "rejoined",
    "spool",
    "visible",
]

#: A stream whose whole value fits in this many bytes is read whole and written like ``put``.
SMALL = 1 << 20
#: Encoded output of a stream is kept in memory up to this size, then in a temporary file.
SPOOL_BYTES = 1 << 19
#: The read size of a large stream after its first :data:`SMALL` bytes.
READ_BYTES = 1 << 18


def _reserved(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + "-")


def check_reserved(metadata: Mapping[str, str], prefix: str, layer: str) -> None:
    """Raise :class:`InvalidValue` where user metadata uses a name the layer reserves.

    In any case: stores such as S3 fold metadata names to lower case.
    """
    for name in metadata:
        if _reserved(name.lower(), prefix):
            raise InvalidValue(
                f"metadata name {name!r} is reserved by {layer} (names {prefix!r} and {prefix}-*)"
            )


def visible(metadata: Mapping[str, str], prefix: str) -> Mapping[str, str]:
    """``metadata`` without the names reserved under ``prefix`` (read-only)."""
    kept = {name: value for name, value in metadata.items() if not _reserved(name, prefix)}
    if len(kept) == len(metadata):
        return metadata
    return MappingProxyType(kept) if kept else NO_METADATA


def inner_condition(
    inner: Store, key: str, options: PutOptions, logical_etag: Callable[[Meta], str]
) -> PutOptions:
    """``options`` with the caller's ``if_match`` (a logical etag) replaced by the stored etag.

    Reads the stored record once; :class:`PreconditionFailed` where the key
    is absent or its logical etag differs. The write that follows is
    conditional on the stored etag, so a write racing in between makes it
    fail as the caller's condition would.
    """
    if options.if_match is None:
        return options
    try:
        current = inner._head(key)
    except KeyNotFound:
        check_precondition(key, None, options)
        raise  # unreachable: if_match on an absent key always fails
    check_precondition(key, Meta(key, 0, logical_etag(current), 0.0), options)
    return options._replace(if_match=current.etag)


# An etag no stored value has (an MD5 nobody knows a preimage of): asked for
# when the answer is already "no", only to learn whether the store can say it.
_NO_ETAG = "0" * 32


def delete_if_logical(
    inner: Store, key: str, etag: str, logical_etag: Callable[[Meta], str]
) -> None:
    """Remove ``key`` from ``inner`` only while its logical etag is ``etag``.

    Reads the stored record once, then deletes on the condition of the
    stored etag, so a write racing in between makes the delete fail
    (:class:`PreconditionFailed`) as the caller's condition would.
    :class:`PreconditionFailed` where the key is absent or its logical etag
    differs; :class:`NotSupported` in every case where ``inner`` has no
    conditional delete (so the answer does not depend on what the key holds).
    """
    try:
        current: Meta | None = inner._head(key)
    except KeyNotFound:
        current = None
    if current is not None and logical_etag(current) == etag:
        inner._delete_if(key, current.etag)
        return
    inner._delete_if(key, _NO_ETAG)  # raises PreconditionFailed, or NotSupported
    raise PreconditionFailed(f"{key!r} does not have etag {etag!r}")


def read_exact(stream: IO[bytes], size: int) -> bytes:
    """Up to ``size`` bytes of ``stream``: fewer only at its end."""
    data = stream.read(size)
    if len(data) == size or not data:
        return data
    parts = [data]
    missing = size - len(data)
    while missing:
        more = stream.read(missing)
        if not more:
            break
        parts.append(more)
        missing -= len(more)
    return b"".join(parts)


def rejoined(first: bytes, stream: IO[bytes]) -> Iterator[bytes]:
    """``first``, then the rest of ``stream`` in pieces of :data:`READ_BYTES`.

    Holds ``first`` only until it is yielded (the caller should drop its own
    reference), so a large first read does not stay in memory.
    """
    held = [first]
    del first
    yield held.pop()
    while chunk := stream.read(READ_BYTES):
        yield chunk


class LogicalRecords(Layer):
    """A layer whose stored records differ from what callers see: size, etag, metadata.

    A subclass says how in :meth:`_logical` (and may read just the etag
    faster in :meth:`_etag`); heads, listings and conditional deletes then
    show and compare the logical record.
    """

    def _logical(self, meta: Meta) -> Meta:
        """The caller's view of a stored record."""
        raise NotImplementedError

    def _etag(self, meta: Meta) -> str:
        """The logical etag of a stored record."""
        return self._logical(meta).etag

    def _head(self, key: str) -> Meta:
        return self._logical(self._inner._head(key))

    def _list(self, prefix: str, start_after: str | None) -> Iterator[Meta]:
        return map(self._logical, self._inner._list(prefix, start_after))

    def _delete_if(self, key: str, etag: str) -> None:
        delete_if_logical(self._inner, key, etag, self._etag)


def spool() -> tempfile.SpooledTemporaryFile[bytes]:
    """A temporary file kept in memory up to :data:`SPOOL_BYTES`, for encoded output."""
    return tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)


class ChunkReader(io.RawIOBase):
    """A readable binary stream over an iterator of decoded chunks.

    ``read(n)`` returns at most ``n`` bytes; errors raised by the iterator
    (:class:`~mirrorkv.errors.CorruptValue`) surface from ``read``. Closing
    it closes ``source`` (if given), the stream the chunks are decoded from.
    """

    def __init__(self, chunks: Iterator[bytes], source: IO[bytes] | None = None) -> None:
        super().__init__()
        self._chunks = chunks
        self._source = source
        self._buffer = memoryview(b"")

    @classmethod
    def open(cls, chunks: Iterator[bytes], source: IO[bytes] | None = None) -> BinaryIO:
        """A reader typed as the ``BinaryIO`` that ``Store.open`` returns."""
        return cast(BinaryIO, cls(chunks, source))

    def readable(self) -> bool:
        """Always true."""
        return True

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (all that is left if ``size`` < 0); ``b""`` at the end."""
        if self.closed:
            raise ValueError("read of a closed stream")
        if size is None or size < 0:
            return self.readall()
        while not self._buffer:
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._buffer = memoryview(chunk)
        out = self._buffer[:size].tobytes()
        self._buffer = self._buffer[size:]
        return out

    def readall(self) -> bytes:
        """Everything left."""
        if self.closed:
            raise ValueError("read of a closed stream")
        parts = [self._buffer.tobytes()]
        self._buffer = memoryview(b"")
        parts.extend(self._chunks)
        return b"".join(parts)

    def readinto(self, buffer: object) -> int:
        """Read into a writable buffer; the number of bytes read."""
        view = memoryview(buffer).cast("B")  # type: ignore[arg-type]
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        """Close the reader and the stream it decodes."""
        if not self.closed:
            try:
                if self._source is not None:
                    self._source.close()
            finally:
                super().close()
