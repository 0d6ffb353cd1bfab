"""Streaming helpers of `AzureBlobStore`: a blob read as a file, a stream cut into blocks."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import IO, Any

from azure.core.exceptions import AzureError

from ..errors import MirrorKVError

__all__ = ["DownloadStream", "read_full"]


class DownloadStream(io.RawIOBase):
    """A readable raw stream over a blob download, one chunk of the download at a time.

    ``chunks`` yields the value's bytes in order; each is held only until it
    has been read. ``translate`` turns an azure-core error met while reading
    into a mirrorkv error. The download itself pins the blob's ETag, so a
    value overwritten while it streams raises instead of mixing two values.
    """

    def __init__(
        self, chunks: Iterator[bytes], translate: Callable[[AzureError], MirrorKVError]
    ) -> None:
        super().__init__()
        self._chunks: Iterator[bytes] | None = chunks
        self._translate = translate
        self._buffer = memoryview(b"")

    def readable(self) -> bool:
        """Always True."""
        return True

    def readinto(self, target: Any) -> int:
        """Fill ``target`` from the current chunk, fetching the next where it is used up."""
        while not self._buffer:
            if self._chunks is None:
                return 0
            try:
                chunk = next(self._chunks, None)
            except AzureError as error:
                raise self._translate(error) from error
            if chunk is None:
                self._chunks = None
                return 0
            self._buffer = memoryview(chunk)
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size

    def close(self) -> None:
        """Drop the download (the rest of the value is never fetched)."""
        self._chunks = None
        self._buffer = memoryview(b"")
        super().close()


def read_full(stream: IO[bytes], size: int) -> bytes:
    """Up to ``size`` bytes of ``stream``: fewer only at its end (short reads are retried)."""
    data = stream.read(size)
    if data is None:
        data = b""
    if len(data) >= size or not data:
        return bytes(data)
    parts = [data]
    missing = size - len(data)
    while missing > 0:
        more = stream.read(missing)
        if not more:
            break
        parts.append(more)
        missing -= len(more)
    return b"".join(parts)
