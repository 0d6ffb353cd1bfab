"""The flusher of a `WriteBehind`: moves queued writes to the back store in batches.

A batch is a snapshot of the pending writes (key -> latest :class:`Meta`, or
``None`` for a delete), taken by the owner's ``take`` under its lock. The
flusher writes it with ``put_many`` (plain values), ``delete_many`` and one
``put`` per value with a content type or metadata; whatever was not written
(a failure, or keys ``on_flush`` held back) goes back through the owner's
``restore``, which never replaces a newer pending write. One flush runs at a
time, so a key's writes reach the back store in the order they were made.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import repeat as _repeat
from operator import itemgetter
from typing import Any

from ..errors import MirrorKVError, StoreUnavailable
from ..meta import DEFAULT_CONTENT_TYPE, NO_METADATA, Details, Meta
from ..store import Store

__all__ = ["HELD", "Batch", "FlushStats", "Flusher", "OnFlush"]

#: Pending writes: key -> the latest write's Meta (its value in the etag slot), None = delete.
Batch = dict[str, Meta | None]
#: The ``on_flush`` hook: sees ``key -> value`` (``None`` = delete) and returns the keys it
#: refuses (an iterable), ``False`` to refuse them all, or ``True`` / ``None`` to accept all.
OnFlush = Callable[[Mapping[str, bytes | None]], "bool | Iterable[str] | None"]

_KEY, _VALUE, _VERSION = itemgetter(0), itemgetter(2), itemgetter(6)
_CONTENT_TYPE, _METADATA = itemgetter(4), itemgetter(5)
_META_ONLY = {Meta}
_DEFAULT_CONTENT_TYPE = {DEFAULT_CONTENT_TYPE}
_NO_METADATA_ID = {id(NO_METADATA)}

#: Marks the version of a write that ``on_flush`` held back (see ``writebehind._Version``).
HELD: Any = object()

#: Items per put_many / delete_many call: bounds one back-store transaction or request.
#: Also how many records the back store makes at once: with 5,000, a 20,000-key flush
#: ran 34 garbage collections (some of them promoting the records to older generations,
#: which full collections then walk); with 2,000, 19 and half the time, same speed.
CHUNK = 2000
#: Background flushes pause this many times as long as the last one took, so a
#: flusher kept busy by writers takes at most about 1 / (1 + PACE) of the time
#: (measured: a busy writer thread ran at a third of its speed while a flush ran).
PACE = 3.0
#: How often the background thread checks whether the main thread has ended.
_POLL = 0.1
#: Backoff after a failed flush: doubles from the first delay up to the cap, in seconds.
FIRST_BACKOFF = 0.05
MAX_BACKOFF = 5.0


@dataclass(frozen=True)
class FlushStats:
    """A snapshot of a write-behind queue: what waits, what was written, what went wrong."""

    #: Writes queued for the next flush (one per key; a flush in progress holds the rest).
    pending: int
    #: Flushes that wrote something.
    flushes: int
    #: Values and deletes that reached the back store.
    puts: int
    deletes: int
    #: Failed flush attempts since the store opened, and in a row now.
    failures: int
    failing: int
    #: ``"ErrorClass: message"`` of the last failure (``None`` if none yet).
    last_error: str | None


class _Failed(Exception):
    """Internal: a shard failed after putting its unwritten part back in the queue."""


class Flusher:
    """Writes batches to ``back``: on demand, every ``interval`` seconds, and when kicked."""

    def __init__(
        self,
        back: Store,
        take: Callable[[], Batch],
        restore: Callable[[Batch], None],
        *,
        interval: float,
        workers: int,
        on_flush: OnFlush | None,
        exit_timeout: float,
    ) -> None:
        self._back = back
        self._exit_timeout = exit_timeout
        self._take = take
        self._restore = restore
        self._interval = interval
        self._workers = workers
        self._on_flush = on_flush
        self._flush_lock = threading.Lock()
        self._flushing_thread: int | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._stopping = False
        self._pool = ThreadPoolExecutor(workers - 1) if workers > 1 else None
        #: True from a kick until the next batch is taken: writers kick only once.
        self.kicked = False
        self.flushes = self.puts = self.deletes = self.failures = self.failing = 0
        self.last_error: str | None = None
        # Not a daemon: at interpreter exit it flushes what an unclosed store holds,
        # before the back store's own exit handlers close its connections.
        self._thread = threading.Thread(target=self._run, name="mirrorkv-writebehind")

    def start(self) -> None:
        """Start the background thread."""
        self._thread.start()

    def kick(self) -> None:
        """Ask the background thread for a flush now (the queue reached its bound)."""
        self.kicked = True
        self._wake.set()

    def stop(self) -> None:
        """Stop the background thread (after the flush it may be running)."""
        self._stopping = True
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
        if self._pool is not None:
            self._pool.shutdown()

    @property
    def in_flush(self) -> bool:
        """Whether the calling thread is running a flush (inside ``on_flush``, say)."""
        return self._flushing_thread == threading.get_ident()

    def flush(self, then: Callable[[], bool] | None = None) -> bool:
        """Write everything pending now; :class:`StoreUnavailable` (writes kept) if that fails.

        ``then`` is called after a successful flush, before another can
        start; its result is returned (``True`` without it).
        """
        if self.in_flush:
            raise MirrorKVError("flush() called from inside a flush (from on_flush?)")
        with self._flush_lock:
            self._flushing_thread = threading.get_ident()
            try:
                self._flush_locked()
                return True if then is None else then()
            finally:
                self._flushing_thread = None

    def _flush_locked(self) -> None:
        batch = self._take()
        self.kicked = False
        if not batch:
            return
        try:
            batch = self._apply_hook(batch)
            if batch:
                self._write(batch)
        except Exception as error:
            self.failures += 1
            self.failing += 1
            cause = error.__cause__ if isinstance(error, _Failed) else error
            self.last_error = f"{type(cause).__name__}: {cause}"
            raise StoreUnavailable(
                f"flushing to {self._back!r} failed; the writes stay queued ({self.last_error})"
            ) from cause
        self.failing = 0
        self.flushes += 1

    def _apply_hook(self, batch: Batch) -> Batch:
        """Ask ``on_flush``; put what it refuses back in the queue, and return the rest."""
        if self._on_flush is None:
            return batch
        try:
            verdict = self._on_flush({key: _value(meta) for key, meta in batch.items()})
        except BaseException:
            self._restore(batch)
            raise
        if verdict is None or verdict is True:
            return batch
        refused = batch.keys() if verdict is False else set(verdict) & batch.keys()
        held = {key: batch[key] for key in refused}
        for meta in held.values():
            if meta is not None and getattr(meta[6], "value", None) is None:
                meta[6].value = HELD
        self._restore(held)
        return {key: meta for key, meta in batch.items() if key not in held}

    def _write(self, batch: Batch) -> None:
        """Write a batch, in ``workers`` shards by key; re-raise the first failure."""
        if self._pool is None or len(batch) < 2 * self._workers:
            self._write_shard(batch)
            return
        shards: list[Batch] = [{} for _ in range(self._workers)]
        for key, meta in batch.items():
            shards[hash(key) % self._workers][key] = meta
        futures = [self._pool.submit(self._write_shard, shard) for shard in shards[1:]]
        errors: list[BaseException] = []
        try:
            self._write_shard(shards[0])
        except Exception as error:
            errors.append(error)
        for future in futures:
            failure = future.exception()
            if failure is not None:
                errors.append(failure)
        if errors:
            raise errors[0]

    def _write_shard(self, shard: Batch) -> None:
        """Write one shard step by step; on failure restore the steps not done and raise."""
        # In key order: into a large SQLite store (a b-tree keyed by the key) a sorted
        # batch of 100,000 random keys wrote 4x as fast as the same batch unsorted.
        keys = sorted(shard)
        metas = list(map(shard.__getitem__, keys))
        deletes: list[str] = []
        special: list[Meta] = []
        if _all_plain(metas):
            plain = metas  # the common case, sorted out in C: the flusher holds the GIL
        else:
            plain = []
            for key, meta in zip(keys, metas, strict=True):
                if meta is None:
                    deletes.append(key)
                elif _is_plain(meta):
                    plain.append(meta)
                else:
                    special.append(meta)
        steps: list[tuple[str, list[Any]]] = []
        steps += [("put_many", plain[i : i + CHUNK]) for i in range(0, len(plain), CHUNK)]
        steps += [("delete_many", deletes[i : i + CHUNK]) for i in range(0, len(deletes), CHUNK)]
        steps += [("put", [meta]) for meta in special]
        for done, (kind, items) in enumerate(steps):
            try:
                self._step(kind, items)
            except BaseException as error:
                self._restore(_unwritten(steps[done:], shard))
                if isinstance(error, Exception):
                    raise _Failed() from error
                raise

    def _step(self, kind: str, items: list[Any]) -> None:
        back = self._back
        if kind == "delete_many":
            back.delete_many(items)
            self.deletes += len(items)
            return
        if kind == "put_many":
            written = back.put_many(dict(zip(map(_KEY, items), map(_VALUE, items), strict=True)))
        else:
            meta = items[0]
            written = [
                back.put(meta[0], meta[2], content_type=meta.content_type, metadata=meta.metadata)
            ]
        if len(written) != len(items):
            raise MirrorKVError(f"{back!r} returned {len(written)} records for {len(items)} writes")
        # Each write's version is the version slot of the back's record of it (read
        # lazily: it may be a Details). map() in C: the flusher holds the GIL, and so
        # stalls the writers, as briefly as it can.
        versions = map(_VERSION, written)
        deque(map(setattr, map(_VERSION, items), _repeat("value"), versions), maxlen=0)
        self.puts += len(items)

    def _run(self) -> None:
        main = threading.main_thread()
        due = time.monotonic() + self._interval
        while not self._stopping:
            if not main.is_alive():
                self._flush_at_exit()
                return
            wait = min(_POLL, max(0.0, due - time.monotonic()))
            if not self._wake.wait(wait) and time.monotonic() < due:
                continue
            self._wake.clear()
            if self._stopping:
                return
            started = time.monotonic()
            try:
                self.flush()
            except MirrorKVError:
                self._sleep(self.backoff())  # a kick must not cut the backoff short
            # Pace background flushes: while writers keep the queue full, flushing
            # back to back would take most of the GIL from them (see PACE).
            self._sleep((time.monotonic() - started) * PACE)
            due = max(time.monotonic(), started + self._interval)

    def _sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less if the store is stopping or the main thread ended."""
        end = time.monotonic() + seconds
        main = threading.main_thread()
        while not self._stopping and main.is_alive():
            left = end - time.monotonic()
            if left <= 0:
                return
            self._stop.wait(min(left, _POLL))

    def _flush_at_exit(self) -> None:
        """The main thread ended without closing the store: flush, retrying for a while."""
        deadline = time.monotonic() + self._exit_timeout
        while True:
            try:
                self.flush()
                return
            except MirrorKVError as error:
                if time.monotonic() >= deadline:
                    # Never silent: these writes end with the process.
                    sys.stderr.write(f"mirrorkv: WriteBehind lost writes at exit: {error}\n")
                    return
            time.sleep(self.backoff())

    def backoff(self) -> float:
        """The delay before the next retry after the current run of failures."""
        return min(MAX_BACKOFF, FIRST_BACKOFF * float(2 ** max(0, self.failing - 1)))


def _value(meta: Meta | None) -> bytes | None:
    return None if meta is None else meta[2]


def _all_plain(metas: list[Any]) -> bool:
    """Whether every write is a put with the shared default content type and metadata.

    C-level passes only; ``False`` leaves the batch to the per-write sort.
    """
    return (
        set(map(type, metas)) == _META_ONLY
        and set(map(_CONTENT_TYPE, metas)) == _DEFAULT_CONTENT_TYPE
        and set(map(id, map(_METADATA, metas))) == _NO_METADATA_ID
    )


def _is_plain(meta: Meta) -> bool:
    """Whether a write has the default content type and no metadata (so put_many can carry it)."""
    content_type, metadata = meta[4], meta[5]
    return (
        content_type.__class__ is str
        and content_type == DEFAULT_CONTENT_TYPE
        and metadata.__class__ is not Details
        and not metadata
    )


def _unwritten(steps: list[tuple[str, list[Any]]], shard: Batch) -> Batch:
    """The entries of ``shard`` that the remaining ``steps`` would have written."""
    left: Batch = {}
    for kind, items in steps:
        if kind == "delete_many":
            for key in items:
                left[key] = shard[key]
        else:
            for meta in items:
                left[meta[0]] = meta
    return left
