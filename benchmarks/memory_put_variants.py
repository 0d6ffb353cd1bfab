"""Where MemoryStore.put's time goes: each cost of the hot path measured on its own.

Usage::

    .venv/bin/python benchmarks/memory_put_variants.py [--keys 20000] [--rounds 15]

Every variant is a class with the same ``put`` signature as
``MemoryStore.put``; each round puts ``--keys`` fresh keys into a fresh
instance of every variant, in a rotated order, and the report gives the
median time per put in nanoseconds, and the ratio to minimalkv's DictStore.
Variants marked "(breaks the contract)" are lower bounds that show what one
part costs, not candidates: the contract needs a lock shared with
conditional writes and ``incr``, a timestamp and a version on every write,
and a ``Meta`` returned.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import statistics
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from mirrorkv.meta import DEFAULT_CONTENT_TYPE, Meta
from mirrorkv.stores.memory import MemoryStore

_EMPTY: Mapping[str, str] = {}
_now = time.time
_new = tuple.__new__
CT = DEFAULT_CONTENT_TYPE


def _fast(key: Any, data: Any) -> bool:
    return (
        data.__class__ is bytes
        and key.__class__ is str
        and 0 < len(key) <= 256
        and key.isascii()
        and "\x00" not in key
    )


class CallOnly:
    """(lower bound) the method call and the keyword defaults, nothing else."""

    def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: Any = None,
        metadata: Any = None,
        if_match: Any = None,
        if_none_match: Any = None,
    ) -> Any:
        return None


class DictOnly:
    """(lower bound) the call plus one dict assignment: what DictStore would be without checks."""

    def __init__(self) -> None:
        self._entries: dict[str, Any] = {}

    def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: Any = None,
        metadata: Any = None,
        if_match: Any = None,
        if_none_match: Any = None,
    ) -> Any:
        self._entries[key] = data
        return None


class Lean:
    """The candidate: checks, one Meta, clock, version counter, lock, one dict assignment.

    New keys are detected by the listing from ``len(entries) + removals``, so
    put no longer tests membership nor bumps a generation.
    """

    def __init__(self) -> None:
        self._entries: dict[str, Meta] = {}
        self._lock = threading.Lock()
        self._acquire = self._lock.acquire
        self._release = self._lock.release
        self._next_version = itertools.count(1).__next__

    def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: Any = None,
        metadata: Any = None,
        if_match: Any = None,
        if_none_match: Any = None,
    ) -> Any:
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
            meta = _new(Meta, (key, len(data), data, _now(), CT, _EMPTY, self._next_version()))
            self._acquire()
            self._entries[key] = meta
            self._release()
            return meta
        raise NotImplementedError


def _variant(name: str, doc: str, body: Callable[..., Any]) -> type:
    return type(name, (Lean,), {"__doc__": doc, "put": body})


def _checks_inline_with(
    self: Any,
    key: str,
    data: bytes,
    *,
    content_type: Any = None,
    metadata: Any = None,
    if_match: Any = None,
    if_none_match: Any = None,
) -> Any:
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
        meta = _new(Meta, (key, len(data), data, _now(), CT, _EMPTY, self._next_version()))
        with self._lock:
            self._entries[key] = meta
        return meta
    raise NotImplementedError


def _printable(
    self: Any,
    key: str,
    data: bytes,
    *,
    content_type: Any = None,
    metadata: Any = None,
    if_match: Any = None,
    if_none_match: Any = None,
) -> Any:
    if (
        content_type is None
        and metadata is None
        and if_match is None
        and if_none_match is None
        and data.__class__ is bytes
        and key.__class__ is str
        and 0 < len(key) <= 256
        and key.isprintable()
    ):
        meta = _new(Meta, (key, len(data), data, _now(), CT, _EMPTY, self._next_version()))
        self._acquire()
        self._entries[key] = meta
        self._release()
        return meta
    raise NotImplementedError


def _no_checks(
    self: Any,
    key: str,
    data: bytes,
    *,
    content_type: Any = None,
    metadata: Any = None,
    if_match: Any = None,
    if_none_match: Any = None,
) -> Any:
    meta = _new(Meta, (key, len(data), data, _now(), CT, _EMPTY, self._next_version()))
    self._acquire()
    self._entries[key] = meta
    self._release()
    return meta


def _no_lock(
    self: Any,
    key: str,
    data: bytes,
    *,
    content_type: Any = None,
    metadata: Any = None,
    if_match: Any = None,
    if_none_match: Any = None,
) -> Any:
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
        meta = _new(Meta, (key, len(data), data, _now(), CT, _EMPTY, self._next_version()))
        self._entries[key] = meta
        return meta
    raise NotImplementedError


def _no_clock(
    self: Any,
    key: str,
    data: bytes,
    *,
    content_type: Any = None,
    metadata: Any = None,
    if_match: Any = None,
    if_none_match: Any = None,
) -> Any:
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
        meta = _new(Meta, (key, len(data), data, 0.0, CT, _EMPTY, self._next_version()))
        self._acquire()
        self._entries[key] = meta
        self._release()
        return meta
    raise NotImplementedError


def _no_version(
    self: Any,
    key: str,
    data: bytes,
    *,
    content_type: Any = None,
    metadata: Any = None,
    if_match: Any = None,
    if_none_match: Any = None,
) -> Any:
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
        meta = _new(Meta, (key, len(data), data, _now(), CT, _EMPTY, 0))
        self._acquire()
        self._entries[key] = meta
        self._release()
        return meta
    raise NotImplementedError


def _plain_tuple(
    self: Any,
    key: str,
    data: bytes,
    *,
    content_type: Any = None,
    metadata: Any = None,
    if_match: Any = None,
    if_none_match: Any = None,
) -> Any:
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
        meta = (key, len(data), data, _now(), CT, _EMPTY, self._next_version())
        self._acquire()
        self._entries[key] = meta
        self._release()
        return meta
    raise NotImplementedError


def _counter_in_lock(
    self: Any,
    key: str,
    data: bytes,
    *,
    content_type: Any = None,
    metadata: Any = None,
    if_match: Any = None,
    if_none_match: Any = None,
) -> Any:
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
        self._acquire()
        self._version = version = getattr(self, "_version", 0) + 1
        self._entries[key] = meta = _new(Meta, (key, len(data), data, _now(), CT, _EMPTY, version))
        self._release()
        return meta
    raise NotImplementedError


def _minimalkv() -> Any:
    from minimalkv.memory import DictStore

    return DictStore()


VARIANTS: list[tuple[str, Callable[[], Any]]] = [
    ("minimalkv DictStore (the peer)", _minimalkv),
    ("MemoryStore.put as committed", MemoryStore),
    ("lean: no membership test / generation", Lean),
    ("lean, `with lock` instead of acquire/release", _variant("W", "", _checks_inline_with)),
    ("lean, key.isprintable() for isascii + NUL", _variant("P", "", _printable)),
    ("lean, counter bumped under the lock", _variant("C", "", _counter_in_lock)),
    ("lean minus key/value checks (breaks the contract)", _variant("N", "", _no_checks)),
    ("lean minus the lock (breaks the contract)", _variant("L", "", _no_lock)),
    ("lean minus time.time() (breaks the contract)", _variant("T", "", _no_clock)),
    ("lean minus the version counter (breaks the contract)", _variant("V", "", _no_version)),
    ("lean, plain tuple not Meta (breaks the contract)", _variant("U", "", _plain_tuple)),
    ("call + dict assignment only (lower bound)", DictOnly),
    ("call only (lower bound)", CallOnly),
]


def main() -> int:
    """Measure every variant, interleaved, and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--no-gc", action="store_true", help="disable the cyclic GC while timing")
    args = parser.parse_args()
    # "." not "/": minimalkv forbids "/" (the other variants do not care).
    keys = [f"user{index % 100}.item{index:08d}" for index in range(args.keys)]
    value = b"x" * 100
    timings: dict[str, list[float]] = {name: [] for name, _ in VARIANTS}
    for round_number in range(args.rounds + 1):
        shift = round_number % len(VARIANTS)
        for name, factory in VARIANTS[shift:] + VARIANTS[:shift]:
            store = factory()
            put = store.put
            gc.collect()
            if args.no_gc:
                gc.disable()
            started = time.perf_counter()
            for key in keys:
                put(key, value)
            elapsed = time.perf_counter() - started
            gc.enable()
            if round_number:  # the first round warms up
                timings[name].append(elapsed / len(keys) * 1e9)
    peer = statistics.median(timings[VARIANTS[0][0]])
    width = max(len(name) for name, _ in VARIANTS)
    print(f"{'variant':{width}}  ns/put  DictStore/variant")
    for name, _ in VARIANTS:
        median = statistics.median(timings[name])
        print(f"{name:{width}}  {median:6.0f}  {peer / median:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
