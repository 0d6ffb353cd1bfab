"""The stored formats of `Encrypted` values: keys, header, segments, sealed etag.

Version 1 (metadata ``mkv-enc: aes-256-gcm/1``, any size): a value is stored
as ``header || segment_0 || ... || segment_{n-1}``:

* ``header`` = ``b"mkE\\x01"`` (magic and version), a 16-byte random salt,
  one byte giving the segment size (0: the whole value is one segment;
  16: segments of 64 KiB), one byte giving the length of the key id, and
  the key id (UTF-8);
* each segment is plaintext sealed with AES-256-GCM (ciphertext and a
  16-byte tag). A value of at most :data:`WHOLE` (1 MiB) bytes is one
  segment, so ``get`` and ``put`` make one AES-GCM call; a larger one is cut
  into 64 KiB segments, so that ``open`` checks each before handing it out
  with bounded memory. An empty value is one empty segment.

Each value has a key of its own, ``HMAC-SHA256(master, INFO || salt)``, so
nonces never repeat however many values a master key seals: segment ``i``
uses the nonce ``i`` (11 bytes, big-endian) followed by ``0x01`` for the
last segment and ``0x00`` for the others. The associated data of every
segment is the header and the store key, so a value moved to another key,
reordered, truncated or extended fails to open. The logical etag (the MD5
of the plaintext) is sealed under the same value key with a nonce no
segment uses, bound to the key id, store key, size, content type and user
metadata, and kept in the record's metadata (base64 of the salt and the
sealed etag).

Version 2, *bare* (metadata ``mkv-enc: aes-256-gcm/2``, values of at most
:data:`WHOLE` bytes): the stored value is the one AES-GCM segment alone, with
no header, so ``put`` hands the store the cipher's output without copying it
behind a header. The header's fields live in the metadata instead: the key
id in ``mkv-enc-key``, the salt in front of the sealed etag. The value key
and the nonce are those of version 1; the associated data is ``b"mkE\x02"``,
the salt, the key id's length and the key id, then the store key. A reader
therefore needs the record's metadata to open a bare value.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import os
from collections.abc import Iterator, Mapping
from typing import IO, Any

from ..errors import CorruptValue, InvalidValue, NotSupported
from ._compressed_common import SMALL, read_exact

__all__ = [
    "KEY_BYTES",
    "SEGMENT",
    "WHOLE",
    "Key",
    "Sealer",
    "bare_size",
    "key_fingerprint",
    "logical_size",
    "open_bare",
    "open_etag",
    "open_segments",
    "open_value",
    "parse_header",
    "tag_etag",
]

MAGIC = b"mkE\x01"
_BARE = b"mkE\x02"  # begins the associated data of a bare value, never stored
SALT = 16
TAG = 16
#: Plaintext bytes per segment of a value larger than :data:`WHOLE`.
SEGMENT = 64 * 1024
#: Values of at most this many bytes are sealed as one segment.
WHOLE = SMALL  # streams of at most this size are read whole and sealed whole
_SHIFT = 16  # SEGMENT == 1 << _SHIFT
#: Bytes of a master key (AES-256).
KEY_BYTES = 32
_SEALED = SEGMENT + TAG
_FIXED = len(MAGIC) + SALT + 2
_INFO = b"mirrorkv encrypted v1 value key\x00"
_ETAG_NONCE = b"\xff" * 11 + b"\x02"
_LAST = (b"\x00", b"\x01")


@functools.cache  # an import per value would cost about a microsecond; failures are not cached
def _aesgcm() -> Any:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError as error:
        raise NotSupported(
            "Encrypted needs the cryptography package: pip install 'mirrorkv[crypto]'"
        ) from error
    return AESGCM


def _invalid_tag() -> type[Exception]:
    from cryptography.exceptions import InvalidTag

    return InvalidTag


class Key:
    """A master key and its id. Its repr shows the id only, never the key."""

    __slots__ = ("_material", "id")

    def __init__(self, key_id: str, material: object) -> None:
        if not isinstance(material, bytes | bytearray | memoryview):
            raise InvalidValue(f"an encryption key is {KEY_BYTES} bytes, not a {_kind(material)}")
        if len(material) != KEY_BYTES:
            raise InvalidValue(f"an encryption key is {KEY_BYTES} bytes long")
        if not isinstance(key_id, str) or not key_id or len(key_id.encode()) > 255:
            raise InvalidValue("a key id is a non-empty str of at most 255 bytes of UTF-8")
        self.id = key_id
        self._material = bytes(material)

    def value_key(self, salt: bytes) -> bytes:
        """The key of the value with ``salt``."""
        return hmac.digest(self._material, _INFO + salt, "sha256")

    def same(self, other: Key) -> bool:
        """Whether both hold the same key material."""
        return hmac.compare_digest(self._material, other._material)

    def __repr__(self) -> str:
        return f"Key(id={self.id!r})"

    def __reduce__(self) -> Any:
        raise TypeError("encryption keys are not pickled")


def _kind(value: object) -> str:
    return type(value).__name__


def key_fingerprint(material: object) -> str:
    """The default id of a key: ``k`` and 12 hex digits of an HMAC of a constant under it."""
    if not isinstance(material, bytes | bytearray | memoryview) or len(material) != KEY_BYTES:
        raise InvalidValue(f"an encryption key is {KEY_BYTES} bytes")
    return "k" + hmac.digest(bytes(material), b"mirrorkv key id", "sha256")[:6].hex()


def header_size(key_id: str) -> int:
    """The header's length for values under ``key_id``."""
    return _FIXED + len(key_id.encode())


def logical_size(name: str, stored: int, key_id: str) -> int:
    """The plaintext size of a stored value of ``stored`` bytes; :class:`CorruptValue` if none."""
    body = stored - header_size(key_id)
    if body < TAG:
        raise CorruptValue(f"{name!r} is too short to be an encrypted value")
    if body <= WHOLE + TAG:
        return body - TAG
    count = -(-body // _SEALED)
    size = body - count * TAG
    if body - (count - 1) * _SEALED < TAG or size <= WHOLE:
        raise CorruptValue(f"{name!r} has the length of no encrypted value")
    return size


def parse_header(name: str, head: bytes) -> tuple[bytes, bool, int]:
    """The salt, whether the value is segmented, and the key-id length, from a header's start.

    ``head`` is the header's first :data:`_FIXED` bytes.
    """
    if len(head) < _FIXED or head[: len(MAGIC)] != MAGIC or head[_FIXED - 2] not in (0, _SHIFT):
        raise CorruptValue(f"{name!r} is not an encrypted value (or not of this version)")
    return head[len(MAGIC) : len(MAGIC) + SALT], head[_FIXED - 2] == _SHIFT, head[_FIXED - 1]


def _nonce(index: int, last: bool) -> bytes:
    return index.to_bytes(11, "big") + _LAST[last]


def _etag_context(
    key_id: str, name: str, size: int, content_type: str, metadata: Mapping[str, str]
) -> bytes:
    fields = [key_id, name, size, content_type, sorted(metadata.items())]
    return b"etag\x00" + json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode()


class Sealer:
    """Seals one value under a master key: a fresh salt and value key per instance."""

    def __init__(self, key: Key, name: str) -> None:
        self._key = key
        self._salt = os.urandom(SALT)
        self._aead = _aesgcm()(self._key.value_key(self._salt))
        self._name = name

    def _header(self, segmented: bool) -> bytes:
        key_id = self._key.id.encode()
        shift = _SHIFT if segmented else 0
        return MAGIC + self._salt + bytes([shift, len(key_id)]) + key_id

    def seal_bare(self, data: bytes) -> bytes:
        """A value of at most :data:`WHOLE` bytes sealed bare: AES-GCM's output, no header."""
        if len(data) > WHOLE:
            raise InvalidValue("only values of at most 1 MiB are sealed bare")
        sealed: bytes = self._aead.encrypt(_nonce(0, True), data, self._bare_context())
        return sealed

    def _bare_context(self) -> bytes:
        return _bare_context(self._salt, self._key.id, self._name)

    def seal(self, data: bytes) -> bytes:
        """A whole value sealed: header and segments."""
        size = len(data)
        header = self._header(size > WHOLE)
        context = header + self._name.encode()
        if size <= WHOLE:
            sealed: bytes = self._aead.encrypt(_nonce(0, True), data, context)
            return header + sealed
        view = memoryview(data)
        count = -(-size // SEGMENT)
        parts = [header]
        for index in range(count):
            piece = view[index * SEGMENT : (index + 1) * SEGMENT]
            parts.append(self._aead.encrypt(_nonce(index, index == count - 1), piece, context))
        return b"".join(parts)

    def seal_stream(self, source: IO[bytes], md5: Any | None) -> Iterator[bytes]:
        """The header, then each segment of ``source`` sealed; ``md5`` (if any) sees the plaintext.

        For sources of more than :data:`WHOLE` bytes (raises
        :class:`InvalidValue` for a shorter one: seal it whole).
        """
        header = self._header(True)
        context = header + self._name.encode()
        yield header
        current = read_exact(source, SEGMENT)
        index = 0
        while True:
            following = read_exact(source, SEGMENT) if len(current) == SEGMENT else b""
            last = not following
            if last and index * SEGMENT + len(current) <= WHOLE:
                raise InvalidValue("a stream of at most 1 MiB is sealed whole, not streamed")
            if md5 is not None:
                md5.update(current)
            yield self._aead.encrypt(_nonce(index, last), current, context)
            if last:
                return
            current, index = following, index + 1

    def seal_etag(
        self, etag: str, size: int, content_type: str, metadata: Mapping[str, str]
    ) -> str:
        """The logical etag sealed for the record's metadata (base64 of salt and ciphertext)."""
        context = _etag_context(self._key.id, self._name, size, content_type, metadata)
        sealed = self._aead.encrypt(_ETAG_NONCE, bytes.fromhex(etag), context)
        return base64.b64encode(self._salt + sealed).decode()


def _bare_context(salt: bytes, key_id: str, name: str) -> bytes:
    raw_id = key_id.encode()
    return _BARE + salt + bytes([len(raw_id)]) + raw_id + name.encode()


def bare_size(name: str, stored: int) -> int:
    """The plaintext size of a bare value of ``stored`` bytes; :class:`CorruptValue` if none."""
    if not TAG <= stored <= WHOLE + TAG:
        raise CorruptValue(f"{name!r} has the length of no encrypted value")
    return stored - TAG


def open_bare(name: str, data: bytes, key: Key, sealed_etag: str) -> bytes:
    """The plaintext of a bare value; its salt is the one in front of ``sealed_etag``.

    :class:`CorruptValue` unless it authenticates.
    """
    bare_size(name, len(data))
    salt = _sealed_etag(name, sealed_etag)[:SALT]
    aead = _aesgcm()(key.value_key(salt))
    try:
        return bytes(aead.decrypt(_nonce(0, True), data, _bare_context(salt, key.id, name)))
    except _invalid_tag() as error:
        raise _failed(name) from error


def _failed(name: str) -> CorruptValue:
    return CorruptValue(
        f"{name!r} failed authentication: tampered with, truncated, moved or under another key"
    )


def open_value(name: str, data: bytes, keys: Mapping[str, Key]) -> bytes:
    """The plaintext of a whole stored value; :class:`CorruptValue` unless it authenticates."""
    salt, segmented, id_length = parse_header(name, data[:_FIXED])
    start = _FIXED + id_length
    key = _key_for(name, data[_FIXED:start], keys)
    size = logical_size(name, len(data), key.id)
    if segmented != (size > WHOLE):
        raise CorruptValue(f"{name!r} has the length of no encrypted value")
    aead = _aesgcm()(key.value_key(salt))
    context = data[:start] + name.encode()
    view = memoryview(data)
    try:
        if not segmented:
            return bytes(aead.decrypt(_nonce(0, True), view[start:], context))
        parts = []
        for index, offset in enumerate(range(start, len(data), _SEALED)):
            nonce = _nonce(index, offset + _SEALED >= len(data))
            parts.append(aead.decrypt(nonce, view[offset : offset + _SEALED], context))
    except _invalid_tag() as error:
        raise _failed(name) from error
    return b"".join(parts)


def open_segments(
    name: str, source: IO[bytes], keys: Mapping[str, Key], start: bytes = b""
) -> Iterator[bytes]:
    """The plaintext of a stored stream, segment by segment, each checked before it is yielded.

    ``start`` is what the caller already read of ``source`` (at most the
    header's first bytes, e.g. to look for the magic).

    Raises :class:`CorruptValue` from the iteration where a segment fails,
    the stream ends before its last segment or goes on after it. Holds at
    most one segment (1 MiB for a value sealed whole) at a time.
    """
    fixed = start + read_exact(source, _FIXED - len(start))
    salt, segmented, id_length = parse_header(name, fixed)
    key_id = read_exact(source, id_length)
    key = _key_for(name, key_id, keys)
    aead = _aesgcm()(key.value_key(salt))
    context = fixed + key_id + name.encode()
    invalid = _invalid_tag()
    sealed = _SEALED if segmented else WHOLE + TAG + 1
    current = read_exact(source, sealed)
    if not segmented and len(current) == sealed:
        raise CorruptValue(f"{name!r} has the length of no encrypted value")
    index = 0
    while True:
        following = read_exact(source, _SEALED) if len(current) == _SEALED else b""
        last = not following
        try:
            yield aead.decrypt(_nonce(index, last), current, context)
        except invalid as error:
            raise _failed(name) from error
        if last:
            return
        current, index = following, index + 1


def _key_for(name: str, raw_id: bytes, keys: Mapping[str, Key]) -> Key:
    try:
        key_id = raw_id.decode()
    except UnicodeDecodeError:
        raise CorruptValue(f"{name!r} names no valid key id") from None
    key = keys.get(key_id)
    if key is None:
        raise CorruptValue(f"{name!r} is encrypted under key id {key_id!r}, which is not given")
    return key


def open_etag(
    name: str,
    sealed: str,
    key: Key,
    size: int,
    content_type: str,
    metadata: Mapping[str, str],
) -> str:
    """The logical etag sealed in a record's metadata; :class:`CorruptValue` unless it opens."""
    raw = _sealed_etag(name, sealed)
    aead = _aesgcm()(key.value_key(raw[:SALT]))
    context = _etag_context(key.id, name, size, content_type, metadata)
    try:
        return bytes(aead.decrypt(_ETAG_NONCE, raw[SALT:], context)).hex()
    except _invalid_tag() as error:
        raise CorruptValue(
            f"{name!r} failed authentication of its metadata: tampered with or another key"
        ) from error


def _sealed_etag(name: str, sealed: str) -> bytes:
    """The salt and sealed etag from the metadata's base64; :class:`CorruptValue` if damaged."""
    try:
        raw = base64.b64decode(sealed, validate=True)
    except (binascii.Error, ValueError) as error:
        raise CorruptValue(f"{name!r} has a damaged sealed etag") from error
    if len(raw) != SALT + 16 + TAG:
        raise CorruptValue(f"{name!r} has a damaged sealed etag")
    return raw


def tag_etag(sealed: bytes) -> str:
    """The etag of a write that hashes no plaintext: the hex of its last AES-GCM tag.

    ``sealed`` is the stored value, or any part of it ending with its last
    segment. The tag is unique per write (every value has a key of its own)
    and is stored in clear in the value anyway, so it reveals nothing.
    """
    return sealed[-TAG:].hex()


def md5() -> Any:
    """A fresh MD5 for the logical etag."""
    return hashlib.md5(usedforsecurity=False)
