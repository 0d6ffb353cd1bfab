"""`Cached`: a read-through cache of values and metadata in a faster store.

Values read through the layer are kept in ``cache`` (by default a
``MemoryStore(max_bytes=64 MiB)``, which evicts the least recently used),
together with the wrapped store's metadata for them, so a repeated ``get``
or ``head`` is answered without touching the wrapped store. Writes made
through the layer go to the wrapped store first and then replace (``put``)
or drop (everything else) the cached copy.

Writes that do not go through this layer (another process, another layer
instance) are not seen until the copy is revalidated: with ``max_age`` set,
a copy older than that is checked against the wrapped store's etag (one
``head``) before it is served, and refreshed if it changed. Without
``max_age`` a copy is served until evicted or overwritten through the layer.

A read that races a write through the layer never caches the older value:
a copy is stored only if no write went through the layer since the read began.
"""

from __future__ import annotations

import builtins
import io
import itertools
import json
import threading
import time
from collections.abc import Iterable
from typing import IO, BinaryIO

from ..errors import InvalidValue, KeyNotFound
from ..keys import check_key
from ..meta import Meta, freeze_metadata
from ..store import PutOptions, Store
from ..stores.memory import MemoryStore
from .base import Layer

__all__ = ["DEFAULT_CACHE_BYTES", "Cached"]

#: The bound of the default cache store, in bytes.
DEFAULT_CACHE_BYTES = 64 * 1024 * 1024

# The wrapped store's record of a cached value, in the cached copy's metadata:
# JSON [etag, modified, version, metadata]; the content type is the copy's own.
_RECORD = "mkv-cached"

_now = time.monotonic
_new_meta = tuple.__new__


class Cached(Layer):
    """``store`` with a read-through cache of values and metadata in ``cache``.

    ``max_age`` (seconds, None: never) is how long a cached copy is served
    before it is revalidated by etag. ``hits`` and ``misses`` count ``get``
    and ``head`` calls answered from the cache or not.
    """

    def __init__(
        self, store: Store, cache: Store | None = None, *, max_age: float | None = None
    ) -> None:
        super().__init__(store)
        if max_age is not None and (
            isinstance(max_age, bool) or not isinstance(max_age, int | float) or max_age < 0
        ):
            raise InvalidValue(f"max_age is a number of seconds >= 0 or None, not {max_age!r}")
        self._cache = MemoryStore(max_bytes=DEFAULT_CACHE_BYTES) if cache is None else cache
        self._max_age = max_age
        # When each copy was cached or last revalidated (only kept with max_age).
        self._checked: dict[str, float] = {}
        self._writes = itertools.count()
        self._last_write = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def cache(self) -> Store:
        """The store holding the cached copies."""
        return self._cache

    def __repr__(self) -> str:
        counts = f"hits={self.hits}, misses={self.misses}"
        return f"Cached({self._inner!r}, cache={self._cache!r}, {counts})"

    # -- the cached copies ---------------------------------------------------------

    def _cached(self, key: str) -> tuple[bytes, Meta] | None:
        """The cached value and the wrapped store's Meta of ``key``, if fresh enough."""
        try:
            data, copy = self._cache._get_with_meta(key)
        except KeyNotFound:
            return None
        meta = _record_meta(key, copy)
        if meta is None:
            return None
        if self._max_age is not None:
            checked = self._checked.get(key)
            if checked is None or _now() - checked > self._max_age:
                try:
                    current = self._inner._head(key)
                except KeyNotFound:
                    self._drop(key)
                    raise
                if current.etag != meta.etag:
                    return None
                self._checked[key] = _now()
        return data, meta

    def _fill(self, key: str, data: bytes, meta: Meta, since: int) -> None:
        """Cache ``data`` (with ``meta``) unless a write went through the layer after ``since``."""
        max_size = self._cache.max_value_size
        if max_size is not None and len(data) > max_size:
            return
        record = json.dumps(
            [meta.etag, meta.modified.timestamp(), meta.version, dict(meta.metadata)],
            ensure_ascii=False,
        )
        with self._lock:
            if self._last_write != since:
                return
            self._cache.put(key, data, content_type=meta.content_type, metadata={_RECORD: record})
            if self._max_age is not None:
                self._checked[key] = _now()

    def _drop(self, key: str) -> None:
        self._cache.delete(key)
        self._checked.pop(key, None)

    def _wrote(self, keys: Iterable[str]) -> int:
        """Note a write through the layer and drop the copies of ``keys``; return its number."""
        with self._lock:
            self._last_write = number = next(self._writes) + 1
            for key in keys:
                self._drop(key)
        return number

    # -- reads -----------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        """The value of ``key``: the cached copy where there is a fresh one."""
        max_age = self._max_age
        if max_age is None or _now() - self._checked.get(key, -max_age - 1.0) <= max_age:
            try:
                data = self._cache.get(key)
            except KeyNotFound:
                pass
            else:
                self.hits += 1
                return data
        return super().get(key)

    def _get_with_meta(self, key: str) -> tuple[bytes, Meta]:
        found = self._cached(key)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        since = self._last_write
        data, meta = self._inner._get_with_meta(key)
        self._fill(key, data, meta, since)
        return data, meta

    def _get(self, key: str) -> bytes:
        return self._get_with_meta(key)[0]

    def _head(self, key: str) -> Meta:
        found = self._cached(key)
        if found is not None:
            self.hits += 1
            return found[1]
        self.misses += 1
        return self._inner._head(key)

    def _open(self, key: str) -> BinaryIO:
        found = self._cached(key)
        if found is not None:
            self.hits += 1
            return io.BytesIO(found[0])
        self.misses += 1
        return self._inner._open(key)  # streamed, not cached: it may be large

    # -- writes: the wrapped store first, then the copies ------------------------------

    def _put(self, key: str, data: bytes, options: PutOptions) -> Meta:
        since = self._wrote([key])
        meta = self._inner._put(key, data, options)
        self._fill(key, data, meta, since)
        return meta

    def _put_stream(self, key: str, stream: IO[bytes], options: PutOptions) -> Meta:
        self._wrote([key])
        return self._inner._put_stream(key, stream, options)

    def _put_many(
        self, keys: builtins.list[str], values: builtins.list[bytes]
    ) -> builtins.list[Meta]:
        self._wrote(keys)
        return self._inner._put_many(keys, values)

    def _delete(self, key: str) -> None:
        self._wrote([key])
        self._inner._delete(key)

    def _delete_if(self, key: str, etag: str) -> None:
        # Dropped first, as every write does: a copy must never outlive the value.
        self._wrote([key])
        self._inner._delete_if(key, etag)

    def _delete_many(self, keys: builtins.list[str]) -> None:
        self._wrote(keys)
        self._inner._delete_many(keys)

    def copy(self, source: str, target: str) -> Meta:
        """Copy in the wrapped store (server-side where it can); the target's copy is dropped."""
        check_key(source)
        self._wrote([check_key(target)])
        return self._inner.copy(source, target)

    def incr(self, key: str, delta: int = 1, *, initial: int = 0) -> int:
        """The wrapped store's counter (native where it has one); the cached copy is dropped."""
        self._wrote([check_key(key)])
        return self._inner.incr(key, delta, initial=initial)

    def close(self) -> None:
        """Close the wrapped store and the cache."""
        self._inner.close()
        self._cache.close()


def _record_meta(key: str, copy: Meta) -> Meta | None:
    """The wrapped store's Meta kept with a cached copy (None if it is not one of ours)."""
    raw = copy.metadata.get(_RECORD)
    if raw is None:
        return None
    etag, modified, version, metadata = json.loads(raw)
    fields = (key, copy.size, etag, modified, copy.content_type, freeze_metadata(metadata), version)
    meta: Meta = _new_meta(Meta, fields)
    return meta
