"""`Encrypted`: values sealed with AES-256-GCM in the wrapped store; keys rotate in place.

See ``docs/layers/encrypted.md`` for the threat model and
:mod:`mirrorkv.layers._encrypted_format` for the stored format.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, BinaryIO

from ..errors import CorruptValue, InvalidValue, KeyNotFound, NotSupported, PreconditionFailed
from ..keys import check_prefix
from ..meta import Meta, etag_of
from ..store import CHUNK_SIZE, Capability, PutOptions, Store
from ._compressed_common import (
    SMALL,
    ChunkReader,
    check_reserved,
    delete_if_logical,
    inner_condition,
    read_exact,
    rejoined,
    spool,
    visible,
)
from ._encrypted_format import (
    MAGIC,
    Key,
    Sealer,
    key_fingerprint,
    logical_size,
    md5,
    open_etag,
    open_segments,
    open_value,
)
from .base import Layer

__all__ = ["ETAG", "FORMAT", "KEY_ID", "MARK", "Encrypted"]

#: Metadata name marking an encrypted value; its value is the format, :data:`FORMAT`.
MARK = "mkv-enc"
#: Metadata name of the id of the key a value is encrypted under.
KEY_ID = "mkv-enc-key"
#: Metadata name of the sealed logical etag (base64).
ETAG = "mkv-enc-etag"
#: The format this layer writes: AES-256-GCM in 64 KiB segments, version 1.
FORMAT = "aes-256-gcm/1"

_DROPPED = (
    Capability.URLS
    | Capability.SERVER_SIDE_COPY
    | Capability.NATIVE_COUNTERS
    | Capability.TRANSACTIONS
    | Capability.NATIVE_TTL  # put(ttl=) is not forwarded
)

OldKeys = Mapping[str, bytes] | Iterable[bytes]


class Encrypted(Layer):
    """``store`` with every value encrypted and authenticated (AES-256-GCM, ``mirrorkv[crypto]``).

    ``key`` is 32 random bytes (e.g. ``os.urandom(32)``); ``key_id`` names
    it in each value's metadata (default: a fingerprint of the key, ``k``
    and 12 hex digits, which reveals nothing of it). ``old_keys`` are keys
    values may still be encrypted under: a mapping of id to key, or keys
    alone (named by fingerprint). New values always use ``key``.

    Callers see plaintext, its size and its MD5 etag (usable in
    ``if_match`` of ``put`` and ``delete``); the wrapped store holds ciphertext and the reserved
    metadata ``mkv-enc`` (format), ``mkv-enc-key`` (key id) and
    ``mkv-enc-etag`` (the etag, sealed and bound to the key id, store key,
    size, content type and user metadata). User metadata may not use those
    names (:class:`InvalidValue`). A value whose ciphertext or metadata was
    altered, truncated, reordered, moved to another key, or that is under
    an unknown or wrong key raises :class:`CorruptValue`, never returns
    altered data. A value without the format's header (written without the
    layer) raises :class:`CorruptValue` too, unless ``allow_plaintext=True``
    (a migration aid: such values read as they are, and :meth:`rotate`
    encrypts them; an attacker who can write the store can then plant
    plaintext values).

    Keys never appear in reprs, logs or errors. Holds the keys and nothing
    else; conditional writes and deletes stay atomic where the wrapped
    store's are (one extra ``head`` each); ``copy``, counters and batches go through the
    layer key by key (values are bound to their key, so ``copy``
    re-encrypts); ``url_for`` raises :class:`NotSupported`.
    """

    def __init__(
        self,
        store: Store,
        key: bytes,
        *,
        key_id: str | None = None,
        old_keys: OldKeys | None = None,
        allow_plaintext: bool = False,
    ) -> None:
        """Wrap ``store``; :class:`InvalidValue` for a key that is not 32 bytes or a bad key id.

        :class:`NotSupported` where the cryptography package is missing.
        """
        super().__init__(store)
        current = Key(key_fingerprint(key) if key_id is None else key_id, key)
        Sealer(current, "check")  # fails here, not at the first write, without cryptography
        keys = {current.id: current}
        for old in _old_keys(old_keys):
            _add(keys, old)
        self._keyring = keys
        self._current = current
        self._lock = threading.Lock()
        self._allow_plaintext = bool(allow_plaintext)
        self.capabilities = store.capabilities & ~_DROPPED

    @property
    def key_id(self) -> str:
        """The id of the key new values are encrypted under."""
        return self._current.id

    @property
    def key_ids(self) -> list[str]:
        """The ids of every key values may be read with, sorted."""
        return sorted(self._keyring)

    def __repr__(self) -> str:
        return f"Encrypted({self._inner!r}, key_id={self._current.id!r})"

    # -- records ----------------------------------------------------------------

    def _logical(self, meta: Meta) -> Meta:
        """The caller's view of a stored record; :class:`CorruptValue` where it fails its checks."""
        metadata = meta.metadata
        if MARK not in metadata:
            if self._allow_plaintext:
                return meta
            raise CorruptValue(f"{meta.key!r} is not encrypted (written without the layer?)")
        if metadata[MARK] != FORMAT:
            raise CorruptValue(f"{meta.key!r} is in an unknown format {metadata[MARK]!r}")
        key = self._keyring.get(metadata.get(KEY_ID, ""))
        if key is None:
            key_id = metadata.get(KEY_ID)
            raise CorruptValue(f"{meta.key!r} is encrypted under key id {key_id!r}, not given")
        size = logical_size(meta.key, meta.size, key.id)
        public = visible(metadata, MARK)
        content_type = meta.content_type
        etag = open_etag(meta.key, metadata.get(ETAG, ""), key, size, content_type, public)
        return Meta(meta.key, size, etag, meta[3], content_type, public, meta[6])

    def _etag(self, meta: Meta) -> str:
        return self._logical(meta).etag

    def _decode(self, key: str, data: bytes) -> bytes:
        if self._allow_plaintext and not data.startswith(MAGIC):
            return data
        return open_value(key, data, self._keyring)

    def _sealed(
        self, key: str, data: bytes, options: PutOptions, master: Key
    ) -> tuple[bytes, PutOptions, str]:
        """The stored value, its write options and the logical etag."""
        sealer = Sealer(master, key)
        etag = etag_of(data)
        metadata = self._tags(sealer, master, etag, len(data), options)
        return sealer.seal(data), options._replace(metadata=metadata), etag

    def _tags(
        self, sealer: Sealer, master: Key, etag: str, size: int, options: PutOptions
    ) -> dict[str, str]:
        sealed = sealer.seal_etag(etag, size, options.content_type, options.metadata)
        return {**options.metadata, MARK: FORMAT, KEY_ID: master.id, ETAG: sealed}

    # -- primitives -------------------------------------------------------------

    def _get(self, key: str) -> bytes:
        return self._decode(key, self._inner._get(key))

    def _get_with_meta(self, key: str) -> tuple[bytes, Meta]:
        data, meta = self._inner._get_with_meta(key)
        return self._decode(key, data), self._logical(meta)

    def _head(self, key: str) -> Meta:
        return self._logical(self._inner._head(key))

    def _list(self, prefix: str, start_after: str | None) -> Iterator[Meta]:
        return map(self._logical, self._inner._list(prefix, start_after))

    def _delete_if(self, key: str, etag: str) -> None:
        delete_if_logical(self._inner, key, etag, self._etag)

    def _put(self, key: str, data: bytes, options: PutOptions) -> Meta:
        check_reserved(options.metadata, MARK, "Encrypted")
        stored, sealed, etag = self._sealed(key, data, options, self._current)
        meta = self._inner._put(key, stored, inner_condition(self._inner, key, sealed, self._etag))
        return Meta(key, len(data), etag, meta[3], meta[4], options.metadata, meta[6])

    def _put_stream(self, key: str, stream: IO[bytes], options: PutOptions) -> Meta:
        check_reserved(options.metadata, MARK, "Encrypted")
        first = read_exact(stream, SMALL + 1)
        if len(first) <= SMALL:
            return self._put(key, self._checked_size(first), options)
        master = self._current
        sealer, digest = Sealer(master, key), md5()
        plain = ChunkReader.open(rejoined(first, stream))
        del first
        with spool() as stored:
            for piece in sealer.seal_stream(plain, digest):
                stored.write(piece)
            size = logical_size(key, stored.tell(), master.id)
            stored.seek(0)
            etag = digest.hexdigest()
            tagged = options._replace(metadata=self._tags(sealer, master, etag, size, options))
            condition = inner_condition(self._inner, key, tagged, self._etag)
            meta = self._inner._put_stream(key, stored, condition)
        return Meta(key, size, etag, meta[3], meta[4], options.metadata, meta[6])

    def _open(self, key: str) -> BinaryIO:
        source = self._inner._open(key)
        try:
            stream: IO[bytes] = source
            if self._allow_plaintext:
                head = read_exact(source, len(MAGIC))
                rest = iter(lambda: source.read(CHUNK_SIZE), b"")
                if head != MAGIC:
                    return ChunkReader.open(itertools.chain((head,), rest), source)
                stream = ChunkReader.open(itertools.chain((head,), rest))
            segments = open_segments(key, stream, self._keyring)
            first = next(segments)  # the header and first segment are checked before returning
        except BaseException:
            source.close()
            raise
        return ChunkReader.open(itertools.chain((first,), segments), source)

    def _url_for(self, key: str, method: str, expires: float | None) -> str:
        raise NotSupported("Encrypted has no URLs: a URL would serve the ciphertext")

    # -- key rotation -----------------------------------------------------------

    def rotate(self, new_key: bytes, *, new_key_id: str | None = None, prefix: str = "") -> int:
        """Make ``new_key`` current and re-encrypt under it every value below ``prefix``.

        Returns how many values were re-encrypted. The previous keys stay
        readable (values not yet reached read as before, from any thread),
        and writes made meanwhile through this layer use ``new_key``. Each
        value is rewritten with ``if_match`` on the record it was read
        from, so a concurrent write is never overwritten: the value is read
        again (and left alone if that write used ``new_key``). Values are
        handled one at a time, each held whole in memory. A value that fails
        authentication stops the rotation with :class:`CorruptValue`; values
        without encryption are left alone unless ``allow_plaintext``.
        Writers through other layer instances still holding only the old key
        keep writing under it: give them ``new_key`` first, or rotate again.
        """
        check_prefix(prefix)
        new = Key(key_fingerprint(new_key) if new_key_id is None else new_key_id, new_key)
        with self._lock:
            keys = dict(self._keyring)
            _add(keys, new)
            self._keyring = keys  # replaced, never mutated: readers need no lock
            self._current = new
        count = 0
        for meta in self._inner._list(prefix, None):
            if self._needs_rotation(meta.metadata, new):
                count += self._reseal(meta.key, new)
        return count

    def _needs_rotation(self, metadata: Mapping[str, str], new: Key) -> bool:
        if MARK not in metadata:
            return self._allow_plaintext
        return metadata.get(KEY_ID) != new.id

    def _reseal(self, key: str, new: Key) -> int:
        """Re-encrypt one value under ``new``; 1 where it was rewritten, else 0."""
        while True:
            try:
                data, meta = self._inner._get_with_meta(key)
            except KeyNotFound:
                return 0
            metadata = meta.metadata
            if not self._needs_rotation(metadata, new):
                return 0
            plain = open_value(key, data, self._keyring) if MARK in metadata else data
            options = PutOptions(meta.content_type, visible(metadata, MARK), if_match=meta.etag)
            stored, sealed, _ = self._sealed(key, plain, options, new)
            try:
                self._inner._put(key, stored, sealed)
            except PreconditionFailed:
                continue  # written meanwhile: look again
            return 1


def _old_keys(old_keys: OldKeys | None) -> Iterator[Key]:
    if old_keys is None:
        return
    if isinstance(old_keys, bytes | bytearray | memoryview):
        raise InvalidValue("old_keys is a mapping of key id to key, or a list of keys")
    if isinstance(old_keys, Mapping):
        for key_id, material in old_keys.items():
            yield Key(key_id, material)
        return
    for material in old_keys:
        yield Key(key_fingerprint(material), material)


def _add(keys: dict[str, Key], key: Key) -> None:
    """Add ``key`` to ``keys``; :class:`InvalidValue` where its id names another key."""
    known = keys.get(key.id)
    if known is not None and not known.same(key):
        raise InvalidValue(f"key id {key.id!r} is given to two different keys")
    keys[key.id] = key
