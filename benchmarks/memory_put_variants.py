"""Where MemoryStore.put's time goes: each step of the hot path priced on its own.

Usage::

    .venv/bin/python benchmarks/memory_put_variants.py [--keys 20000] [--rounds 15]
    # the same, counted in machine instructions (deterministic on a noisy machine):
    .venv/bin/python benchmarks/memory_put_variants.py --instructions

Every variant is a class with the signature of ``MemoryStore.put``; each
round puts ``--keys`` fresh keys into a fresh instance of every variant, in a
rotated order. The report gives the median and the minimum time per put in
nanoseconds and the ratio to minimalkv's DictStore (higher is faster).

``--instructions`` runs each variant under ``valgrind --tool=cachegrind``
twice (with no puts and with ``--keys`` puts) and reports the difference per
put: instructions do not vary with the load of a shared machine, though they
ignore cache misses and so understate what allocations cost.

Variants marked "(breaks the contract)" are lower bounds that show what one
step costs, not candidates: the contract needs a lock shared with
conditional writes and ``incr``, a timestamp and a version on every write,
a valid key, and a ``Meta`` returned.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import os
import queue
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from mirrorkv.meta import DEFAULT_CONTENT_TYPE, Meta
from mirrorkv.stores.memory import MemoryStore

_NAMESPACE: dict[str, Any] = {
    "Meta": Meta,
    "_new": tuple.__new__,
    "_now": time.time,
    "CT": DEFAULT_CONTENT_TYPE,
    "_EMPTY": {},
}

# The fast path of put, with the key/value check and the body filled in per variant.
_TEMPLATE = """
def put(self, key, data, *, content_type=None, metadata=None, if_match=None,
        if_none_match=None):
    if (content_type is None and metadata is None and if_match is None
            and if_none_match is None and {check}):
{body}
        return meta
    raise NotImplementedError
"""

CHECK_CLASS = (
    "data.__class__ is bytes and key.__class__ is str and 0 < len(key) <= 256 "
    'and key.isascii() and "\\x00" not in key'
)
CHECK_TYPE = CHECK_CLASS.replace("data.__class__", "type(data)").replace(
    "key.__class__", "type(key)"
)
CHECK_PRINTABLE = (
    "type(data) is bytes and type(key) is str and 0 < len(key) <= 256 and key.isprintable()"
)

META = "meta = _new(Meta, (key, len(data), data, {now}, CT, _EMPTY, {version}))"
LOCKED = """\
self._acquire()
try:
    self._entries[key] = meta
finally:
    self._release()"""
QUEUED = LOCKED.replace("self._acquire()", "self._take()").replace(
    "self._release()", "self._give(None)"
)
COUNTER_IN_LOCK = """\
now = _now()
{acquire}
try:
    self._version = version = self._version + 1
    self._entries[key] = meta = _new(Meta, (key, len(data), data, now, CT, _EMPTY, version))
finally:
    {release}"""


def _meta(now: str = "_now()", version: str = "self._next_version()") -> str:
    return META.format(now=now, version=version)


class _Base:
    """The state every variant may use: entries, a Lock, a token queue, version counters."""

    def __init__(self) -> None:
        self._entries: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._acquire = self._lock.acquire
        self._release = self._lock.release
        self._next_version = itertools.count(1).__next__
        self._versions = itertools.count(1)
        self._version = 0
        # A SimpleQueue holding one token is a mutex whose two calls are cheaper
        # than Lock.acquire (argument parsing) and Lock.release.
        token = queue.SimpleQueue[None]()
        token.put(None)
        self._take = token.get
        self._give = token.put_nowait


def _variant(check: str, *steps: str) -> type:
    body = "\n".join(steps)
    indented = "\n".join("        " + line for line in body.splitlines())
    namespace = dict(_NAMESPACE)
    exec(_TEMPLATE.format(check=check, body=indented), namespace)
    return type("Variant", (_Base,), {"put": namespace["put"]})


class CallOnly:
    """(lower bound) the method call with its keyword defaults, nothing else."""

    def put(self, key: str, data: bytes, *, content_type: Any = None, metadata: Any = None,
            if_match: Any = None, if_none_match: Any = None) -> Any:  # fmt: skip
        return None


class DictOnly(_Base):
    """(lower bound) the call plus one dict assignment."""

    def put(self, key: str, data: bytes, *, content_type: Any = None, metadata: Any = None,
            if_match: Any = None, if_none_match: Any = None) -> Any:  # fmt: skip
        self._entries[key] = data
        return None


def _minimalkv() -> Any:
    from minimalkv.memory import DictStore

    return DictStore()


_LEAN = (CHECK_CLASS, _meta(), LOCKED)
_BEST = (CHECK_TYPE, COUNTER_IN_LOCK.format(acquire="self._take()", release="self._give(None)"))

VARIANTS: dict[str, Callable[[], Any]] = {
    "minimalkv DictStore (the peer)": _minimalkv,
    "MemoryStore.put (the code in src/)": MemoryStore,
    "lean: check, Meta(clock, next version), Lock, store": _variant(*_LEAN),
    "lean, type(x) is for x.__class__ is": _variant(CHECK_TYPE, _meta(), LOCKED),
    "lean, key.isprintable() for isascii + NUL": _variant(CHECK_PRINTABLE, _meta(), LOCKED),
    "lean, next(counter) for bound __next__": _variant(
        CHECK_CLASS, _meta(version="next(self._versions)"), LOCKED
    ),
    "lean, `with self._lock:`": _variant(
        CHECK_CLASS,
        _meta(),
        "with self._lock:\n    self._entries[key] = meta",
    ),
    "lean, version += 1 under the Lock": _variant(
        CHECK_CLASS, COUNTER_IN_LOCK.format(acquire="self._acquire()", release="self._release()")
    ),
    "lean, SimpleQueue token for the Lock": _variant(CHECK_CLASS, _meta(), QUEUED),
    "type(), += 1 under a SimpleQueue token (all three)": _variant(*_BEST),
    "version += 1 under the Lock, store an untracked tuple, return a Meta": _variant(
        CHECK_CLASS,
        """\
now = _now()
self._acquire()
try:
    self._version = version = self._version + 1
    self._entries[key] = (key, len(data), data, now, CT, None, version)
finally:
    self._release()
meta = _new(Meta, (key, len(data), data, now, CT, _EMPTY, version))""",
    ),
    "lean minus the key/value check (breaks the contract)": _variant("True", _meta(), LOCKED),
    "lean minus the lock (breaks the contract)": _variant(
        CHECK_CLASS, _meta(), "self._entries[key] = meta"
    ),
    "lean minus time.time() (breaks the contract)": _variant(CHECK_CLASS, _meta(now="0.0"), LOCKED),
    "lean minus the version (breaks the contract)": _variant(
        CHECK_CLASS, _meta(version="0"), LOCKED
    ),
    "lean, plain tuple not Meta (breaks the contract)": _variant(
        CHECK_CLASS,
        "meta = (key, len(data), data, _now(), CT, _EMPTY, self._next_version())",
        LOCKED,
    ),
    "call + dict assignment only (lower bound)": DictOnly,
    "call only (lower bound)": CallOnly,
}


def _keys(count: int) -> list[str]:
    # "." not "/": minimalkv forbids "/" (the other variants do not care).
    return [f"user{index % 100}.item{index:08d}" for index in range(count)]


def _run(factory: Callable[[], Any], keys: list[str], value: bytes) -> float:
    store = factory()
    put = store.put
    gc.collect()
    started = time.perf_counter()
    for key in keys:
        put(key, value)
    return time.perf_counter() - started


def timed(args: argparse.Namespace) -> None:
    """Interleaved rounds of every variant; print median and minimum ns per put."""
    keys, value = _keys(args.keys), b"x" * 100
    names = list(VARIANTS)
    timings: dict[str, list[float]] = {name: [] for name in names}
    for round_number in range(args.rounds + 1):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            elapsed = _run(VARIANTS[name], keys, value)
            if round_number:  # the first round warms up
                timings[name].append(elapsed / len(keys) * 1e9)
    peer = names[0]
    peer_median, peer_min = statistics.median(timings[peer]), min(timings[peer])
    width = max(map(len, names))
    print(f"{'variant':{width}}  median ns (vs peer)   min ns (vs peer)")
    for name in names:
        median, least = statistics.median(timings[name]), min(timings[name])
        print(
            f"{name:{width}}  {median:6.0f} ({peer_median / median:4.2f}x)"
            f"   {least:6.0f} ({peer_min / least:4.2f}x)"
        )


def _instructions(name: str, keys: int, puts: int) -> int:
    with tempfile.TemporaryDirectory() as directory:
        out = os.path.join(directory, "cachegrind.out")
        command = [
            "valgrind", "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={out}",
            sys.executable, __file__, "--one", name, "--keys", str(keys), "--puts", str(puts),
        ]  # fmt: skip
        completed = subprocess.run(command, capture_output=True, text=True, check=True)
    match = re.search(r"I\s+refs:\s+([\d,]+)", completed.stderr)
    if match is None:
        raise RuntimeError(completed.stderr[-2000:])
    return int(match.group(1).replace(",", ""))


def counted(args: argparse.Namespace) -> None:
    """Instructions per put of every variant, from two cachegrind runs each."""
    names = list(VARIANTS)
    width = max(map(len, names))
    print(f"{'variant':{width}}  instructions/put (vs peer)")
    peer = 0.0
    for name in names:
        # Both runs build the same keys and store; only the puts differ.
        puts = _instructions(name, args.keys, args.keys) - _instructions(name, args.keys, 0)
        per_put = puts / args.keys
        peer = peer or per_put
        print(f"{name:{width}}  {per_put:7.0f} ({peer / per_put:4.2f}x)", flush=True)


def main() -> int:
    """Parse the options and measure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--instructions", action="store_true", help="count under valgrind")
    # One variant, once, putting the first --puts keys (what the valgrind runs execute).
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--puts", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        _run(VARIANTS[args.one], _keys(args.keys)[: args.puts], b"x" * 100)
    elif args.instructions:
        counted(args)
    else:
        timed(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
