"""`WriteBehind`: a fast in-memory front store, flushed in batches to a durable back store."""

from __future__ import annotations

import builtins
import itertools
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, ClassVar

from ..errors import InvalidValue, MirrorKVError, PreconditionFailed, StoreUnavailable
from ..keys import check_key, check_prefix
from ..meta import DEFAULT_CONTENT_TYPE, NO_METADATA, Details, Meta
from ..store import (
    Capability,
    PutOptions,
    Store,
    check_counter_arguments,
    check_precondition,
    parse_counter,
)
from ..stores.memory import MemoryStore
from ._writebehind_flush import HELD, Batch, Flusher, FlushStats, OnFlush

__all__ = ["FlushStats", "WriteBehind"]

_now = time.time
_new_meta = tuple.__new__
_new_object = object.__new__
#: Keys warmed per get_many call.
_WARM_CHUNK = 1000


class _Version:
    """The version slot of a write made through a WriteBehind: the back store's, once flushed.

    ``value`` is unset until the write is flushed, then the version slot of
    the back store's record of it (a str, an int or a :class:`Details`,
    turned into the version string when first read), or :data:`HELD` while
    ``on_flush`` holds it back. Reading the version of a write not yet
    flushed flushes first (see :meth:`WriteBehind._resolve`).
    """

    __slots__ = ("value",)
    #: The WriteBehind that made the write; set on a subclass per store, so that
    #: making a version is one object allocation on the hot path.
    owner: ClassVar[WriteBehind]

    def __str__(self) -> str:
        return self.known() or self.owner._resolve(self)

    def known(self) -> str | None:
        """The version string where the write was flushed; ``None`` where not (yet)."""
        value = getattr(self, "value", None)
        if value.__class__ is str:
            return value
        if value is None or value is HELD:
            return None
        text = value.meta().version if value.__class__ is Details else str(value)
        self.value = text
        return text


class _Closed(dict[str, Meta | None]):
    """The pending queue of a closed WriteBehind: every write is refused."""

    def __setitem__(self, key: str, value: Meta | None) -> None:
        raise MirrorKVError("this WriteBehind is closed")


class WriteBehind(Store):
    """A store whose writes land in a fast front store and reach ``back`` in batches.

    State: ``front``, an (empty, unbounded) :class:`MemoryStore` that holds
    every key the store shows, and a queue of pending writes, one per key
    (a dict of key -> latest write; a delete after puts queues a delete), so
    a flush writes each changed key once and nothing else. Writes and reads
    touch only the front; the queue is flushed to ``back`` with
    ``put_many``/``delete_many`` (a value with a content type or metadata by
    its own ``put``) by a background thread when ``max_pending`` keys wait,
    every ``interval`` seconds, on :meth:`flush` and on :meth:`close`.
    ``workers`` threads write one flush's keys in parallel, split by key.

    Promises: reads (and listings) see the latest write at once. Conditional
    writes and ``incr`` are decided against the front, atomically. The back
    store receives each key's writes in the order they were made. Nothing is
    dropped: a flush that fails puts its writes back in the queue (never over
    a newer write of the same key) and the background thread retries with
    exponential backoff (0.05 s doubling to 5 s); :meth:`flush` raises
    :class:`StoreUnavailable` meanwhile, :meth:`close` after ``close_timeout``
    seconds of retries. A crash loses exactly the writes not yet flushed (see
    ``docs/layers/writebehind.md``).

    Opening warms the front from ``back``: all of it (``warm=True``), keys
    under a prefix (``warm="users/"``) or nothing (``warm=False``). Keys not
    warmed are invisible through this store, but stay in ``back`` until
    written or deleted through it.

    ``on_flush(batch)`` sees each batch before it is written, as a mapping of
    key -> value (``None`` for a delete), and returns the keys it refuses
    (any iterable), ``False`` to refuse all, or ``True``/``None`` to accept
    all. Refused writes stay queued for the next flush. If it raises, the
    flush fails and is retried like a back store failure.

    Versions: a write's version is the one ``back`` gives it when flushed, so
    it is the same after a reopen. Reading the version of a write not yet
    flushed (``meta.version``, and so comparing Metas) flushes first; a
    write replaced or deleted before any flush took it gets a version of its
    own that no other write has.

    One process at a time may write behind to one back store: two would
    overwrite each other's flushes unseen. Closing flushes, stops the thread
    and closes both stores. An unclosed store is flushed at interpreter exit.
    """

    capabilities = Capability.CONDITIONAL_WRITES | Capability.NATIVE_COUNTERS

    def __init__(
        self,
        back: Store,
        *,
        front: MemoryStore | None = None,
        max_pending: int = 1000,
        interval: float = 1.0,
        workers: int = 1,
        warm: bool | str = True,
        on_flush: OnFlush | None = None,
        close_timeout: float = 30.0,
    ) -> None:
        front = MemoryStore() if front is None else front
        _check_arguments(back, front, max_pending, interval, workers, close_timeout)
        if warm is not True and warm is not False:
            check_prefix(warm)
        self._back = back
        self._front = front
        self.max_value_size = back.max_value_size
        self._size_limit = back.max_value_size or (1 << 62)
        self._max_pending = max_pending
        self._close_timeout = float(close_timeout)
        self._closed = False
        self._entries = front._entries
        self._lock = front._lock
        self._acquire = front._lock.acquire
        self._release = front._lock.release
        self._remove = front._remove
        self._pending: Batch = {}
        self._unflushed = itertools.count(1)
        self._session = f"wb{os.urandom(6).hex()}."
        version_type = type("_Version", (_Version,), {"__slots__": (), "owner": self})
        self._version_type = version_type
        if warm is not False:
            self._warm("" if warm is True else warm)
        self._flusher = Flusher(
            back,
            self._take,
            self._restore,
            interval=interval,
            workers=workers,
            on_flush=on_flush,
            exit_timeout=self._close_timeout,
        )
        self._flusher.start()

    @property
    def front(self) -> MemoryStore:
        """The in-memory store that holds what this store shows."""
        return self._front

    @property
    def back(self) -> Store:
        """The durable store the writes are flushed to."""
        return self._back

    @property
    def stats(self) -> FlushStats:
        """Pending writes, flushed totals and the last error, as of now."""
        f = self._flusher
        return FlushStats(
            len(self._pending), f.flushes, f.puts, f.deletes, f.failures, f.failing, f.last_error
        )

    def __repr__(self) -> str:
        s = self.stats
        error = "" if s.last_error is None else f", last_error={s.last_error!r}"
        failing = f", failing {s.failing}x" if s.failing else ""
        return (
            f"WriteBehind({self._front!r} -> {self._back!r}, pending={s.pending}, "
            f"flushed={s.puts} puts + {s.deletes} deletes in {s.flushes} flushes{failing}{error})"
        )

    def __len__(self) -> int:
        """The number of keys."""
        return len(self._entries)

    # -- the queue ------------------------------------------------------------

    def _warm(self, prefix: str) -> None:
        """Load ``back``'s keys under ``prefix`` (values, content types, metadata, versions)."""
        chunk: list[Meta] = []
        for meta in self._back.list(prefix):
            chunk.append(meta)
            if len(chunk) >= _WARM_CHUNK:
                self._load(chunk)
                chunk = []
        self._load(chunk)

    def _load(self, metas: list[Meta]) -> None:
        values = self._back.get_many([meta[0] for meta in metas]) if metas else {}
        entries = self._entries
        with self._lock:
            for meta in metas:
                data = values.get(meta[0])
                if data is not None:
                    # The value in the etag slot, as MemoryStore keeps it; the back's raw fields,
                    # no metadata as the shared NO_METADATA (so that a warmed counter, once
                    # incremented, is flushed with the plain writes: see _writebehind_flush).
                    metadata = meta[5] or NO_METADATA
                    fields = (meta[0], len(data), data, meta[3], meta[4], metadata, meta[6])
                    entries[meta[0]] = _new_meta(Meta, fields)

    def _take(self) -> Batch:
        """Swap the queue for an empty one; return what it held."""
        with self._lock:
            batch = self._pending
            if not batch or batch.__class__ is _Closed:
                return {}
            self._pending = {}
        return batch

    def _restore(self, batch: Batch) -> None:
        """Put writes back in the queue, except where a newer write of the key is queued."""
        with self._lock:
            pending = self._pending
            for key, meta in batch.items():
                if key not in pending:
                    pending[key] = meta

    def _seal(self) -> bool:
        """Refuse further writes if nothing is pending; whether it did."""
        with self._lock:
            if self._pending:
                return False
            self._pending = _Closed()
            return True

    def _resolve(self, version: _Version) -> str:
        """The version of a write whose version was not known: flush, then look again."""
        if self._flusher.in_flush:
            raise MirrorKVError("the version of an unflushed write cannot be read inside on_flush")
        self._flusher.flush()
        text = version.known()
        if text is not None:
            return text
        if getattr(version, "value", None) is HELD:
            raise StoreUnavailable(
                "on_flush holds this write back: its version is known once it is flushed"
            )
        # Never reached the back store: replaced or deleted before a flush took it.
        version.value = text = f"{self._session}{next(self._unflushed):x}"
        return text

    def flush(self) -> None:
        """Write every pending write to the back store now; return when they are there.

        Raises :class:`StoreUnavailable` if the back store fails (or
        ``on_flush`` raises); the writes stay queued and are retried.
        """
        self._flusher.flush()

    def close(self) -> None:
        """Flush everything, stop the background thread and close both stores.

        Retries a failing back store for ``close_timeout`` seconds, then
        raises :class:`StoreUnavailable` saying how many writes remain
        unflushed; the store then stays open with its writes queued (call
        ``close()`` or ``flush()`` again). Closing twice is harmless; writes
        after closing raise :class:`MirrorKVError`.
        """
        if self._closed:
            return
        deadline = time.monotonic() + self._close_timeout
        while True:
            try:
                # Sealed under the flush lock: no flush in flight can put writes back after it.
                if self._flusher.flush(then=self._seal):
                    break
            except StoreUnavailable as error:
                if time.monotonic() >= deadline:
                    raise StoreUnavailable(
                        f"{len(self._pending)} unflushed writes remain in {self!r}: flushing"
                        f" still fails after {self._close_timeout:g} s; they stay queued"
                    ) from error
                time.sleep(min(self._flusher.backoff(), max(0.0, deadline - time.monotonic())))
        self._closed = True
        self._flusher.stop()
        self._front.close()
        self._back.close()

    # -- writes ---------------------------------------------------------------

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
        """Store ``data`` in the front and queue it for the back; see :meth:`Store.put`."""
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
            and len(data) <= self._size_limit
        ):
            # The common case, inlined (the hot path of a write-behind store).
            version: _Version = _new_object(self._version_type)
            meta: Meta = _new_meta(
                Meta, (key, len(data), data, _now(), DEFAULT_CONTENT_TYPE, NO_METADATA, version)
            )
            self._acquire()
            try:
                pending = self._pending
                pending[key] = meta
                self._entries[key] = meta
            finally:
                self._release()
            if len(pending) >= self._max_pending and not self._flusher.kicked:
                self._flusher.kick()
            return meta
        return super().put(
            key,
            data,
            content_type=content_type,
            metadata=metadata,
            if_match=if_match,
            if_none_match=if_none_match,
        )

    def _put(self, key: str, data: bytes, options: PutOptions) -> Meta:
        version: _Version = _new_object(self._version_type)
        fields = (key, len(data), data, _now(), options.content_type, options.metadata, version)
        meta: Meta = _new_meta(Meta, fields)
        with self._lock:
            if options.if_match is not None or options.if_none_match is not None:
                check_precondition(key, self._entries.get(key), options)
            pending = self._pending
            pending[key] = meta
            self._entries[key] = meta
        self._maybe_kick(pending)
        return meta

    def _put_many(
        self, keys: builtins.list[str], values: builtins.list[bytes]
    ) -> builtins.list[Meta]:
        now = _now()
        version_type = self._version_type
        plain = (DEFAULT_CONTENT_TYPE, NO_METADATA)
        written = [
            _new_meta(Meta, (key, len(data), data, now, *plain, _new_object(version_type)))
            for key, data in zip(keys, values, strict=True)
        ]
        entries = self._entries
        with self._lock:
            pending = self._pending
            for meta in written:
                pending[meta[0]] = meta
                entries[meta[0]] = meta
        self._maybe_kick(pending)
        return written

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        """Remove ``key`` from the front and queue its delete; absent keys too.

        ``if_match`` is checked against the front (the truth while the process lives).
        """
        if (
            if_match is None
            and key.__class__ is str
            and 0 < len(key) <= 256
            and key.isascii()
            and "\x00" not in key
        ):
            self._acquire()
            try:
                pending = self._pending
                pending[key] = None
                self._remove(key)
            finally:
                self._release()
            if len(pending) >= self._max_pending and not self._flusher.kicked:
                self._flusher.kick()
            return
        super().delete(key, if_match=if_match)

    def _delete(self, key: str) -> None:
        self._delete_many([key])

    def _delete_if(self, key: str, etag: str) -> None:
        with self._lock:
            current = self._entries.get(key)
            if current is None or current.etag != etag:
                raise PreconditionFailed(f"{key!r} does not have etag {etag!r}")
            self._pending[key] = None
            self._remove(key)
        self._maybe_kick(self._pending)

    def _delete_many(self, keys: builtins.list[str]) -> None:
        with self._lock:
            pending = self._pending
            for key in keys:
                pending[key] = None
                self._remove(key)
        self._maybe_kick(pending)

    def incr(self, key: str, delta: int = 1, *, initial: int = 0) -> int:
        """Add ``delta`` to the counter at ``key`` in the front, atomically; see :meth:`Store.incr`.

        The back store's value catches up at the next flush.
        """
        if not (
            key.__class__ is str
            and 0 < len(key) <= 256
            and key.isascii()
            and "\x00" not in key
            and delta.__class__ is int
            and initial.__class__ is int
        ):
            check_key(key)
            check_counter_arguments(delta, initial)
        version: _Version = _new_object(self._version_type)
        entries = self._entries
        self._acquire()
        try:
            current = entries.get(key)
            if current is None:
                value = initial + delta
                content_type: Any = DEFAULT_CONTENT_TYPE
                metadata: Any = NO_METADATA
            else:
                data = current[2]
                if data.isdigit() and len(data) < 19:  # plain and short: int() accepts it as is
                    value = int(data) + delta
                else:
                    value = parse_counter(key, data) + delta
                content_type, metadata = current[4], current[5]
            data = b"%d" % value
            meta = _new_meta(Meta, (key, len(data), data, _now(), content_type, metadata, version))
            pending = self._pending
            pending[key] = meta
            entries[key] = meta
        finally:
            self._release()
        if len(pending) >= self._max_pending and not self._flusher.kicked:
            self._flusher.kick()
        return value

    def _maybe_kick(self, pending: Batch) -> None:
        if len(pending) >= self._max_pending and not self._flusher.kicked:
            self._flusher.kick()

    # -- reads: the front's ----------------------------------------------------

    def get(self, key: str) -> bytes:
        """The value of ``key`` (the latest write). Raises :class:`KeyNotFound` where absent."""
        try:
            value: bytes = self._entries[key][2]
        except (KeyError, TypeError):
            raise self._front._missing(key) from None
        return value

    def _get(self, key: str) -> bytes:
        return self._front._get(key)

    def _head(self, key: str) -> Meta:
        return self._front._head(key)

    def _get_with_meta(self, key: str) -> tuple[bytes, Meta]:
        return self._front._get_with_meta(key)

    def _list(self, prefix: str, start_after: str | None) -> Iterator[Meta]:
        return self._front._list(prefix, start_after)

    def _keys(self, prefix: str, start_after: str | None) -> Iterator[str]:
        return self._front._keys(prefix, start_after)

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` exists. An invalid key raises :class:`InvalidKey`."""
        return key in self._front

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        """The values of the keys that exist; absent keys are left out."""
        return self._front.get_many(keys)


def _check_arguments(
    back: object,
    front: object,
    max_pending: object,
    interval: object,
    workers: object,
    close_timeout: object,
) -> None:
    if not isinstance(back, Store):
        raise InvalidValue(f"WriteBehind writes to a Store, not {type(back).__name__}")
    if type(front) is not MemoryStore:
        raise InvalidValue(
            "WriteBehind's front is an unbounded MemoryStore (one that evicts would lose writes)"
        )
    if len(front) != 0:
        raise InvalidValue("WriteBehind's front must be empty: it is filled from the back store")
    for name, value, low in (("max_pending", max_pending, 1), ("workers", workers, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InvalidValue(f"{name} is an int >= {low}, not {value!r}")
    for name, value in (("interval", interval), ("close_timeout", close_timeout)):
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise InvalidValue(f"{name} is a number of seconds >= 0, not {value!r}")
    if interval == 0:
        raise InvalidValue("interval is a number of seconds > 0")
