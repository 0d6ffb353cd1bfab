"""The codecs `Compressed` writes and reads: zstd (``mirrorkv[zstd]``) and gzip (stdlib).

A codec compresses a whole value or a stream of chunks, and decompresses
either back, checking what it can: zstd frames carry a checksum, gzip a
CRC-32; the caller checks the length against the logical size. Failures
raise :class:`~mirrorkv.errors.CorruptValue`, the codec's own error chained.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterable, Iterator
from typing import IO, Any, Protocol

from ..errors import CorruptValue, InvalidValue, NotSupported

__all__ = ["CODEC_NAMES", "Codec", "codec_for"]

#: The codecs a ``Compressed`` layer writes with; "none" only reads.
CODEC_NAMES = ("zstd", "gzip", "none")

#: Decompressed output is produced in pieces of at most this many bytes.
_PIECE = 1 << 16


class Codec(Protocol):
    """One compression format."""

    #: The name recorded in a value's metadata.
    name: str

    def compress(self, data: bytes) -> bytes:
        """``data`` compressed in one call."""

    def compress_chunks(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """The compressed stream of ``chunks``, in pieces."""

    def decompress(self, data: bytes, size: int) -> bytes:
        """A whole compressed value (``size`` bytes once decompressed) decompressed."""

    def decompress_stream(self, source: IO[bytes]) -> Iterator[bytes]:
        """The decompressed pieces of a compressed stream, each of bounded size."""


def _zstandard() -> Any:
    try:
        import zstandard
    except ImportError as error:
        raise NotSupported(
            "the zstd codec needs the zstandard package: pip install 'mirrorkv[zstd]'"
        ) from error
    return zstandard


class _Zstd(threading.local):
    """Zstandard, frames with a content checksum.

    zstandard's (de)compressor objects must not be shared between threads:
    each thread gets its own (this is a ``threading.local``).
    """

    name = "zstd"

    def __init__(self, level: int) -> None:
        self._zstd = _zstandard()
        if not -7 <= level <= 22:
            raise InvalidValue(f"zstd levels run from -7 to 22, not {level}")
        self._level = level
        self._compressor = self._zstd.ZstdCompressor(level=level, write_checksum=True)
        self._decompressor = self._zstd.ZstdDecompressor()

    def compress(self, data: bytes) -> bytes:
        out: bytes = self._compressor.compress(data)
        return out

    def compress_chunks(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        # A stream may be consumed slowly: it gets a compressor of its own.
        compressor = self._zstd.ZstdCompressor(level=self._level, write_checksum=True)
        stream = compressor.compressobj()
        for chunk in chunks:
            if piece := stream.compress(chunk):
                yield piece
        yield stream.flush()

    def decompress(self, data: bytes, size: int) -> bytes:
        try:
            out: bytes = self._decompressor.decompress(data, max_output_size=size)
        except self._zstd.ZstdError as error:
            raise CorruptValue(f"a zstd value failed to decompress: {error}") from error
        return out

    def decompress_stream(self, source: IO[bytes]) -> Iterator[bytes]:
        pieces = self._zstd.ZstdDecompressor().read_to_iter(
            source, read_size=_PIECE, write_size=_PIECE
        )
        try:
            yield from pieces
        except self._zstd.ZstdError as error:
            raise CorruptValue(f"a zstd value failed to decompress: {error}") from error


class _Gzip:
    """Gzip (RFC 1952) through zlib, with its CRC-32 and length trailer."""

    name = "gzip"

    def __init__(self, level: int) -> None:
        if not 0 <= level <= 9:
            raise InvalidValue(f"gzip levels run from 0 to 9, not {level}")
        self._level = level

    def compress(self, data: bytes) -> bytes:
        return b"".join(self.compress_chunks((data,)))

    def compress_chunks(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        stream = zlib.compressobj(self._level, wbits=31)
        for chunk in chunks:
            if piece := stream.compress(chunk):
                yield piece
        yield stream.flush()

    def decompress(self, data: bytes, size: int) -> bytes:
        stream = zlib.decompressobj(wbits=31)
        try:
            out = stream.decompress(data, size + 1)
        except zlib.error as error:
            raise CorruptValue(f"a gzip value failed to decompress: {error}") from error
        if not stream.eof:
            raise CorruptValue("a gzip value is truncated or longer than recorded")
        return out

    def decompress_stream(self, source: IO[bytes]) -> Iterator[bytes]:
        stream = zlib.decompressobj(wbits=31)
        try:
            while chunk := source.read(_PIECE):
                while chunk:
                    yield stream.decompress(chunk, _PIECE)
                    chunk = stream.unconsumed_tail
            if not stream.eof:
                raise CorruptValue("a gzip value is truncated")
        except zlib.error as error:
            raise CorruptValue(f"a gzip value failed to decompress: {error}") from error


def codec_for(name: str, level: int | None = None) -> Codec:
    """The codec called ``name`` (``level`` None: its default); :class:`CorruptValue` if unknown.

    :class:`NotSupported` where its package is missing.
    """
    if name == "zstd":
        return _Zstd(3 if level is None else level)
    if name == "gzip":
        return _Gzip(6 if level is None else level)
    raise CorruptValue(f"unknown codec {name!r} in a value's metadata")
