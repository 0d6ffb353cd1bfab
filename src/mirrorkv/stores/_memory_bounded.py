"""`BoundedMemoryStore`: a MemoryStore holding at most ``max_bytes`` of values (LRU).

What ``MemoryStore(max_bytes=N)`` returns. Kept apart so that the unbounded
store's hot paths carry no bookkeeping. The entries dict doubles as the
recency order: a read moves its key to the end, and eviction pops from the
front, oldest first, until the values fit. Every access takes the lock.
"""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import Iterable, Mapping

from ..errors import InvalidValue, KeyNotFound
from ..keys import check_key
from ..meta import DEFAULT_CONTENT_TYPE, NO_METADATA, Meta
from ..store import Store
from .memory import _VALUE, MemoryStore

__all__ = ["BoundedMemoryStore"]


class BoundedMemoryStore(MemoryStore):
    """A :class:`MemoryStore` that evicts the least recently used keys past ``max_bytes``.

    Reads (``get``, ``head``, ``open``, ``get_many``) count as use; listing
    does not. A value larger than ``max_bytes`` is refused with
    :class:`InvalidValue`. :attr:`evictions` counts keys evicted so far.

    Writes go through the base class's ``_put``, ``incr`` and removals, which
    call the bookkeeping here (``_store``, ``_remove``); the unbounded
    store's inlined fast paths are replaced.
    """

    def __init__(self, max_bytes: int | None = None) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
            raise InvalidValue(f"max_bytes is an int > 0, not {max_bytes!r}")
        super().__init__()
        self.max_value_size = max_bytes
        self._max_bytes = max_bytes
        self._bytes = 0
        self.evictions = 0

    @property
    def max_bytes(self) -> int:
        """The bound on the total size of the values held."""
        return self._max_bytes

    @property
    def held_bytes(self) -> int:
        """The total size of the values held now."""
        return self._bytes

    def __repr__(self) -> str:
        return (
            f"MemoryStore(<{len(self._entries)} keys, {self._bytes} of {self._max_bytes} bytes,"
            f" {self.evictions} evicted>)"
        )

    # -- bookkeeping (the caller holds the lock) --------------------------------

    def _store(self, meta: Meta) -> None:
        old = self._entries.pop(meta[0], None)
        if old is not None:
            self._bytes -= old[1]
        self._entries[meta[0]] = meta
        self._bytes += meta[1]
        if self._bytes > self._max_bytes:
            self._evict()

    def _remove(self, key: str) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old[1]
            self._removed += 1

    def _evict(self) -> None:
        entries = self._entries
        while self._bytes > self._max_bytes:
            oldest = next(iter(entries))
            self._bytes -= entries.pop(oldest)[1]
            self._removed += 1
            self.evictions += 1

    def _touch(self, key: str) -> Meta:
        """The entry of ``key``, moved to the most recently used end; KeyNotFound if absent."""
        with self._lock:
            meta = self._entries.pop(key, None)
            if meta is None:
                raise KeyNotFound(key)
            self._entries[key] = meta
        return meta

    # -- every path goes through the bookkeeping --------------------------------

    def get(self, key: str) -> bytes:
        """The value of ``key`` (and it becomes the most recently used)."""
        value: bytes = self._touch(check_key(key))[_VALUE]
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
        """Store ``data`` under ``key``, evicting the least recently used past the bound."""
        return Store.put(
            self,
            key,
            data,
            content_type=content_type,
            metadata=metadata,
            if_match=if_match,
            if_none_match=if_none_match,
        )

    def _get(self, key: str) -> bytes:
        value: bytes = self._touch(key)[_VALUE]
        return value

    def _head(self, key: str) -> Meta:
        return self._touch(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        """The values of the keys that exist (each becomes recently used)."""
        found: dict[str, bytes] = {}
        for key in keys:
            with contextlib.suppress(KeyNotFound):
                found[key] = self._touch(check_key(key))[_VALUE]
        return found

    def _put_many(
        self, keys: builtins.list[str], values: builtins.list[bytes]
    ) -> builtins.list[Meta]:
        written: builtins.list[Meta] = []
        with self._lock:
            for key, data in zip(keys, values, strict=True):
                meta = self._new(key, data, DEFAULT_CONTENT_TYPE, NO_METADATA)
                self._store(meta)
                written.append(meta)
        return written

    def clear(self) -> None:
        """Remove every key."""
        with self._lock:
            self._removed += len(self._entries)
            self._entries.clear()
            self._bytes = 0
