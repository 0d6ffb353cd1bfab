"""`MemoryStore`: values in a dict, with the full contract and nothing persisted."""

from __future__ import annotations

import bisect
import itertools
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ..errors import InvalidKey, KeyNotFound
from ..keys import check_key
from ..meta import DEFAULT_CONTENT_TYPE, Meta
from ..store import (
    Capability,
    PutOptions,
    Store,
    check_counter_arguments,
    check_precondition,
    parse_counter,
)

__all__ = ["MemoryStore"]

_EMPTY: Mapping[str, str] = {}
_now = time.time
_new_meta = tuple.__new__

# Each key maps to its Meta, built with the value itself in the etag slot
# (Meta computes the MD5 from it when asked): one tuple per write, replaced by
# a single atomic dict assignment, and head() allocates nothing.
_VALUE = 2


class MemoryStore(Store):
    """A store held in a dict: the fastest, for tests, caches and write-behind fronts.

    State: a dict of entries and a sorted key list built lazily on the first
    listing after a new key appears. Nothing survives the process. Writes
    take one lock, so conditional writes and counters are atomic across
    threads; reads take none. The etag is computed only when asked for.
    """

    capabilities = (
        Capability.CONDITIONAL_WRITES | Capability.NATIVE_COUNTERS | Capability.TRANSACTIONS
    )

    def __init__(self) -> None:
        self._entries: dict[str, Meta] = {}
        self._lock = threading.Lock()
        self._acquire = self._lock.acquire
        self._release = self._lock.release
        self._versions = itertools.count(1)
        self._generation = 0  # bumped after a key is added, to invalidate _sorted
        self._sorted: list[str] = []
        self._sorted_generation = -1

    @classmethod
    def from_url(cls, url: Any, **options: Any) -> MemoryStore:
        """``memory://``: a new empty store (nothing is shared between two opens)."""
        from ..urls import reject_unknown

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
            value: bytes = self._entries[key][_VALUE]
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
            meta: Meta = _new_meta(
                Meta,
                (key, len(data), data, _now(), DEFAULT_CONTENT_TYPE, _EMPTY, next(self._versions)),
            )
            entries = self._entries
            self._acquire()
            try:
                if key in entries:
                    entries[key] = meta
                else:
                    entries[key] = meta
                    self._generation += 1
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
        fields = (key, len(data), data, _now(), content_type, metadata, next(self._versions))
        meta: Meta = _new_meta(Meta, fields)
        return meta

    def _store(self, meta: Meta) -> None:
        """Insert or replace an entry; the caller holds the lock."""
        key = meta.key
        if key not in self._entries:
            self._entries[key] = meta
            self._generation += 1
        else:
            self._entries[key] = meta

    def _get(self, key: str) -> bytes:
        try:
            value: bytes = self._entries[key][_VALUE]
        except KeyError:
            raise KeyNotFound(key) from None
        return value

    def _put(self, key: str, data: bytes, options: PutOptions) -> Meta:
        meta = self._new(key, data, options.content_type, options.metadata)
        with self._lock:
            if options.if_match is not None or options.if_none_match is not None:
                check_precondition(key, self._entries.get(key), options)
            self._store(meta)
        return meta

    def _delete(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def _head(self, key: str) -> Meta:
        try:
            return self._entries[key]
        except KeyError:
            raise KeyNotFound(key) from None

    def _get_with_meta(self, key: str) -> tuple[bytes, Meta]:
        meta = self._head(key)
        return meta[_VALUE], meta

    def _sorted_keys(self) -> list[str]:
        generation = self._generation
        if self._sorted_generation != generation:
            # Iterating a str-keyed dict in C never releases the GIL: a consistent snapshot.
            # Python orders str by code point, which is UTF-8 byte order for valid keys.
            self._sorted = sorted(self._entries)
            self._sorted_generation = generation
        return self._sorted

    def _list(self, prefix: str, start_after: str | None) -> Iterator[Meta]:
        keys = self._sorted_keys()
        entries = self._entries
        if start_after is not None and start_after >= prefix:
            index = bisect.bisect_right(keys, start_after)
        else:
            index = bisect.bisect_left(keys, prefix)
        for key in itertools.islice(keys, index, None):
            if not key.startswith(prefix):
                return
            meta = entries.get(key)
            if meta is not None:  # deleted keys linger in the sorted list
                yield meta

    def _keys(self, prefix: str, start_after: str | None) -> Iterator[str]:
        return (meta[0] for meta in self._list(prefix, start_after))

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        """The values of the keys that exist; absent keys are left out."""
        entries = self._entries
        found: dict[str, bytes] = {}
        for key in keys:
            meta = entries.get(check_key(key))
            if meta is not None:
                found[key] = meta[_VALUE]
        return found

    def _put_many(self, items: list[tuple[str, bytes]]) -> list[Meta]:
        written = [self._new(key, data, DEFAULT_CONTENT_TYPE, _EMPTY) for key, data in items]
        with self._lock:
            for meta in written:
                self._store(meta)
        return written

    def _delete_many(self, keys: list[str]) -> None:
        with self._lock:
            for key in keys:
                self._entries.pop(key, None)

    def incr(self, key: str, delta: int = 1, *, initial: int = 0) -> int:
        """Add ``delta`` to the counter at ``key`` atomically; see :meth:`Store.incr`."""
        check_key(key)
        check_counter_arguments(delta, initial)
        with self._lock:
            current = self._entries.get(key)
            if current is None:
                value = initial + delta
                self._store(self._new(key, b"%d" % value, DEFAULT_CONTENT_TYPE, _EMPTY))
            else:
                value = parse_counter(key, current[_VALUE]) + delta
                self._store(self._new(key, b"%d" % value, current.content_type, current.metadata))
        return value

    def clear(self) -> None:
        """Remove every key."""
        with self._lock:
            self._entries.clear()
            self._generation += 1
