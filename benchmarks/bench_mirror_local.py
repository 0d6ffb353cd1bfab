"""The mirror's answers over a synced index alone, without S3: for quick before/after figures.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_mirror_local.py
    .venv/bin/python benchmarks/bench_mirror_local.py --objects 20000 --rounds 3

Fills a fresh SQLite index with the keys and sizes of ``bench_mirror.py``'s
bucket as its sync records them (pages of 1,000 listed records through
``replace_range``), then times the mirror's ``list``, ``ls`` and ``find`` on
the same questions as ``bench_mirror.py``, and beside them the answer's
rows alone (one SQL statement; for a glob, the statement the index runs,
``sqlite_index.suffix_rows_query``).
``--covering`` adds an index of the reversed keys that holds every column
and times the narrow glob's statement through it against the real one.
Each figure is the median of per-call times over at least 0.5 s;
``--rounds`` repeats the whole set. The remote is an empty ``MemoryStore``:
these questions never reach it.
"""

from __future__ import annotations

import argparse
import functools
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_mirror import GLOB_ALL, GLOB_NARROW, key_name, size_of
from mirrorkv.meta import Meta
from mirrorkv.mirror import Mirror, SQLiteIndex
from mirrorkv.mirror._sqlite_index_schema import COLUMNS
from mirrorkv.mirror.index import glob_prefilter
from mirrorkv.mirror.sqlite_index import suffix_rows_query
from mirrorkv.stores.memory import MemoryStore

BUCKET = "bench-mirror"
PAGE = 1000


def median_call(call: Callable[[], Any], budget: float = 0.5) -> float:
    """The median seconds of ``call`` over at least 3 calls and ``budget`` seconds."""
    call()
    times: list[float] = []
    while len(times) < 3 or sum(times) < budget:
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def fill(index: SQLiteIndex, objects: int, prefixes: int) -> list[str]:
    """Record the bucket as a listing sync does; return its keys in order."""
    keys = sorted(
        ((key_name(i, prefixes), size_of(i)) for i in range(objects)), key=lambda k: k[0].encode()
    )
    after: str | None = None
    for start in range(0, len(keys), PAGE):
        page = [
            Meta(key, size, f"{size:032x}", 1_700_000_000.0 + size, version="")
            for key, size in keys[start : start + PAGE]
        ]
        last = page[-1].key if start + PAGE < len(keys) else None
        index.replace_range(BUCKET, "", page, start_after=after, until=last)
        after = page[-1].key
    return [key for key, _ in keys]


def list_all(rows: Callable[[], Any]) -> list[Any]:
    """Every row ``rows()`` returns, fetched."""
    return list(rows())


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=20_000)
    parser.add_argument("--prefixes", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--covering",
        action="store_true",
        help="also time the narrow glob through an index of reversed keys holding every column",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "index.db"
        index = SQLiteIndex(path)
        fill(index, args.objects, args.prefixes)
        mirror = Mirror(MemoryStore(), index, bucket=BUCKET)
        rows = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        prefix = f"p{37 % args.prefixes:03d}/"
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        select = "SELECT key, size, etag, modified, content_type, metadata, version FROM entries"
        questions: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = [
            (
                "list all",
                lambda: [meta.key for meta in mirror.list()],
                lambda: rows.execute(f"{select} WHERE bucket = ? ORDER BY key", (BUCKET,)),
            ),
            (
                f"list {prefix}",
                lambda: [meta.key for meta in mirror.list(prefix)],
                lambda: rows.execute(
                    f"{select} WHERE bucket = ? AND key >= ? AND key < ? ORDER BY key",
                    (BUCKET, prefix, upper),
                ).fetchall(),
            ),
            ("ls " + prefix, lambda: [meta.key for meta in mirror.ls(prefix).objects], None),
            ("ls top level", lambda: mirror.ls("").prefixes, None),
            (
                f"find {GLOB_ALL}",
                lambda: [m.key for m in mirror.find(GLOB_ALL)],
                lambda: rows.execute(
                    *suffix_rows_query(BUCKET, "7.csv", glob_prefilter(GLOB_ALL, "glob"), "", None)
                ),
            ),
            (
                f"find {GLOB_NARROW}",
                lambda: [m.key for m in mirror.find(GLOB_NARROW)],
                lambda: rows.execute(*narrow),
            ),
            ("head", lambda: mirror.head(key_name(args.objects // 2 + 1, args.prefixes)), None),
        ]
        narrow = suffix_rows_query(
            BUCKET, "7.csv", glob_prefilter(GLOB_NARROW, "glob"), "p01", "p02"
        )
        covering: tuple[str, tuple[Any, ...]] | None = None
        if args.covering:
            writer = sqlite3.connect(path)
            writer.execute(f"CREATE INDEX covering ON entries (bucket, rkey, {COLUMNS})")
            writer.close()
            covering = (
                f"{select} INDEXED BY covering WHERE bucket = ? AND rkey >= ? AND rkey < ?"
                " AND key >= ? AND key < ? AND key GLOB ? ORDER BY key",
                (BUCKET, "vsc.7", "vsc.8", "p01", "p02", glob_prefilter(GLOB_NARROW, "glob")),
            )
        print(f"{args.objects:,} keys over {args.prefixes} prefixes; medians per call\n")
        for round_ in range(1, args.rounds + 1):
            for name, ask, alone in questions:
                line = f"round {round_}  {name:<28} mirror {median_call(ask) * 1e6:>10,.1f} µs"
                if alone is not None:
                    seconds = median_call(functools.partial(list_all, alone))
                    line += f"   rows alone {seconds * 1e6:>10,.1f} µs"
                print(line)
            if covering is not None:
                real = median_call(lambda: rows.execute(*narrow).fetchall())
                wide = median_call(lambda: rows.execute(*covering).fetchall())
                print(
                    f"round {round_}  {GLOB_NARROW}'s statement: through entries_by_suffix "
                    f"{real * 1e6:,.1f} µs, through a covering index {wide * 1e6:,.1f} µs"
                )
            print()
        mirror.close()
        index.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
