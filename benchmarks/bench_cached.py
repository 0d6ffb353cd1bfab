"""Cached hit latency against a read of the bare SQLite store.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_cached.py [--keys 20000] [--size 1024] [--rounds 7]

A SQLiteStore is filled with ``--keys`` values of ``--size`` bytes; every key
is read once through ``Cached(store)`` (default cache: a MemoryStore bounded
at 64 MiB) so that later reads hit. Each round then reads every key, in a
shuffled order, from the bare store and through the layer (with and without
``max_age``: a copy younger than that is served as is), alternating which
goes first; the median of the rounds is reported as reads per second and
as a ratio to the bare store. Target (issue 6): a hit at least 5x faster
than a SQLite read.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from mirrorkv.layers import Cached
from mirrorkv.stores.sqlite import SQLiteStore


def reads_per_second(read: Callable[[str], bytes], keys: list[str]) -> float:
    """Read every key once; return reads per second."""
    start = time.perf_counter()
    for key in keys:
        read(key)
    return len(keys) / (time.perf_counter() - start)


def main() -> None:
    """Fill a store, warm the caches, print the medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store = SQLiteStore(Path(folder) / "bench.db")
        keys = [f"k{i:07d}" for i in range(args.keys)]
        store.put_many({key: random.randbytes(args.size) for key in keys})
        cached = Cached(store)
        revalidated = Cached(store, max_age=60.0)
        contenders: dict[str, Callable[[str], bytes]] = {
            "SQLiteStore.get": store.get,
            "Cached(SQLiteStore).get, hit": cached.get,
            "Cached(..., max_age=60).get, hit": revalidated.get,
        }
        for read in (cached.get, revalidated.get):
            for key in keys:
                read(key)
        results: dict[str, list[float]] = {name: [] for name in contenders}
        for round_ in range(args.rounds):
            random.shuffle(keys)
            order = list(contenders) if round_ % 2 == 0 else list(reversed(contenders))
            for name in order:
                results[name].append(reads_per_second(contenders[name], keys))
        base = statistics.median(results["SQLiteStore.get"])
        print(f"{args.keys:,} keys of {args.size} bytes, median of {args.rounds} rounds")
        print(f"{'contender':36} {'reads/s':>12} {'vs SQLite':>10}")
        for name, rates in results.items():
            rate = statistics.median(rates)
            print(f"{name:36} {rate:12,.0f} {rate / base:9.1f}x")
        print(f"hits {cached.hits:,} misses {cached.misses:,} (cache {cached.cache!r})")
        store.close()


if __name__ == "__main__":
    main()
