"""Speed of the PostgreSQL metadata index's reads: du, du_children, ls, find by glob.

Usage (from the repository root; a PostgreSQL database the user may create
tables in)::

    .venv/bin/python benchmarks/bench_postgres_index.py
    .venv/bin/python benchmarks/bench_postgres_index.py --keys 200000 \\
        --url postgresql://postgres@127.0.0.1:5432/test

Fills a fresh index (its own table prefix, dropped at the end) with
``--keys`` keys shaped as bench_index's (``tenant07/day123/obj0000042``:
100 tenants x 100 days) through ``record_many``, then times each question
with ``time.perf_counter`` over many calls and reports the median per call.
With ``--mixed``, every tenant directory and ``""`` also get a few objects
of their own, so the reads take their path for directories that hold
objects directly. After the fill the tables are vacuumed and analysed
(``--no-vacuum``: not), as autovacuum would have done by then: a fill
leaves about 19 dead versions of every aggregate row, and a server may run
with autovacuum off.

The ``find`` rows time globs ending in literal text, over the whole bucket
(``*/*/obj*77``) and over a narrow range (``tenant7*/day01?/obj*77``), and
one whose literal ending is a single character (``*/*/obj*7``, which always
scans); each row says how many keys it finds. The last lines give the size
of the entries table with its indexes, and of each of its indexes.
"""

from __future__ import annotations

import argparse
import os
import time

import psycopg

from bench_index import key_of, per_call
from mirrorkv.meta import Meta
from mirrorkv.mirror.postgres_index import PostgresIndex

BUCKET = "s3://bench"
#: The globs ``find`` is timed with, and how many calls each.
GLOBS = [("*/*/obj*77", 20), ("tenant7*/day01?/obj*77", 50), ("*/*/obj*7", 5)]
#: The size of the entries table with its indexes, then of each of its indexes.
SIZES = """SELECT 'entries table and indexes', pg_total_relation_size(c.oid)
    FROM pg_class AS c WHERE c.relname = %(t)s
    UNION ALL SELECT 'index ' || i.indexrelid::regclass::text, pg_relation_size(i.indexrelid)
    FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indrelid WHERE c.relname = %(t)s"""


def main() -> None:
    """Fill an index, print the timings, drop the index."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=200_000)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--mixed", action="store_true")
    parser.add_argument("--no-vacuum", action="store_true")
    args = parser.parse_args()
    index = PostgresIndex(args.url, table=f"bench_{os.getpid()}")
    try:
        start = time.perf_counter()
        now = time.time()
        index.record_many(
            BUCKET, (Meta(key_of(i), i % 5000, "e" * 32, now) for i in range(args.keys))
        )
        if args.mixed:
            extra = ["top0", "top1", *(f"tenant{t:02}/file{j}" for t in range(100) for j in (0, 1))]
            index.record_many(BUCKET, (Meta(key, 1, "e" * 32, now) for key in extra))
        fill = time.perf_counter() - start
        if not args.no_vacuum:
            with psycopg.connect(args.url, autocommit=True) as conn:
                for table in ("entries", "usage"):
                    conn.execute(f'VACUUM ANALYZE "{index.table}_{table}"')
        print(
            f"keys: {args.keys:,}; record_many: {fill:.1f} s; mixed: {args.mixed}; "
            f"vacuumed: {not args.no_vacuum}"
        )
        rows: list[tuple[str, float]] = [
            ("du('tenantNN/')", per_call(lambda i: index.du(BUCKET, f"tenant{i % 100:02}/"), 500)),
            ("du('tenant') (100 tenants)", per_call(lambda i: index.du(BUCKET, "tenant"), 200)),
            (
                "du('tenant0') (10 tenants)",
                per_call(lambda i: index.du(BUCKET, f"tenant{i % 10}"), 200),
            ),
            (
                "du('tenantNN/day0') (100 days)",
                per_call(lambda i: index.du(BUCKET, f"tenant{i % 100:02}/day0"), 200),
            ),
            ("du_children('') (100 children)", per_call(lambda i: index.du_children(BUCKET), 200)),
            (
                "du_children('tenantNN/') (100)",
                per_call(lambda i: index.du_children(BUCKET, f"tenant{i % 100:02}/"), 200),
            ),
            ("ls('') (100 prefixes)", per_call(lambda i: index.ls(BUCKET), 100)),
            (
                "ls('tenantNN/') (100 prefixes)",
                per_call(lambda i: index.ls(BUCKET, f"tenant{i % 100:02}/"), 100),
            ),
        ]
        rows.append(
            (
                "record (one new key; what the index costs writes)",
                per_call(
                    lambda i: index.record(
                        BUCKET, Meta(f"tenant{i % 100:02}/new/w{i:07}", 10, "e" * 32, now)
                    ),
                    1000,
                ),
            )
        )
        for glob, calls in GLOBS:
            hits = sum(1 for _ in index.find(BUCKET, glob=glob))
            seconds = per_call(lambda i, g=glob: list(index.find(BUCKET, glob=g)), calls)
            rows.append((f"find(glob={glob!r}) ({hits:,} keys)", seconds))
        for name, seconds in rows:
            print(f"{name:50} {seconds * 1e6:12,.1f} µs")
        with psycopg.connect(args.url) as conn:
            for name, size in conn.execute(SIZES, {"t": f"{index.table}_entries"}):
                print(f"{name:50} {size / 2**20:12,.1f} MiB")
    finally:
        index.drop_tables()


if __name__ == "__main__":
    main()
