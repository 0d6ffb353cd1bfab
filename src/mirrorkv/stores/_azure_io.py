"""Streaming helpers of `AzureBlobStore`: a blob read as a file, a stream cut into blocks."""

from __future__ import annotations

import base64
import io
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from typing import IO, Any

from azure.core.exceptions import AzureError
from azure.storage.blob import BlobBlock

from ..errors import MirrorKVError

__all__ = ["DownloadStream", "read_full", "stage_blocks"]


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


def stage_blocks(
    stage: Callable[[str, bytes], None],
    first: bytes,
    stream: IO[bytes],
    digest: Any,
    block_size: int,
    pool: Executor,
    in_flight: int,
) -> tuple[int, list[BlobBlock]]:
    """Upload ``first`` and the rest of ``stream`` as uncommitted blocks; their size and list.

    ``stage(block_id, data)`` uploads one block; at most ``in_flight`` run on
    ``pool`` at once, so memory stays bounded. ``digest`` is updated with
    every byte. Block ids are unique to this upload, so concurrent writers
    of the same key never commit each other's blocks.
    """
    upload = uuid.uuid4().hex
    pending: list[Future[None]] = []
    blocks: list[BlobBlock] = []
    size = 0
    data = first
    try:
        while data:
            digest.update(data)
            size += len(data)
            block_id = base64.b64encode(f"{upload}-{len(blocks):08d}".encode()).decode()
            blocks.append(BlobBlock(block_id=block_id))
            pending.append(pool.submit(stage, block_id, data))
            data = b""
            while len(pending) >= in_flight:
                pending.pop(0).result()
            data = read_full(stream, block_size)
        for future in pending:
            future.result()
    finally:
        for future in pending:
            future.cancel()
    return size, blocks
