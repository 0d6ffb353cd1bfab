"""The mirror's value cache: values in a store, served while their etag is the index's.

Kept within a bound in bytes, least recently used first out, for one
process: the recency order and the etags live in memory, and a cache store
that persists (a directory, an SQLite file) is read back on start.
"""

from __future__ import annotations

import builtins
import threading
from collections import OrderedDict

from ..errors import InvalidValue, KeyNotFound
from ..store import Store

__all__ = ["ValueCache"]

#: The cached copy's metadata name holding the etag it was cached for.
ETAG_NAME = "mirror-etag"


class ValueCache:
    """Values in a store, with their etags, bounded by bytes (LRU), for one process."""

    def __init__(self, store: Store, max_bytes: int) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
            raise InvalidValue(f"cache_bytes is an int > 0, not {max_bytes!r}")
        self._store = store
        self._max = max_bytes
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[str, int]] = OrderedDict()
        self._bytes = 0
        for meta in store.list():
            etag = meta.metadata.get(ETAG_NAME)
            if etag is None:
                store.delete(meta.key)
            else:
                self._remember(meta.key, etag, meta.size)

    def _remember(self, key: str, etag: str, size: int) -> builtins.list[str]:
        """Note ``key``; return the keys evicted to stay within bounds (caller deletes)."""
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old[1]
        self._entries[key] = (etag, size)
        self._bytes += size
        evicted: builtins.list[str] = []
        while self._bytes > self._max and self._entries:
            victim, (_, victim_size) = self._entries.popitem(last=False)
            self._bytes -= victim_size
            evicted.append(victim)
        return evicted

    def load(self, key: str, etag: str) -> bytes | None:
        """The cached value of ``key`` if its etag is ``etag``; else None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] != etag:
                return None
            self._entries.move_to_end(key)
        try:
            return self._store.get(key)
        except KeyNotFound:
            self.drop(key)
            return None

    def store(self, key: str, etag: str, data: bytes) -> None:
        """Cache ``data`` as the value of ``key`` with ``etag`` (unless larger than the bound)."""
        if len(data) > self._max:
            self.drop(key)
            return
        self._store.put(key, data, metadata={ETAG_NAME: etag})
        with self._lock:
            evicted = self._remember(key, etag, len(data))
        for victim in evicted:
            if victim != key:
                self._store.delete(victim)

    def drop(self, key: str) -> None:
        """Forget the cached value of ``key``."""
        with self._lock:
            old = self._entries.pop(key, None)
            if old is None:
                return
            self._bytes -= old[1]
        self._store.delete(key)

    def close(self) -> None:
        """Close the cache store."""
        self._store.close()
