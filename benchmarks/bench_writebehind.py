"""WriteBehind(MemoryStore -> SQLiteStore) against what a LeakDB user does instead.

Usage (from the repository root, with the ``bench`` extra installed)::

    .venv/bin/python benchmarks/bench_writebehind.py             # 20,000 and 1,000,000 keys
    .venv/bin/python benchmarks/bench_writebehind.py --keys 20000 --rounds 5
    .venv/bin/python benchmarks/bench_writebehind.py --redis redis://127.0.0.1:6379/0
    .venv/bin/python benchmarks/bench_writebehind.py --only writebehind,dict+pickle

The workload, for each ``--keys`` count K, run by every contender in ONE
process: a store that already holds K keys (``user42/item00001234``, 100-byte
values), then ``put`` of 100-byte values to keys drawn at random from those K
(seeded; the same sequence for everyone), one call at a time; then ``incr`` of
counters drawn at random from K counter names (absent at first), one call at
a time. Figures are operations per second over the timed calls: the best of
``--rounds`` for the fast contenders, one round for the slow ones (which run
``--slow-ops`` calls instead of ``--ops``).

The contenders, and what each has on disk when the loop ends:

* ``dict``: the same loops over a bare dict (``put`` is ``dict.__setitem__``,
  ``incr`` a one-line function), for reference (nothing on disk): what the
  benchmark's loop and one call cost, so that it is seen not to dominate.
* ``memory``: a MemoryStore alone, for reference (nothing on disk): the
  floor under writebehind's calls, which land in one.
* ``writebehind``: ``WriteBehind(front=MemoryStore(), back=SQLiteStore(path))``
  with its defaults (max_pending=1000, interval=1.0): calls land in memory, a
  background thread flushes what changed. Shown twice: the loop alone, and
  the loop plus the ``flush()`` that makes every write durable (the line also
  says how many rows that last flush wrote, of K). Its open time (warming K
  keys from SQLite) is printed too.
* ``dict+pickle``: a dict, dumped whole with ``pickle.dump`` to a file every
  1,000 writes (LeakDB's periodic dump): at most 999 writes lost on a crash,
  and each dump costs time proportional to K.
* ``shelve``: ``shelve.open`` (the dbm the interpreter has); every write goes
  to the dbm file (not fsynced).
* ``diskcache``: ``diskcache.Cache`` (SQLite underneath, a transaction per write).
* ``redis``: redis-py ``SET`` / ``INCR`` over loopback to ``--redis``, one
  round trip per call (keys under a unique prefix, deleted afterwards). The
  server is shared, so it is not preloaded with K keys: its per-call cost does
  not depend on the key count.

Ratios are writebehind (loop plus final flush) over each contender.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import pickle
import random
import shelve
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from mirrorkv import MemoryStore
from mirrorkv.layers import WriteBehind
from mirrorkv.store import Store
from mirrorkv.stores.sqlite import SQLiteStore

VALUE_SIZE = 100
DUMP_EVERY = 1000
LOAD_CHUNK = 50_000


@dataclass
class Result:
    """One contender's figures at one key count."""

    name: str
    put: float = 0.0
    incr: float = 0.0
    notes: list[str] = field(default_factory=list)


def make_keys(count: int) -> list[str]:
    return [f"user{i % 1000}/item{i:08d}" for i in range(count)]


def make_values(count: int, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(VALUE_SIZE) for _ in range(min(count, 4096))]


@contextlib.contextmanager
def scratch() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="bench-wb-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def timed(loop: Callable[[], None], calls: int) -> float:
    gc.collect()
    start = time.perf_counter()
    loop()
    return calls / (time.perf_counter() - start)


def put_loop(store: Store | BareDict, pairs: list[tuple[str, bytes]]) -> None:
    put = store.put
    for key, value in pairs:
        put(key, value)


def incr_loop(store: Store | BareDict, counters: list[str]) -> None:
    incr = store.incr
    for key in counters:
        incr(key)


# -- contenders ----------------------------------------------------------------


def run_writebehind(keys: list[str], plan: Plan) -> Result:
    result = Result("writebehind")
    with scratch() as folder:
        path = os.path.join(folder, "back.db")
        with SQLiteStore(path) as back:
            for start in range(0, len(keys), LOAD_CHUNK):
                chunk = keys[start : start + LOAD_CHUNK]
                back.put_many(
                    {key: plan.values[i % len(plan.values)] for i, key in enumerate(chunk)}
                )
        best_put = best_incr = best_put_durable = best_incr_durable = 0.0
        for _ in range(plan.rounds):
            started = time.perf_counter()
            store = WriteBehind(SQLiteStore(path), front=MemoryStore())
            opened = time.perf_counter() - started
            pairs, counters = plan.put_pairs, plan.counters
            gc.collect()
            began = time.perf_counter()
            put_loop(store, pairs)
            loop_time = time.perf_counter() - began
            flush_rows = store.stats.pending
            store.flush()
            durable_time = time.perf_counter() - began
            best_put = max(best_put, len(pairs) / loop_time)
            best_put_durable = max(best_put_durable, len(pairs) / durable_time)
            gc.collect()
            began = time.perf_counter()
            incr_loop(store, counters)
            loop_time = time.perf_counter() - began
            store.flush()
            durable_time = time.perf_counter() - began
            best_incr = max(best_incr, len(counters) / loop_time)
            best_incr_durable = max(best_incr_durable, len(counters) / durable_time)
            store.delete_many(set(counters))
            store.close()
        result.put, result.incr = best_put_durable, best_incr_durable
        result.notes.append(
            f"loop alone: put {best_put:,.0f}/s, incr {best_incr:,.0f}/s; "
            f"open (warm {len(keys):,} keys) {opened:.2f} s; "
            f"the final flush after the puts wrote {flush_rows:,} rows of {len(keys):,} "
            "(the pending keys; the background flushes wrote the rest)"
        )
    return result


class BareDict(dict[str, object]):
    """The loops' floor: ``put`` and ``incr`` as cheap as a Python call on a dict can be."""

    put: Callable[[str, object], None]
    incr: Callable[[str], None]

    def __init__(self) -> None:
        super().__init__()
        self.put = self.__setitem__
        get = self.get

        def incr(key: str) -> None:
            self[key] = get(key, 0) + 1  # type: ignore[operator]  # the values are ints

        self.incr = incr


def run_dict(keys: list[str], plan: Plan) -> Result:
    result = Result("dict")
    best_put = best_incr = 0.0
    for _ in range(plan.rounds):
        data = BareDict()
        data.update({key: plan.values[i % len(plan.values)] for i, key in enumerate(keys)})

        def puts(data: BareDict = data) -> None:
            put_loop(data, plan.put_pairs)

        def incrs(data: BareDict = data) -> None:
            incr_loop(data, plan.counters)

        best_put = max(best_put, timed(puts, len(plan.put_pairs)))
        best_incr = max(best_incr, timed(incrs, len(plan.counters)))
    result.put, result.incr = best_put, best_incr
    result.notes.append("a bare dict through the same loops: the cost of the loop and one call")
    return result


def run_memory(keys: list[str], plan: Plan) -> Result:
    result = Result("memory")
    best_put = best_incr = 0.0
    for _ in range(plan.rounds):
        store = MemoryStore()
        store.put_many({key: plan.values[i % len(plan.values)] for i, key in enumerate(keys)})
        gc.collect()
        began = time.perf_counter()
        put_loop(store, plan.put_pairs)
        best_put = max(best_put, len(plan.put_pairs) / (time.perf_counter() - began))
        gc.collect()
        began = time.perf_counter()
        incr_loop(store, plan.counters)
        best_incr = max(best_incr, len(plan.counters) / (time.perf_counter() - began))
    result.put, result.incr = best_put, best_incr
    result.notes.append("MemoryStore alone, nothing durable: the floor under writebehind's calls")
    return result


def run_dict_pickle(keys: list[str], plan: Plan) -> Result:
    result = Result("dict+pickle")
    large = len(keys) > 100_000
    pairs = plan.slow_pairs if large else plan.put_pairs
    counters = plan.slow_counters if large else plan.counters
    best_put = best_incr = 0.0
    size = 0
    with scratch() as folder:
        path = os.path.join(folder, "data.pickle")
        for _ in range(1 if large else plan.rounds):
            data: dict[str, object] = {
                key: plan.values[i % len(plan.values)] for i, key in enumerate(keys)
            }

            def dump(data: dict[str, object] = data) -> None:
                with open(path, "wb") as out:
                    pickle.dump(data, out, protocol=pickle.HIGHEST_PROTOCOL)

            def put_phase(data: dict[str, object] = data, dump: Callable[[], None] = dump) -> None:
                for written, (key, value) in enumerate(pairs, 1):
                    data[key] = value
                    if written % DUMP_EVERY == 0:
                        dump()

            def incr_phase(data: dict[str, object] = data, dump: Callable[[], None] = dump) -> None:
                for written, key in enumerate(counters, 1):
                    data[key] = int(data.get(key, 0)) + 1  # type: ignore[call-overload]
                    if written % DUMP_EVERY == 0:
                        dump()

            best_put = max(best_put, timed(put_phase, len(pairs)))
            size = len(data)
            best_incr = max(best_incr, timed(incr_phase, len(counters)))
        result.put, result.incr = best_put, best_incr
        result.notes.append(
            f"{len(pairs):,} calls; a dump of the whole dict ({size:,} keys, then the counters"
            f" too) every {DUMP_EVERY} writes"
        )
    return result


def run_shelve(keys: list[str], plan: Plan) -> Result:
    import dbm

    result = Result("shelve")
    with scratch() as folder:
        path = os.path.join(folder, "data")
        with shelve.open(path) as db:
            for i, key in enumerate(keys):
                db[key] = plan.values[i % len(plan.values)]

            def put_loop() -> None:
                for key, value in plan.slow_pairs:
                    db[key] = value

            def incr_loop() -> None:
                for key in plan.slow_counters:
                    db[key] = db.get(key, 0) + 1

            result.put = timed(put_loop, len(plan.slow_pairs))
            result.incr = timed(incr_loop, len(plan.slow_counters))
        result.notes.append(f"dbm: {dbm.whichdb(path) or '?'}; {len(plan.slow_pairs):,} calls")
    return result


def run_diskcache(keys: list[str], plan: Plan) -> Result:
    import diskcache  # type: ignore[import-untyped]

    result = Result("diskcache")
    with scratch() as folder, diskcache.Cache(folder) as cache:
        for start in range(0, len(keys), LOAD_CHUNK):
            with cache.transact():
                for i, key in enumerate(keys[start : start + LOAD_CHUNK], start):
                    cache[key] = plan.values[i % len(plan.values)]

        def put_loop() -> None:
            for key, value in plan.slow_pairs:
                cache[key] = value

        def incr_loop() -> None:
            for key in plan.slow_counters:
                cache.incr(key)

        result.put = timed(put_loop, len(plan.slow_pairs))
        result.incr = timed(incr_loop, len(plan.slow_counters))
        result.notes.append(f"{len(plan.slow_pairs):,} calls")
    return result


def run_redis(keys: list[str], plan: Plan) -> Result:
    import redis

    result = Result("redis")
    client = redis.Redis.from_url(plan.redis_url)
    prefix = f"bench-wb-{uuid.uuid4().hex[:8]}:"
    try:
        client.ping()
        pairs = [(prefix + key, value) for key, value in plan.slow_pairs]
        counters = [prefix + key for key in plan.slow_counters]

        def put_loop() -> None:
            for key, value in pairs:
                client.set(key, value)

        def incr_loop() -> None:
            for key in counters:
                client.incr(key)

        result.put = timed(put_loop, len(pairs))
        result.incr = timed(incr_loop, len(counters))
        result.notes.append(f"{len(pairs):,} calls, one round trip each, not preloaded")
    finally:
        with contextlib.suppress(redis.RedisError):
            batch = list(client.scan_iter(match=prefix + "*", count=1000))
            for start in range(0, len(batch), 1000):
                client.unlink(*batch[start : start + 1000])
        client.close()
    return result


CONTENDERS: dict[str, Callable[[list[str], Plan], Result]] = {
    "writebehind": run_writebehind,
    "memory": run_memory,
    "dict": run_dict,
    "dict+pickle": run_dict_pickle,
    "shelve": run_shelve,
    "diskcache": run_diskcache,
    "redis": run_redis,
}


@dataclass
class Plan:
    """The calls every contender makes at one key count."""

    values: list[bytes]
    put_pairs: list[tuple[str, bytes]]
    counters: list[str]
    slow_pairs: list[tuple[str, bytes]]
    slow_counters: list[str]
    rounds: int
    redis_url: str


def make_plan(keys: list[str], args: argparse.Namespace) -> Plan:
    rng = random.Random(42)
    values = make_values(len(keys))
    count = len(keys)
    put_pairs = [(keys[rng.randrange(count)], values[i % len(values)]) for i in range(args.ops)]
    counters = [f"count/{rng.randrange(count):08d}" for _ in range(args.ops)]
    return Plan(
        values=values,
        put_pairs=put_pairs,
        counters=counters,
        slow_pairs=put_pairs[: args.slow_ops],
        slow_counters=counters[: args.slow_ops],
        rounds=args.rounds,
        redis_url=args.redis,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", default="20000,1000000", help="key counts, comma-separated")
    parser.add_argument("--ops", type=int, default=200_000, help="calls per phase (fast ones)")
    parser.add_argument("--slow-ops", type=int, default=5_000, help="calls per phase (slow ones)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds for the fast contenders")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL")
    parser.add_argument("--only", default="", help="contenders to run, comma-separated")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()] or list(CONTENDERS)
    print("command:", " ".join([os.path.basename(sys.executable), *sys.argv]))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, values of {VALUE_SIZE} bytes")
    for count in (int(text.replace("_", "")) for text in args.keys.split(",")):
        keys = make_keys(count)
        plan = make_plan(keys, args)
        print(f"\n== {count:,} keys ==")
        results: dict[str, Result] = {}
        for name in chosen:
            try:
                results[name] = result = CONTENDERS[name](keys, plan)
            except Exception as error:  # a missing peer or server: say so, go on
                print(f"{name:12} skipped: {type(error).__name__}: {error}")
                continue
            print(f"{name:12} put {result.put:>12,.0f}/s   incr {result.incr:>12,.0f}/s")
            for note in result.notes:
                print(f"{'':12} {note}")
        ours = results.get("writebehind")
        if ours is None:
            continue
        for name, other in results.items():
            if name != "writebehind" and other.put and other.incr:
                print(
                    f"writebehind / {name:12} put x{ours.put / other.put:,.1f}"
                    f"   incr x{ours.incr / other.incr:,.1f}"
                )


if __name__ == "__main__":
    main()
