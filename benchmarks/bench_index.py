"""Speed of the SQLite metadata index at scale: record, du, du_children, ls, find, get.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_index.py                 # 1,000,000 keys
    .venv/bin/python benchmarks/bench_index.py --keys 100000 --dir /tmp

The index is filled with ``--keys`` keys shaped ``tenant07/day123/obj0000042``
(100 tenants x 100 days, so ``du("tenantNN/")`` covers 1% of the keys and
``du("tenantNN/dayMMM/")`` 0.01%) through ``record_many``; then each
question is timed with ``time.perf_counter`` over many calls (the median of
per-call times is reported), and ``record`` of one new key (an upsert of the
entry and of its three aggregate rows, one committed transaction) over
``--writes`` calls. The file lives in a fresh temporary directory under
``--dir`` (default: the system's), with ``fsync=False`` (WAL,
``synchronous=NORMAL``: a write survives a killed process).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from mirrorkv.meta import Meta
from mirrorkv.mirror import SQLiteIndex

BUCKET = "s3://bench"


def per_call(function: Callable[[int], object], calls: int) -> float:
    """The median seconds of one call of ``function(i)`` over ``calls`` calls."""
    times = []
    for i in range(calls):
        start = time.perf_counter()
        function(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def key_of(i: int) -> str:
    """The i-th key: 100 tenants x 100 days x objects."""
    return f"tenant{i % 100:02}/day{(i // 100) % 100:03}/obj{i:07}"


def main() -> None:
    """Fill an index and print the timings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--writes", type=int, default=5_000)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        path = Path(directory) / "index.db"
        with SQLiteIndex(path) as index:
            start = time.perf_counter()
            now = time.time()
            index.record_many(
                BUCKET, (Meta(key_of(i), i % 5000, "e" * 32, now) for i in range(args.keys))
            )
            fill = time.perf_counter() - start
            print(f"keys: {args.keys:,}; record_many: {fill:.1f} s ({args.keys / fill:,.0f}/s)")
            print(f"file: {path.stat().st_size / 1e6:,.0f} MB (+ WAL)")
            rows: list[tuple[str, float]] = []
            rows.append(
                (
                    "record (one new key, committed)",
                    per_call(
                        lambda i: index.record(
                            BUCKET, Meta(f"tenant{i % 100:02}/new/w{i:07}", 10, "e" * 32, now)
                        ),
                        args.writes,
                    ),
                )
            )
            rows.append(
                (
                    "record (overwrite, size changes)",
                    per_call(
                        lambda i: index.record(BUCKET, Meta(key_of(i * 7), i, "e" * 32, now)),
                        args.writes,
                    ),
                )
            )
            rows.append(("du('')", per_call(lambda i: index.du(BUCKET), 2000)))
            rows.append(
                (
                    "du('tenantNN/')",
                    per_call(lambda i: index.du(BUCKET, f"tenant{i % 100:02}/"), 2000),
                )
            )
            rows.append(
                (
                    "du('tenantNN/dayMMM/')",
                    per_call(
                        lambda i: index.du(BUCKET, f"tenant{i % 100:02}/day{i % 97:03}/"), 2000
                    ),
                )
            )
            rows.append(
                (
                    "du('tenantNN/day0') (100 small days)",
                    per_call(lambda i: index.du(BUCKET, f"tenant{i % 100:02}/day0"), 50),
                )
            )
            rows.append(
                (
                    "du('tenant0') (10 tenants, 1,000 days)",
                    per_call(lambda i: index.du(BUCKET, f"tenant{i % 10}"), 50),
                )
            )
            rows.append(
                (
                    "du('tenant') (every key: 100 tenants)",
                    per_call(lambda i: index.du(BUCKET, "tenant"), 20),
                )
            )
            rows.append(
                (
                    "du_children('') (100 children)",
                    per_call(lambda i: index.du_children(BUCKET), 50),
                )
            )
            rows.append(
                (
                    "du_children('tenantNN/') (100)",
                    per_call(lambda i: index.du_children(BUCKET, f"tenant{i % 100:02}/"), 50),
                )
            )
            rows.append(
                (
                    "get (hit)",
                    per_call(lambda i: index.get(BUCKET, key_of(i * 13 % args.keys)), 5000),
                )
            )
            rows.append(("ls('') (100 prefixes)", per_call(lambda i: index.ls(BUCKET), 50)))
            rows.append(
                (
                    "list one tenant/day (keys/10,000)",
                    per_call(
                        lambda i: sum(
                            1 for _ in index.list(BUCKET, f"tenant{i % 100:02}/day{i % 97:03}/")
                        ),
                        50,
                    ),
                )
            )
            rows.append(
                (
                    "find glob tenantNN/day01?/obj*1",
                    per_call(
                        lambda i: sum(
                            1 for _ in index.find(BUCKET, glob=f"tenant{i % 100:02}/day01?/obj*1")
                        ),
                        20,
                    ),
                )
            )
            for name, seconds in rows:
                print(f"{name:40} {seconds * 1e6:12,.1f} µs")


if __name__ == "__main__":
    main()
