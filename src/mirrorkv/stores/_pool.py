"""What the object-store backends (S3, Azure Blob, GCS) share: pooled batches, counter turns.

Each of those services answers one key per request, so batches go faster
when their requests run side by side: :class:`PooledBatches` keeps a bounded
pool of threads per store and runs ``get_many`` and ``put_many`` on it.
Their counters are compare-and-swap loops on conditional writes:
:class:`StripedLocks` lets the threads of one process take turns on a key,
and :class:`Backoff` spreads out writers (of other processes) that lost a
race. Each backend keeps its own requests; only these mechanics live here.
"""

from __future__ import annotations

import builtins
import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar, cast

from ..errors import KeyNotFound, MirrorKVError
from ..keys import check_key
from ..meta import Meta
from ..store import DEFAULT_PUT_OPTIONS, Store

__all__ = ["Backoff", "PooledBatches", "StripedLocks"]

_Item = TypeVar("_Item")


class PooledBatches(Store):
    """A store whose ``get_many`` and ``put_many`` run on a bounded pool of threads.

    A subclass calls :meth:`_start_pool` in its ``__init__`` and
    :meth:`_close_pool` in its ``close``. The pool's threads start on first
    use (a store that never batches starts none), at most ``size`` of them,
    named ``<name>_<n>``; after :meth:`_close_pool` the store runs nothing
    more on the pool: :meth:`_executor` raises :class:`MirrorKVError`.

    Batches are not atomic: one that fails half-way leaves what was written
    so far, and raises the error of the first failed item in batch order
    (items not yet started are cancelled).
    """

    _pool: ThreadPoolExecutor | None
    _pool_lock: threading.Lock
    _pool_size: int
    _pool_name: str
    _pool_closed: bool

    def _start_pool(self, size: int, name: str) -> None:
        """Set up a pool of at most ``size`` threads named after ``name`` (none start yet)."""
        self._pool = None
        self._pool_lock = threading.Lock()
        self._pool_size = size
        self._pool_name = name
        self._pool_closed = False

    def _executor(self) -> ThreadPoolExecutor:
        """The store's pool, started on first call; :class:`MirrorKVError` once closed."""
        pool = self._pool
        if pool is None:
            with self._pool_lock:
                if self._pool_closed:
                    raise MirrorKVError(f"{self!r}: the store is closed")
                pool = self._pool
                if pool is None:
                    pool = self._pool = ThreadPoolExecutor(
                        self._pool_size, thread_name_prefix=self._pool_name
                    )
        return pool

    def _close_pool(self) -> None:
        """Stop the pool's threads (after their current work); harmless when repeated."""
        with self._pool_lock:
            self._pool_closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def _each_on_pool(self, function: Callable[[_Item], object], items: Iterable[_Item]) -> None:
        """Call ``function`` on every item, side by side on the pool, and wait for all.

        One item (or none) is done in the calling thread, without the pool.
        Raises the error of the first item, in the order given, that failed;
        items not started by then are not done.
        """
        items = list(items)
        if len(items) <= 1:
            for item in items:
                function(item)
            return
        for _ in self._executor().map(function, items):
            pass

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        """The values of the keys that exist (absent keys left out), fetched on the pool.

        Every key is checked before anything is fetched; a key given twice
        is fetched once. Each value is read on its own: the result is not a
        snapshot of one moment.
        """
        wanted = list(dict.fromkeys(check_key(key) for key in keys))
        if len(wanted) <= 1:
            return super().get_many(wanted)
        values = self._executor().map(self._get_or_none, wanted)
        return {key: value for key, value in zip(wanted, values, strict=True) if value is not None}

    def _get_or_none(self, key: str) -> bytes | None:
        """The value of ``key``, or ``None`` where it does not exist."""
        try:
            return self._get(key)
        except KeyNotFound:
            return None

    def _put_many(
        self, keys: builtins.list[str], values: builtins.list[bytes]
    ) -> builtins.list[Meta]:
        """Put checked items on the pool; the Meta of each, in the order given.

        Distinct keys are written side by side; the values of a key given
        more than once are written one after the other in the order given,
        by one thread, so the last one given is the one that stays.
        """
        if len(keys) == 1:
            return [self._put(keys[0], values[0], DEFAULT_PUT_OPTIONS)]
        positions: dict[str, builtins.list[int]] = {}
        for index, key in enumerate(keys):
            positions.setdefault(key, []).append(index)
        metas: builtins.list[Meta | None] = [None] * len(keys)

        def write(key: str) -> None:
            for index in positions[key]:
                metas[index] = self._put(key, values[index], DEFAULT_PUT_OPTIONS)

        self._each_on_pool(write, positions)
        return cast(builtins.list[Meta], metas)


class StripedLocks:
    """A fixed number of locks, one picked per key, so threads take turns on a key.

    Counters on these services are compare-and-swap loops; threads of one
    process racing on one key make each other's writes fail and retry
    (eight threads wasted seven of every eight round trips on Azurite).
    Two keys may share a lock: then they only wait for each other. Other
    processes are not held back; they still race, with :class:`Backoff`.
    """

    __slots__ = ("_locks",)

    def __init__(self, stripes: int = 64) -> None:
        """Make ``stripes`` locks."""
        self._locks = [threading.Lock() for _ in range(stripes)]

    def for_key(self, key: str) -> threading.Lock:
        """The lock of ``key`` (always the same one within this process)."""
        return self._locks[hash(key) % len(self._locks)]


class Backoff:
    """A growing, random pause between tries of a compare-and-swap that lost a race.

    The n-th :meth:`sleep` waits a random time of at most
    ``min(first * 2**(n-1), most)`` seconds: contenders spread out instead
    of colliding again in step.
    """

    __slots__ = ("_ceiling", "_most")

    def __init__(self, first: float, most: float) -> None:
        """The first pause is at most ``first`` seconds; no pause is longer than ``most``."""
        self._ceiling = first
        self._most = most

    def sleep(self) -> None:
        """Wait a random while up to the current ceiling, then double it (up to ``most``)."""
        time.sleep(random.uniform(0, self._ceiling))
        self._ceiling = min(self._ceiling * 2, self._most)
