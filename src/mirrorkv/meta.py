"""`Meta`, the metadata record of one stored value, and `Listing`.

A `Meta` is immutable and cheap: it is a tuple underneath, and a store may
hand it the value itself (or a function) in place of the etag and a POSIX
timestamp in place of the datetime, so that nothing is computed until a
caller asks. Two records compare equal when their public fields are equal.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Self

from .errors import InvalidValue

__all__ = [
    "DEFAULT_CONTENT_TYPE",
    "NO_METADATA",
    "Details",
    "Listing",
    "Meta",
    "etag_of",
    "freeze_metadata",
]

#: The content type of a value stored without one.
DEFAULT_CONTENT_TYPE = "application/octet-stream"

#: The (read-only, shared) user metadata of a value stored without any.
NO_METADATA: Mapping[str, str] = MappingProxyType({})

EtagSource = str | bytes | bytearray | memoryview | Callable[[], str]


def etag_of(data: bytes | bytearray | memoryview) -> str:
    """The etag of a value: the hex MD5 of its bytes, as S3 reports for a single-part object."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def freeze_metadata(metadata: Mapping[str, str] | None) -> Mapping[str, str]:
    """A read-only copy of user metadata; checks that keys and values are ``str``."""
    if not isinstance(metadata, Mapping) and metadata is not None:
        raise InvalidValue(
            f"metadata must be a mapping of str to str, not {type(metadata).__name__}"
        )
    if not metadata:
        return NO_METADATA
    for name, value in metadata.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise InvalidValue("metadata names and values must be str")
    return MappingProxyType(dict(metadata))


class Details:
    """The fields a listing did not return, fetched by one call when first read.

    Object stores such as S3 list key, size, etag and time but not content
    type, user metadata or our version. A store puts one ``Details`` in those
    slots of each listed :class:`Meta` (and a function of it in the etag slot
    where the listing's etag is not the MD5); the first read of any of them
    calls ``fetch`` once (one HEAD request) and every later read reuses it.
    So listing a million keys costs a thousand LIST requests, not a million
    HEADs, and a caller that reads the details pays for exactly those it reads.

    :meth:`shared` makes one ``Details`` for every record of a listing,
    fetching by key: a listing then allocates nothing per record for it.
    """

    __slots__ = ("_by_key", "_fetch", "_meta")

    def __init__(self, fetch: Callable[[], Meta]) -> None:
        self._fetch: Callable[..., Meta] = fetch
        self._meta: Meta | None = None
        self._by_key: dict[str, Meta] | None = None

    @classmethod
    def shared(cls, fetch: Callable[[str], Meta]) -> Details:
        """One ``Details`` for many records: ``fetch(key)`` once per key read."""
        details = cls.__new__(cls)
        details._fetch = fetch
        details._meta = None
        details._by_key = {}
        return details

    def meta(self, key: str | None = None) -> Meta:
        """The fetched record (fetched on the first call); a shared one needs the ``key``."""
        # Two threads racing here both fetch; either result is a valid record.
        by_key = self._by_key
        if by_key is None:
            meta = self._meta
            if meta is None:
                meta = self._meta = self._fetch()
            return meta
        if key is None:
            raise TypeError("a shared Details fetches by key: call meta(key)")
        found = by_key.get(key)
        if found is None:
            found = by_key[key] = self._fetch(key)
        return found


class Meta(tuple[Any, ...]):
    """What a store knows about one value, without the value.

    Fields: ``key``; ``size`` in bytes; ``etag``, the hex MD5 of the value;
    ``modified``, a timezone-aware UTC datetime; ``content_type``;
    ``metadata``, read-only user metadata (str to str); ``version``, an opaque
    string that changes on every write of the key.

    A store may leave ``content_type``, ``metadata`` and ``version`` to a
    :class:`Details`, fetched when one of them is first read.
    """

    __slots__ = ()

    def __new__(
        cls,
        key: str,
        size: int,
        etag: EtagSource,
        modified: datetime | float,
        content_type: str | Details = DEFAULT_CONTENT_TYPE,
        metadata: Mapping[str, str] | Details = NO_METADATA,
        version: str | int | Details = "",
    ) -> Self:
        """Make a record; ``etag`` may be the value or a function, ``modified`` a POSIX time.

        ``content_type``, ``metadata`` and ``version`` may be a :class:`Details`.
        """
        return tuple.__new__(cls, (key, size, etag, modified, content_type, metadata, version))

    @property
    def key(self) -> str:
        """The key the value is stored under."""
        return self[0]  # type: ignore[no-any-return]

    @property
    def size(self) -> int:
        """The size of the value in bytes."""
        return self[1]  # type: ignore[no-any-return]

    @property
    def etag(self) -> str:
        """The hex MD5 of the value, computed when first asked where the store deferred it."""
        raw = self[2]
        if raw.__class__ is str:
            return raw
        if callable(raw):
            return str(raw())
        return etag_of(raw)

    @property
    def modified(self) -> datetime:
        """When the value was last written, as a timezone-aware UTC datetime."""
        raw = self[3]
        if isinstance(raw, datetime):
            return raw
        return datetime.fromtimestamp(raw, UTC)

    @property
    def content_type(self) -> str:
        """The content type recorded with the value."""
        raw = self[4]
        return raw if raw.__class__ is str else raw.meta(self[0]).content_type

    @property
    def metadata(self) -> Mapping[str, str]:
        """User metadata recorded with the value (read-only)."""
        raw = self[5]
        return raw.meta(self[0]).metadata if raw.__class__ is Details else raw

    @property
    def version(self) -> str:
        """An opaque string that differs after every write of the key."""
        raw = self[6]
        if raw.__class__ is str:
            return raw
        return raw.meta(self[0]).version if raw.__class__ is Details else str(raw)

    def replace(self, **changes: Any) -> Meta:
        """A copy with some fields changed, e.g. ``meta.replace(key="other")``."""
        fields = self.as_dict(evaluate=False)
        fields.update(changes)
        return Meta(**fields)

    def as_dict(self, *, evaluate: bool = True) -> dict[str, Any]:
        """The fields as a dict (with the etag and datetime computed unless ``evaluate=False``)."""
        if not evaluate:
            return dict(zip(_FIELDS, self, strict=True))
        return {
            "key": self.key,
            "size": self.size,
            "etag": self.etag,
            "modified": self.modified,
            "content_type": self.content_type,
            "metadata": dict(self.metadata),
            "version": self.version,
        }

    def _public(self) -> tuple[Any, ...]:
        return (
            self.key,
            self.size,
            self.etag,
            self.modified,
            self.content_type,
            dict(self.metadata),
            self.version,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Meta):
            return NotImplemented
        return self._public() == other._public()

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    def __hash__(self) -> int:
        return hash((self.key, self.version, self.etag))

    def __repr__(self) -> str:
        return (
            f"Meta(key={self.key!r}, size={self.size}, etag={self.etag!r}, "
            f"modified={self.modified.isoformat()!r}, content_type={self.content_type!r}, "
            f"metadata={dict(self.metadata)!r}, version={self.version!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (Meta, (*self._public()[:5], dict(self.metadata), self.version))


_FIELDS = ("key", "size", "etag", "modified", "content_type", "metadata", "version")


@dataclass(frozen=True, slots=True)
class Listing:
    """One level of a hierarchical listing, as S3 returns it with a delimiter.

    ``objects`` are the values directly at this level, ``prefixes`` the
    common prefixes (each ending with the delimiter) one level below; both in
    ascending key order.
    """

    objects: list[Meta] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
