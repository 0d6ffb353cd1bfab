"""The Redis index's key names, and records to and from the fields of an object hash.

Names (``ns`` is the namespace, ``B`` the bucket as given, with ``%`` and
``}`` written ``%25`` and ``%7D`` so that the hash tag ends where the
bucket does and no two buckets share a name):

* ``{ns}:buckets``: a set of every bucket ever written through an index;
* ``{ns:B}:keys``: a sorted set of the bucket's keys, all with score 0, so
  ``ZRANGEBYLEX`` ranges them in the byte order of their UTF-8 (S3 order);
* ``{ns:B}:object:<key>``: a hash with the S3 field names ``Key``, ``Size``,
  ``ETag``, ``LastModified`` (POSIX seconds, Python's shortest exact float
  text), ``ContentType``, ``Metadata`` (a JSON object) and ``VersionId``;
* ``{ns:B}:usage``: a hash of ``objects:<prefix>`` and ``bytes:<prefix>``
  for ``""`` and every prefix ending in ``/`` that holds an object;
* ``{ns:B}:prefixes``: a sorted set of those prefixes (but ``""``), so that
  the child directories of a prefix are found by seeking in it;
* ``{ns:B}:dirty``: a sorted set, the journal of keys to repair;
* ``{ns:B}:checkpoints``: a hash of checkpoint name to value.

Every name of a bucket starts with the hash tag ``{ns:B}``: on a cluster a
bucket lives in one slot, where its scripts can reach all of it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType

from ..errors import InvalidValue
from ..meta import DEFAULT_CONTENT_TYPE, NO_METADATA, Meta
from ._index_rows import meta_row

__all__ = [
    "MAX_SIZE",
    "BucketNames",
    "bucket_names",
    "byte_range",
    "expected_fields",
    "fields_meta",
    "meta_fields",
    "upper_bound",
]

#: The largest size the index holds: its scripts add sizes as Lua doubles.
MAX_SIZE = (1 << 53) - 1


@dataclass(frozen=True, slots=True)
class BucketNames:
    """The Redis key names of one bucket of an index (see the module docstring)."""

    keys: str
    usage: str
    prefixes: str
    dirty: str
    checkpoints: str
    #: The name of a key's object hash is this followed by the key.
    object_prefix: str

    def object(self, key: str) -> str:
        """The name of the hash holding the entry of ``key``."""
        return self.object_prefix + key

    @property
    def scripts(self) -> tuple[str, str, str]:
        """The ``KEYS`` every write script takes: keys, usage and prefixes."""
        return (self.keys, self.usage, self.prefixes)


def bucket_names(namespace: str, bucket: str) -> BucketNames:
    """The names of ``bucket``'s keys in ``namespace``."""
    tag = "{" + namespace + ":" + bucket.replace("%", "%25").replace("}", "%7D") + "}:"
    return BucketNames(
        keys=tag + "keys",
        usage=tag + "usage",
        prefixes=tag + "prefixes",
        dirty=tag + "dirty",
        checkpoints=tag + "checkpoints",
        object_prefix=tag + "object:",
    )


def meta_fields(meta: Meta) -> tuple[str, str, str, str, str, str, str]:
    """``(key, size, etag, modified, content_type, metadata, version)`` as stored, all str.

    Reads every field (a listed record's deferred ones are fetched here);
    :class:`InvalidValue` for a size the index cannot hold.
    """
    size, etag, modified, content_type, metadata, version = meta_row(meta)
    if size > MAX_SIZE:
        raise InvalidValue(f"a size above 2**53 - 1 is not held by the Redis index: {size}")
    return (
        meta.key,
        str(size),
        etag,
        repr(modified),
        DEFAULT_CONTENT_TYPE if content_type is None else content_type,
        metadata or "{}",
        version,
    )


def expected_fields(expected: object) -> tuple[str, str, str]:
    """A swap's expected entry as its script reads it: ``("1", etag, version)`` or ``("",) * 3``.

    ``expected`` is ``(etag, version)`` (two str) or None for "no entry";
    anything else raises :class:`InvalidValue`.
    """
    if expected is None:
        return ("", "", "")
    if (
        isinstance(expected, tuple)
        and len(expected) == 2
        and isinstance(expected[0], str)
        and isinstance(expected[1], str)
    ):
        return ("1", expected[0], expected[1])
    raise InvalidValue(f"an expected entry is (etag, version) or None, not {expected!r}")


_new_meta = tuple.__new__
_loads = json.loads


def fields_meta(key: str, fields: Sequence[str]) -> Meta:
    """The record of ``key`` from its hash's fields, in the order of ``FIELDS`` (str)."""
    size, etag, modified, content_type, metadata, version = fields
    return _new_meta(
        Meta,
        (
            key,
            int(size),
            etag,
            float(modified),
            content_type,
            NO_METADATA if metadata == "{}" else MappingProxyType(_loads(metadata)),
            version,
        ),
    )


def byte_range(prefix: str, start_after: str | None = None) -> tuple[bytes, bytes]:
    """``ZRANGEBYLEX`` bounds of the keys starting with ``prefix`` and after ``start_after``."""
    encoded = prefix.encode()
    if start_after is not None and start_after >= prefix:
        low = b"(" + start_after.encode()
    else:
        low = b"[" + encoded if encoded else b"-"
    return low, upper_bound(encoded)


def upper_bound(prefix: bytes) -> bytes:
    """The ``ZRANGEBYLEX`` max below every key starting with ``prefix`` (UTF-8).

    UTF-8 never holds the byte 0xFF, so the last byte plus one is always a byte.
    """
    if not prefix:
        return b"+"
    return b"(" + prefix[:-1] + bytes((prefix[-1] + 1,))
