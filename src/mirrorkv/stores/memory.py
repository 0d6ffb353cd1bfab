"""`MemoryStore`: values in a dict, with the full contract and nothing persisted."""

from __future__ import annotations

import bisect
import itertools
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ..errors import InvalidKey, KeyNotFound, PreconditionFailed
from ..keys import check_key, prefix_upper_bound
from ..meta import DEFAULT_CONTENT_TYPE, NO_METADATA, Meta
from ..store import (
    Capability,
    PutOptions,
    Store,
    check_counter_arguments,
    check_precondition,
    parse_counter,
)
from ..urls import reject_unknown

__all__ = ["MemoryStore"]

_now = time.time
_new_meta = tuple.__new__

# Each key maps to its Meta, built with the value itself in the etag slot
# (Meta computes the MD5 from it when asked): one tuple per write, replaced by
# a single atomic dict assignment, and head() allocates nothing.
_VALUE = 2
_ABSENT: Any = object()


class MemoryStore(Store):
    """A store held in a dict: the fastest, for tests, caches and write-behind fronts.

    State: a dict of entries and a sorted key list built lazily on the first
    listing after a new key appears. Nothing survives the process. Writes
    take one lock, so conditional writes and counters are atomic across
    threads; reads take none. The etag is computed only when asked for.

    Listings iterate a sorted snapshot of the keys, so a key added after a
    listing started is not yielded and a key deleted before it is reached is
    skipped.
    """

    capabilities = (
        Capability.CONDITIONAL_WRITES | Capability.NATIVE_COUNTERS | Capability.TRANSACTIONS
    )

    def __new__(cls, max_bytes: int | None = None) -> MemoryStore:  # noqa: PYI034 - may be a subclass
        """A MemoryStore; with ``max_bytes``, a :class:`BoundedMemoryStore` (LRU eviction)."""
        if max_bytes is not None and cls is MemoryStore:
            from ._memory_bounded import BoundedMemoryStore

            return BoundedMemoryStore.__new__(BoundedMemoryStore, max_bytes)
        return super().__new__(cls)

    def __init__(self, max_bytes: int | None = None) -> None:
        self._entries: dict[str, Meta] = {}
        self._lock = threading.Lock()
        self._acquire = self._lock.acquire
        self._release = self._lock.release
        self._version = 0  # the last version given out; bumped under the lock
        # Keys ever inserted = len(entries) + removed: the sorted key list is
        # stale exactly when that count moved, so put need not test whether
        # its key is new. Every removal bumps _removed after it (under the lock).
        self._removed = 0
        # (keys inserted when sorted, the sorted keys): one attribute, so that
        # two listings racing to refresh it never pair one's count with the other's list.
        self._sorted: tuple[int, list[str]] = (-1, [])

    @classmethod
    def from_url(cls, url: Any, **options: Any) -> MemoryStore:
        """``memory://``: a new empty store (nothing is shared between two opens)."""
        reject_unknown(url, options)
        return cls()

    @property
    def url(self) -> str:
        """``memory://``."""
        return "memory://"

    def __repr__(self) -> str:
        return f"MemoryStore(<{len(self._entries)} keys>)"

    def __len__(self) -> int:
        """The number of keys."""
        return len(self._entries)

    # -- fast paths (the contract's semantics, without the generic layering) --

    def get(self, key: str) -> bytes:
        """The value of ``key``. Raises :class:`KeyNotFound` where absent."""
        try:
            value: bytes = self._entries[key][2]  # _VALUE, as a constant: no global lookup
        except (KeyError, TypeError):
            raise self._missing(key) from None
        return value

    def put(
        self,
        key: str,
        data: bytes | bytearray | memoryview,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> Meta:
        """Store ``data`` under ``key``; see :meth:`Store.put`."""
        if (
            content_type is None
            and metadata is None
            and if_match is None
            and if_none_match is None
            and data.__class__ is bytes
            and key.__class__ is str
            and 0 < len(key) <= 256
            and key.isascii()
            and "\x00" not in key
        ):
            # The common case, inlined: this is the hot path of every workload.
            # The lock is what makes conditional writes and incr atomic against
            # plain puts; benchmarks/memory_put_variants.py prices each step.
            now = _now()
            self._acquire()
            try:
                self._version = version = self._version + 1
                meta: Meta = _new_meta(
                    Meta, (key, len(data), data, now, DEFAULT_CONTENT_TYPE, NO_METADATA, version)
                )
                self._entries[key] = meta
            finally:
                self._release()
            return meta
        return super().put(
            key,
            data,
            content_type=content_type,
            metadata=metadata,
            if_match=if_match,
            if_none_match=if_none_match,
        )

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        """Remove ``key`` (while its etag is ``if_match``, if given); see :meth:`Store.delete`."""
        if (
            if_match is None
            and key.__class__ is str
            and 0 < len(key) <= 256
            and key.isascii()
            and "\x00" not in key
        ):
            self._acquire()
            try:
                self._remove(key)
            finally:
                self._release()
            return
        super().delete(key, if_match=if_match)

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` exists. An invalid key raises :class:`InvalidKey`."""
        try:
            if key in self._entries:
                return True
        except TypeError:
            pass
        check_key(key)
        return False

    # -- primitives ---------------------------------------------------------

    def _missing(self, key: object) -> KeyNotFound | InvalidKey:
        try:
            check_key(key)
        except InvalidKey as error:
            return error
        return KeyNotFound(str(key))

    def _new(self, key: str, data: bytes, content_type: str, metadata: Mapping[str, str]) -> Meta:
        """A Meta with the next version; the caller holds the lock (versions follow write order)."""
        self._version = version = self._version + 1
        fields = (key, len(data), data, _now(), content_type, metadata, version)
        meta: Meta = _new_meta(Meta, fields)
        return meta

    def _store(self, meta: Meta) -> None:
        """Insert or replace an entry; the caller holds the lock."""
        self._entries[meta[0]] = meta

    def _remove(self, key: str) -> None:
        """Remove an entry if present; the caller holds the lock."""
        if self._entries.pop(key, _ABSENT) is not _ABSENT:
            self._removed += 1

    def _get(self, key: str) -> bytes:
        try:
            value: bytes = self._entries[key][_VALUE]
        except KeyError:
            raise KeyNotFound(key) from None
        return value

    def _put(self, key: str, data: bytes, options: PutOptions) -> Meta:
        with self._lock:
            if options.if_match is not None or options.if_none_match is not None:
                check_precondition(key, self._entries.get(key), options)
            meta = self._new(key, data, options.content_type, options.metadata)
            self._store(meta)
        return meta

    def _delete(self, key: str) -> None:
        with self._lock:
            self._remove(key)

    def _delete_if(self, key: str, etag: str) -> None:
        with self._lock:
            current = self._entries.get(key)
            if current is None or current.etag != etag:
                raise PreconditionFailed(f"{key!r} does not have etag {etag!r}")
            self._remove(key)

    def _head(self, key: str) -> Meta:
        try:
            return self._entries[key]
        except KeyError:
            raise KeyNotFound(key) from None

    def _get_with_meta(self, key: str) -> tuple[bytes, Meta]:
        meta = self._head(key)
        return meta[_VALUE], meta

    def _sorted_keys(self) -> list[str]:
        with self._lock:
            inserted = len(self._entries) + self._removed
            cached_inserted, cached = self._sorted
            if cached_inserted == inserted:
                return cached
            # Iterating a str-keyed dict in C never releases the GIL: a consistent snapshot.
            snapshot = list(self._entries)
        # Python orders str by code point, which is UTF-8 byte order for valid keys.
        # Sorted outside the lock; the list is replaced, never mutated, so running
        # listings keep iterating the snapshot they started with.
        snapshot.sort()
        self._sorted = (inserted, snapshot)
        return snapshot

    def _range(self, prefix: str, start_after: str | None) -> Iterator[str]:
        """The sorted keys in the listing's range (deleted ones included), lazily, in C."""
        keys = self._sorted_keys()
        if start_after is not None and start_after >= prefix:
            start = bisect.bisect_right(keys, start_after)
        else:
            start = bisect.bisect_left(keys, prefix)
        bound = prefix_upper_bound(prefix)
        stop = len(keys) if bound is None else bisect.bisect_left(keys, bound, start)
        return itertools.islice(keys, start, stop)

    def _list(self, prefix: str, start_after: str | None) -> Iterator[Meta]:
        # Deleted keys linger in the sorted list: get() yields None for them,
        # which filter drops (a Meta is a non-empty tuple, so always true).
        return filter(None, map(self._entries.get, self._range(prefix, start_after)))

    def _keys(self, prefix: str, start_after: str | None) -> Iterator[str]:
        return filter(self._entries.__contains__, self._range(prefix, start_after))

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        """The values of the keys that exist; absent keys are left out."""
        entries = self._entries
        found: dict[str, bytes] = {}
        for key in keys:
            meta = entries.get(check_key(key))
            if meta is not None:
                found[key] = meta[_VALUE]
        return found

    def _put_many(self, keys: list[str], values: list[bytes]) -> list[Meta]:
        # One timestamp for the batch, consecutive versions.
        now = _now()
        written: list[Meta] = []
        append = written.append
        entries = self._entries
        with self._lock:
            version = self._version
            for key, data in zip(keys, values, strict=True):
                version += 1
                meta: Meta = _new_meta(
                    Meta, (key, len(data), data, now, DEFAULT_CONTENT_TYPE, NO_METADATA, version)
                )
                entries[key] = meta
                append(meta)
            self._version = version
        return written

    def _delete_many(self, keys: list[str]) -> None:
        with self._lock:
            for key in keys:
                self._remove(key)

    def incr(self, key: str, delta: int = 1, *, initial: int = 0) -> int:
        """Add ``delta`` to the counter at ``key`` atomically; see :meth:`Store.incr`."""
        check_key(key)
        check_counter_arguments(delta, initial)
        with self._lock:
            current = self._entries.get(key)
            if current is None:
                value = initial + delta
                self._store(self._new(key, b"%d" % value, DEFAULT_CONTENT_TYPE, NO_METADATA))
            else:
                value = parse_counter(key, current[_VALUE]) + delta
                self._store(self._new(key, b"%d" % value, current.content_type, current.metadata))
        return value

    def clear(self) -> None:
        """Remove every key."""
        with self._lock:
            self._removed += len(self._entries)
            self._entries.clear()
