"""`Encrypted`: values sealed with AES-256-GCM in the wrapped store; keys rotate in place.

See ``docs/layers/encrypted.md`` for the threat model and
:mod:`mirrorkv.layers._encrypted_format` for the stored format.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, BinaryIO, Literal

from ..errors import CorruptValue, InvalidValue, KeyNotFound, NotSupported, PreconditionFailed
from ..keys import check_prefix
from ..meta import Meta, etag_of
from ..store import Capability, PutOptions, Store
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
from ._encrypted_format import (
    MAGIC,
    WHOLE,
    Key,
    Sealer,
    bare_size,
    key_fingerprint,
    logical_size,
    md5,
    open_bare,
    open_etag,
    open_segments,
    open_value,
    tag_etag,
)

__all__ = [
    "BARE_FORMAT",
    "ETAG",
    "ETAG_MODES",
    "FORMAT",
    "KEY_ID",
    "MARK",
    "Encrypted",
    "EtagMode",
]

#: Metadata name marking an encrypted value; its value is the format, :data:`FORMAT`.
MARK = "mkv-enc"
#: Metadata name of the id of the key a value is encrypted under.
KEY_ID = "mkv-enc-key"
#: Metadata name of the sealed logical etag (base64).
ETAG = "mkv-enc-etag"
#: The format this layer writes: AES-256-GCM in 64 KiB segments, version 1.
FORMAT = "aes-256-gcm/1"
#: The format of values of at most 1 MiB written with ``etag="tag"``: one AES-GCM
#: segment and no header (the salt is kept in front of the sealed etag), version 2.
BARE_FORMAT = "aes-256-gcm/2"
_FORMATS = (FORMAT, BARE_FORMAT)

_DROPPED = (
    Capability.URLS
    | Capability.SERVER_SIDE_COPY
    | Capability.NATIVE_COUNTERS
    | Capability.TRANSACTIONS
    | Capability.NATIVE_TTL  # put(ttl=) is not forwarded
)

OldKeys = Mapping[str, bytes] | Iterable[bytes]

#: How ``put`` makes the logical etag: ``"md5"`` of the plaintext, or from the AES-GCM ``"tag"``.
EtagMode = Literal["md5", "tag"]
#: The values ``Encrypted(etag=)`` takes.
ETAG_MODES: tuple[EtagMode, ...] = ("md5", "tag")


class Encrypted(LogicalRecords):
    """``store`` with every value encrypted and authenticated (AES-256-GCM, ``mirrorkv[crypto]``).

    ``key`` is 32 random bytes (e.g. ``os.urandom(32)``); ``key_id`` names
    it in each value's metadata (default: a fingerprint of the key, ``k``
    and 12 hex digits, which reveals nothing of it). ``old_keys`` are keys
    values may still be encrypted under: a mapping of id to key, or keys
    alone (named by fingerprint). New values always use ``key``.

    Callers see plaintext, its size and its etag (usable in ``if_match``
    of ``put`` and ``delete``). With ``etag="md5"`` (the default) the etag
    is the MD5 of the plaintext, as the Store contract has it, which every
    ``put`` computes. With ``etag="tag"`` ``put`` hashes nothing: the etag
    is the hex of the write's last AES-GCM tag, unique per write (equal
    values get different etags, a rewrite of the same value a new one) and
    :attr:`content_etags` is False. Either layer reads values written by
    the other; :meth:`rotate` keeps each value's etag. The wrapped store
    holds ciphertext and the reserved metadata ``mkv-enc`` (format),
    ``mkv-enc-key`` (key id) and ``mkv-enc-etag`` (the etag, sealed and
    bound to the key id, store key, size, content type and user
    metadata). User metadata may not use those
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
        etag: EtagMode = "md5",
    ) -> None:
        """Wrap ``store``; :class:`InvalidValue` for a bad key, key id or ``etag`` mode.

        :class:`NotSupported` where the cryptography package is missing.
        """
        super().__init__(store)
        if etag not in ETAG_MODES:
            raise InvalidValue(f"etag is one of {ETAG_MODES}, not {etag!r}")
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
        self._etag_mode: EtagMode = etag
        self.content_etags = etag == "md5"

    @property
    def key_id(self) -> str:
        """The id of the key new values are encrypted under."""
        return self._current.id

    @property
    def key_ids(self) -> list[str]:
        """The ids of every key values may be read with, sorted."""
        return sorted(self._keyring)

    @property
    def etag_mode(self) -> EtagMode:
        """How ``put`` makes etags: ``"md5"`` of the plaintext or from the AES-GCM ``"tag"``."""
        return self._etag_mode

    def __repr__(self) -> str:
        mode = "" if self.content_etags else f", etag={self._etag_mode!r}"
        return f"Encrypted({self._inner!r}, key_id={self._current.id!r}{mode})"

    # -- records ----------------------------------------------------------------

    def _logical(self, meta: Meta) -> Meta:
        """The caller's view of a stored record; :class:`CorruptValue` where it fails its checks."""
        metadata = meta.metadata
        if self._plaintext(meta.key, metadata):
            return meta
        key = self._record_key(meta)
        if metadata[MARK] == BARE_FORMAT:
            size = bare_size(meta.key, meta.size)
        else:
            size = logical_size(meta.key, meta.size, key.id)
        public = visible(metadata, MARK)
        content_type = meta.content_type
        etag = open_etag(meta.key, metadata.get(ETAG, ""), key, size, content_type, public)
        return Meta(meta.key, size, etag, meta[3], content_type, public, meta[6])

    def _plaintext(self, key: str, metadata: Mapping[str, str]) -> bool:
        """Whether a record is not encrypted (allowed); :class:`CorruptValue` where not allowed."""
        if MARK in metadata:
            return False
        if self._allow_plaintext:
            return True
        raise CorruptValue(f"{key!r} is not encrypted (written without the layer?)")

    def _record_key(self, meta: Meta) -> Key:
        """The key of an encrypted record; :class:`CorruptValue` for an unknown format or key."""
        metadata = meta.metadata
        if metadata[MARK] not in _FORMATS:
            raise CorruptValue(f"{meta.key!r} is in an unknown format {metadata[MARK]!r}")
        key = self._keyring.get(metadata.get(KEY_ID, ""))
        if key is None:
            key_id = metadata.get(KEY_ID)
            raise CorruptValue(f"{meta.key!r} is encrypted under key id {key_id!r}, not given")
        return key

    def _decode(self, key: str, data: bytes, meta: Meta) -> bytes:
        """The plaintext of ``data``, read together with its own record ``meta``."""
        metadata = meta.metadata
        if self._plaintext(key, metadata):
            return data
        master = self._record_key(meta)
        if metadata[MARK] == BARE_FORMAT:
            return open_bare(key, data, master, metadata.get(ETAG, ""))
        return open_value(key, data, self._keyring)

    def _read(self, key: str) -> bytes:
        """The plaintext of ``key``, read with its record (which a bare value needs)."""
        data, meta = self._inner._get_with_meta(key)
        return self._decode(key, data, meta)

    def _sealed(
        self, key: str, data: bytes, options: PutOptions, master: Key, etag: str | None = None
    ) -> tuple[bytes, PutOptions, str]:
        """The stored value, its write options and the logical etag (``etag`` where given)."""
        sealer = Sealer(master, key)
        if etag is None and self.content_etags:
            etag = etag_of(data)
        # Bare: the cipher's output is stored as it is, not copied behind a header.
        bare = not self.content_etags and len(data) <= WHOLE
        stored = sealer.seal_bare(data) if bare else sealer.seal(data)
        if etag is None:
            etag = tag_etag(stored)
        layout = BARE_FORMAT if bare else FORMAT
        metadata = self._tags(sealer, master, etag, len(data), options, layout)
        return stored, options._replace(metadata=metadata), etag

    def _tags(
        self,
        sealer: Sealer,
        master: Key,
        etag: str,
        size: int,
        options: PutOptions,
        layout: str = FORMAT,
    ) -> dict[str, str]:
        sealed = sealer.seal_etag(etag, size, options.content_type, options.metadata)
        return {**options.metadata, MARK: layout, KEY_ID: master.id, ETAG: sealed}

    # -- primitives -------------------------------------------------------------

    def _get(self, key: str) -> bytes:
        if self.content_etags:  # this layer writes version 1: the value alone likely opens
            data = self._inner._get(key)
            if data.startswith(MAGIC):
                with contextlib.suppress(CorruptValue):  # e.g. bare, or plaintext: see its record
                    return open_value(key, data, self._keyring)
        return self._read(key)

    def _get_with_meta(self, key: str) -> tuple[bytes, Meta]:
        data, meta = self._inner._get_with_meta(key)
        return self._decode(key, data, meta), self._logical(meta)

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
        sealer, digest = Sealer(master, key), md5() if self.content_etags else None
        plain = ChunkReader.open(rejoined(first, stream))
        del first
        with spool() as stored:
            piece = b""
            for piece in sealer.seal_stream(plain, digest):
                stored.write(piece)
            size = logical_size(key, stored.tell(), master.id)
            stored.seek(0)
            etag = tag_etag(piece) if digest is None else digest.hexdigest()
            tagged = options._replace(metadata=self._tags(sealer, master, etag, size, options))
            condition = inner_condition(self._inner, key, tagged, self._etag)
            meta = self._inner._put_stream(key, stored, condition)
        return Meta(key, size, etag, meta[3], meta[4], options.metadata, meta[6])

    def _open(self, key: str, *, sniff: bool = True) -> BinaryIO:
        source = self._inner._open(key)
        try:
            head = read_exact(source, len(MAGIC))
            if head == MAGIC or not sniff:
                segments = open_segments(key, source, self._keyring, head)
                try:
                    first = next(segments)  # the header and first segment are checked first
                except CorruptValue:
                    if not sniff:
                        raise
                else:
                    return ChunkReader.open(itertools.chain((first,), segments), source)
        except BaseException:
            source.close()
            raise
        source.close()
        return self._open_by_record(key)

    def _open_by_record(self, key: str) -> BinaryIO:
        """Open ``key`` as its record says, where its stream is not version 1 (or failed)."""
        meta = self._inner._head(key)
        mark = meta.metadata.get(MARK)
        if mark is None:
            if not self._allow_plaintext:
                raise CorruptValue(f"{key!r} is not encrypted (written without the layer?)")
            source = self._inner._open(key)
            if self._inner._head(key).version == meta.version:
                return source  # unchanged since the record was read: the plaintext it describes
            source.close()
        elif mark != BARE_FORMAT:
            self._record_key(meta)  # raises for an unknown format or key
            return self._open(key, sniff=False)
        return io.BytesIO(self._read(key))  # bare, so at most 1 MiB: read whole with its record

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
        handled one at a time, each held whole in memory, and keep their
        etags (so a caller's ``if_match`` still holds). A value that fails
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
            plain = self._decode(key, data, meta)
            # Re-sealed with its etag: rotation is not a logical write.
            etag = self._logical(meta).etag if MARK in metadata else None
            options = PutOptions(meta.content_type, visible(metadata, MARK), if_match=meta.etag)
            stored, sealed, _ = self._sealed(key, plain, options, new, etag)
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
