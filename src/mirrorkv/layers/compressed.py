"""`Compressed`: values compressed (zstd by default) in the wrapped store, transparently.

See ``docs/layers/compressed.md``.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator, Mapping
from typing import IO, BinaryIO

from ..errors import CorruptValue, InvalidValue, NotSupported
from ..keys import check_key
from ..meta import Meta
from ..store import Capability, PutOptions, Store
from ._compressed_codecs import CODEC_NAMES, Codec, codec_for
from ._compressed_common import (
    SMALL,
    ChunkReader,
    LogicalRecords,
    check_reserved,
    inner_condition,
    read_exact,
    rejoined,
    spool,
    visible,
)
from ._parallel_etag import etag_soon

__all__ = ["CODEC", "ETAG", "SIZE", "Compressed"]

#: Metadata name of the codec a value is stored with (absent: stored as is).
CODEC = "mkv-codec"
#: Metadata name of a compressed value's logical size.
SIZE = "mkv-codec-size"
#: Metadata name of a compressed value's logical etag (the MD5 of the uncompressed bytes).
ETAG = "mkv-codec-etag"

# Values shorter than this never shrink enough to pay for a frame.
_MIN_SIZE = 64

# put(ttl=) is not forwarded: a layer above must not think the wrapped store's TTL is ours.
_DROPPED = (
    Capability.URLS | Capability.NATIVE_COUNTERS | Capability.TRANSACTIONS | Capability.NATIVE_TTL
)


class Compressed(LogicalRecords):
    """``store`` with every value compressed, as callers never see.

    ``codec`` is ``"zstd"`` (needs ``mirrorkv[zstd]``), ``"gzip"`` or
    ``"none"`` (write as is; still read compressed values); ``level`` is the
    codec's (zstd: -7..22, default 3; gzip: 0..9, default 6). A value that
    does not shrink is stored as is. A compressed value carries metadata
    ``mkv-codec`` (the codec), ``mkv-codec-size`` and ``mkv-codec-etag`` (the
    uncompressed size and MD5), hidden from callers, who see the logical
    size and etag everywhere (``put``, ``head``, ``list``) and may use that
    etag in ``if_match`` (of ``put`` and ``delete``). User metadata may not use those names
    (:class:`InvalidValue`). Values without ``mkv-codec`` (written without
    the layer, or not shrinking) are read as they are.

    Holds no state but the codec. Conditional writes and deletes stay atomic
    where the wrapped store's are (one extra ``head`` each); ``copy`` is the wrapped
    store's own; counters, batches and ``get_many`` go through the layer one
    key at a time; ``url_for`` raises :class:`NotSupported` (a URL would
    hand out compressed bytes). Damaged compressed data raises
    :class:`CorruptValue`; this layer does not defend against deliberate
    tampering (use ``Encrypted`` beneath it for that).
    """

    def __init__(self, store: Store, codec: str = "zstd", level: int | None = None) -> None:
        """Wrap ``store``; :class:`InvalidValue` for an unknown codec or level.

        :class:`NotSupported` where the codec's package is not installed.
        """
        super().__init__(store)
        if codec not in CODEC_NAMES:
            raise InvalidValue(f"codec is one of {', '.join(CODEC_NAMES)}, not {codec!r}")
        if level is not None and (isinstance(level, bool) or not isinstance(level, int)):
            raise InvalidValue(f"level is an int, not {level!r}")
        self._writer: Codec | None = None if codec == "none" else codec_for(codec, level)
        self._readers: dict[str, Codec] = {} if self._writer is None else {codec: self._writer}
        self._codec = codec
        self._level = level
        self.capabilities = store.capabilities & ~_DROPPED

    @property
    def codec(self) -> str:
        """The codec new values are written with (``"none"``: written as they are)."""
        return self._codec

    def __repr__(self) -> str:
        level = "" if self._level is None else f", level={self._level}"
        return f"Compressed({self._inner!r}, codec={self._codec!r}{level})"

    # -- metadata -------------------------------------------------------------

    def _reader(self, name: str) -> Codec:
        codec = self._readers.get(name)
        if codec is None:
            codec = self._readers[name] = codec_for(name)
        return codec

    def _logical(self, meta: Meta) -> Meta:
        """The caller's view of a stored record."""
        metadata = meta.metadata
        if CODEC not in metadata:
            return meta
        size = _size(meta.key, metadata)
        etag = metadata.get(ETAG)
        if etag is None:
            raise CorruptValue(f"{meta.key!r} has damaged compression metadata")
        public = visible(metadata, CODEC)
        return Meta(meta.key, size, etag, meta[3], meta[4], public, meta[6])

    def _etag(self, meta: Meta) -> str:
        return meta.metadata.get(ETAG, meta.etag) if CODEC in meta.metadata else meta.etag

    def _decode(self, key: str, data: bytes, metadata: Mapping[str, str]) -> bytes:
        name = metadata.get(CODEC)
        if name is None:
            return data
        size = _size(key, metadata)
        value = self._reader(name).decompress(data, size)
        if len(value) != size:
            raise CorruptValue(f"{key!r} decompressed to {len(value)} bytes, not {size}")
        return value

    def _write(self, key: str, stored: IO[bytes] | bytes, options: PutOptions) -> Meta:
        options = inner_condition(self._inner, key, options, self._etag)
        if isinstance(stored, bytes):
            return self._inner._put(key, stored, options)
        return self._inner._put_stream(key, stored, options)

    # -- primitives -------------------------------------------------------------

    def _get(self, key: str) -> bytes:
        data, meta = self._inner._get_with_meta(key)
        return self._decode(key, data, meta.metadata)

    def _get_with_meta(self, key: str) -> tuple[bytes, Meta]:
        data, meta = self._inner._get_with_meta(key)
        return self._decode(key, data, meta.metadata), self._logical(meta)

    def _put(self, key: str, data: bytes, options: PutOptions) -> Meta:
        check_reserved(options.metadata, CODEC, "Compressed")
        packed = None
        etag_of_data = etag_soon(data)  # a large value is hashed while it is compressed
        if self._writer is not None and len(data) >= _MIN_SIZE:
            packed = self._writer.compress(data)
        if packed is None or len(packed) >= len(data):
            return self._write(key, data, options)
        etag = etag_of_data()
        stored = options._replace(metadata=self._tagged(options, len(data), etag))
        meta = self._write(key, packed, stored)
        return Meta(key, len(data), etag, meta[3], meta[4], options.metadata, meta[6])

    def _tagged(self, options: PutOptions, size: int, etag: str) -> dict[str, str]:
        assert self._writer is not None
        return {**options.metadata, CODEC: self._writer.name, SIZE: str(size), ETAG: etag}

    def _put_stream(self, key: str, stream: IO[bytes], options: PutOptions) -> Meta:
        check_reserved(options.metadata, CODEC, "Compressed")
        start = _position(stream)
        first = read_exact(stream, SMALL + 1)
        if len(first) <= SMALL:
            return self._put(key, self._checked_size(first), options)
        chunks = rejoined(first, stream)
        del first
        if self._writer is None:
            return self._write(key, ChunkReader.open(chunks), options)
        md5, counted = hashlib.md5(usedforsecurity=False), [0]

        def plain() -> Iterator[bytes]:
            for chunk in chunks:
                md5.update(chunk)
                counted[0] += len(chunk)
                yield chunk

        with spool() as packed:
            for piece in self._writer.compress_chunks(plain()):
                packed.write(piece)
            size = counted[0]
            if packed.tell() >= size and start is not None:
                stream.seek(start)  # it did not shrink: store it as it is
                return self._write(key, stream, options)
            packed.seek(0)
            etag = md5.hexdigest()
            tagged = options._replace(metadata=self._tagged(options, size, etag))
            meta = self._write(key, packed, tagged)
        return Meta(key, size, etag, meta[3], meta[4], options.metadata, meta[6])

    def _open(self, key: str) -> BinaryIO:
        while True:
            before = self._inner._head(key)
            if before.size <= SMALL and self._logical(before).size <= SMALL:
                return io.BytesIO(self._get(key))  # small both ways: one atomic read
            source = self._inner._open(key)
            try:
                after = self._inner._head(key)
            except BaseException:
                source.close()
                raise
            if after.version == before.version:
                break
            source.close()  # rewritten meanwhile: the stream may not match the metadata
        name = before.metadata.get(CODEC)
        if name is None:
            return source
        size = _size(key, before.metadata)
        return ChunkReader.open(self._chunks(key, self._reader(name), source, size), source)

    def _chunks(self, key: str, codec: Codec, source: IO[bytes], size: int) -> Iterator[bytes]:
        total = 0
        for piece in codec.decompress_stream(source):
            total += len(piece)
            if total > size:
                break
            yield piece
        if total != size:
            raise CorruptValue(f"{key!r} decompressed to {total} bytes or more, not {size}")

    def _url_for(self, key: str, method: str, expires: float | None) -> str:
        raise NotSupported("Compressed has no URLs: a URL would serve the compressed bytes")

    def copy(self, source: str, target: str) -> Meta:
        """Copy a value with its metadata by the wrapped store's own ``copy``, not recompressed."""
        check_key(source)
        check_key(target)
        return self._logical(self._inner.copy(source, target))


def _size(key: str, metadata: Mapping[str, str]) -> int:
    try:
        size = int(metadata[SIZE])
    except (KeyError, ValueError) as error:
        raise CorruptValue(f"{key!r} has damaged compression metadata") from error
    if size < 0:
        raise CorruptValue(f"{key!r} has damaged compression metadata")
    return size


def _position(stream: IO[bytes]) -> int | None:
    """Where a seekable stream is, to come back to; ``None`` where it cannot seek."""
    try:
        return stream.tell() if stream.seekable() else None
    except (OSError, ValueError, AttributeError):
        return None
