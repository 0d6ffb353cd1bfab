"""Side-by-side benchmark of SQLStore on PostgreSQL against a plain psycopg loop and minimalkv.

Usage (from the repository root, a PostgreSQL server at hand)::

    .venv/bin/python benchmarks/bench_sql.py                     # local server, 3 rounds
    .venv/bin/python benchmarks/bench_sql.py --url postgresql://user:pw@host:5432/db
    .venv/bin/python benchmarks/bench_sql.py --keys 10000 --repeat 5 --markdown
    .venv/bin/python benchmarks/bench_sql.py --only mirrorkv,psycopg

The server is ``--url``, else ``$MIRRORKV_BENCH_POSTGRES_URL``, else
``postgresql://postgres@127.0.0.1:5432/test``. Every contender runs in this
one process against that same server, each in a table of its own (created
for the run and dropped after it):

* ``mirrorkv``: :class:`~mirrorkv.stores.sql.SQLStore` (its own layout:
  metadata columns, etag, version, chunked large values).
* ``psycopg``: the floor: a plain psycopg 3 connection in autocommit on a
  two-column table ``(k text COLLATE "C" PRIMARY KEY, v bytea)``, one
  ``INSERT ... ON CONFLICT DO UPDATE`` per put and one ``SELECT`` per get;
  its batch idioms are ``executemany`` in one transaction (psycopg pipelines
  it) and one ``SELECT ... WHERE k = ANY(%s)``.
* ``minimalkv``: minimalkv's ``SQLAlchemyStore`` on the same server (a
  ``(key, value)`` table through SQLAlchemy Core); it has no batch calls,
  so its ``get_many``/``put_many`` are loops.

The workload per round: ``put`` each of ``--keys`` keys (shaped
``user42/item00001234``, 100-byte random values) one call at a time, ``get``
each in a shuffled order, then ``get_many`` of all of them in one call and
``put_many`` of ``--keys`` new ones in one call. Single calls are interleaved
between the contenders a slice of 100 calls at a time (the machine may be
shared: a burst of load then hits every contender alike), and such a phase
stops after ``--phase-seconds`` of one contender's time (at least 1,000
calls; the rest is loaded untimed). The batch calls run in a rotated order.
Figures are operations (keys) per second, the median over ``--repeat``
rounds, timed with ``time.perf_counter``.

It prints the table, the ratios of mirrorkv to each peer and the issue's
targets with PASS/FAIL: ``get_many`` at least 10x mirrorkv's own one-at-a-time
get loop, ``put_many`` at least 5x its put loop, a single get within 10% of
raw psycopg and a single put within 25%.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

Item = tuple[str, bytes]
PHASES = ("put", "get", "get_many", "put_many")
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass
class Adapter:
    """One contender's calls, bound to an open store or connection."""

    put: Callable[[str, bytes], object]
    get: Callable[[str], object]
    get_many: Callable[[list[str]], object]
    put_many: Callable[[list[Item]], object]
    close: Callable[[], object]


@dataclass
class Result:
    """Per-phase rates of one contender over all rounds."""

    rates: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in PHASES})

    def median(self, phase: str) -> float | None:
        """The median rate of ``phase``, or None where it was never measured."""
        values = self.rates[phase]
        return statistics.median(values) if values else None


# -- contenders ----------------------------------------------------------------------


def open_mirrorkv(url: str, table: str) -> Adapter:
    """mirrorkv SQLStore."""
    from mirrorkv.stores.sql import SQLStore

    store = SQLStore(url, table=table)
    return Adapter(store.put, store.get, store.get_many, store.put_many, store.drop_tables)


def open_psycopg(url: str, table: str) -> Adapter:
    """Raw psycopg 3, autocommit, a (k, v) table."""
    import psycopg

    conn = psycopg.connect(url, autocommit=True)
    conn.execute(f'CREATE TABLE {table} (k text COLLATE "C" PRIMARY KEY, v bytea NOT NULL)')
    cursor = conn.cursor()
    put_sql = (
        f"INSERT INTO {table} (k, v) VALUES (%s, %s) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v"
    )
    get_sql = f"SELECT v FROM {table} WHERE k = %s"
    many_sql = f"SELECT k, v FROM {table} WHERE k = ANY(%s)"

    def put(key: str, value: bytes) -> None:
        cursor.execute(put_sql, (key, value))

    def get(key: str) -> bytes:
        cursor.execute(get_sql, (key,))
        row = cursor.fetchone()
        if row is None:
            raise KeyError(key)
        value: bytes = row[0]
        return value

    def get_many(keys: list[str]) -> dict[str, bytes]:
        cursor.execute(many_sql, (keys,))
        return dict(cursor.fetchall())

    def put_many(items: list[Item]) -> None:
        with conn.transaction():
            cursor.executemany(put_sql, items)

    def close() -> None:
        conn.execute(f"DROP TABLE {table}")
        conn.close()

    return Adapter(put, get, get_many, put_many, close)


def open_minimalkv(url: str, table: str) -> Adapter:
    """minimalkv SQLAlchemyStore over the same server (SQLAlchemy with psycopg)."""
    from minimalkv.db.sql import SQLAlchemyStore
    from sqlalchemy import MetaData, create_engine

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    metadata = MetaData()
    store = SQLAlchemyStore(engine, metadata, table)
    metadata.create_all(engine)

    def get_many(keys: list[str]) -> dict[str, bytes]:
        return {key: store.get(key) for key in keys}

    def put_many(items: list[Item]) -> None:
        for key, value in items:
            store.put(key, value)

    def close() -> None:
        metadata.drop_all(engine)
        engine.dispose()

    # minimalkv forbids "/" in keys.
    return Adapter(
        lambda key, value: store.put(key.replace("/", "."), value),
        lambda key: store.get(key.replace("/", ".")),
        lambda keys: get_many([key.replace("/", ".") for key in keys]),
        lambda items: put_many([(key.replace("/", "."), value) for key, value in items]),
        close,
    )


CONTENDERS: dict[str, Callable[[str, str], Adapter]] = {
    "mirrorkv": open_mirrorkv,
    "psycopg": open_psycopg,
    "minimalkv": open_minimalkv,
}


# -- the workload ----------------------------------------------------------------------


def make_items(count: int, start: int, seed: int) -> list[Item]:
    """``count`` keys like ``user42/item00001234`` with distinct 100-byte values."""
    rng = random.Random(seed)
    return [
        (f"user{index % 100}/item{index:08d}", rng.randbytes(100))
        for index in range(start, start + count)
    ]


SLICE = 100


def run_round(
    names: list[str],
    url: str,
    items: list[Item],
    batch: list[Item],
    budget: float,
    results: dict[str, Result],
) -> None:
    """The whole workload once for every contender, each in a fresh table.

    Single calls are interleaved: every contender makes the next slice of
    100 calls in turn (in an order that rotates every slice), so a burst of
    load on a shared machine hits them all alike. A phase stops after
    ``budget`` seconds of one contender's time (at least 1,000 calls); the
    rest of the keys is then loaded untimed.
    """
    adapters: dict[str, Adapter] = {}
    tag = f"{os.getpid()}_{time.monotonic_ns() % 10**9}"
    try:
        for name in names:
            adapters[name] = CONTENDERS[name](url, f"bench_{name}_{tag}")
        keys = [key for key, _ in items]
        shuffled = keys[:]
        random.Random(7).shuffle(shuffled)
        perf = time.perf_counter
        for phase, arguments in (("put", items), ("get", shuffled)):
            spent = dict.fromkeys(names, 0.0)
            done = 0
            gc.collect()
            while done < len(arguments):
                chunk = arguments[done : done + SLICE]
                shift = (done // SLICE) % len(names)  # who goes first changes every slice
                for name in names[shift:] + names[:shift]:
                    adapter = adapters[name]
                    started = perf()
                    if phase == "put":
                        put = adapter.put
                        for key, value in chunk:
                            put(key, value)
                    else:
                        get = adapter.get
                        for key in chunk:
                            get(key)
                    spent[name] += perf() - started
                done += len(chunk)
                if done >= 1000 and max(spent.values()) > budget:
                    break
            for name in names:
                results[name].rates[phase].append(done / spent[name])
                if phase == "put" and done < len(items):
                    adapters[name].put_many(items[done:])
        for phase in ("get_many", "put_many"):
            for name in names:
                adapter = adapters[name]
                gc.collect()
                started = perf()
                if phase == "get_many":
                    found = adapter.get_many(shuffled)
                    count = len(shuffled)
                else:
                    adapter.put_many(batch)
                    count = len(batch)
                results[name].rates[phase].append(count / (perf() - started))
                if phase == "get_many":
                    assert len(found) == count  # type: ignore[arg-type]
    finally:
        for adapter in adapters.values():
            adapter.close()


# -- the report --------------------------------------------------------------------------


def _rate(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:,.1f}k" if value >= 1000 else f"{value:,.0f}"


def _table(header: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.rjust(width) if i else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        for row in [header, *rows]
    )


def report(results: dict[str, Result], markdown: bool) -> bool:
    """Print the figures, the ratios and the targets; return whether every target passed."""
    rows = [
        [name] + [_rate(result.median(phase)) for phase in PHASES]
        for name, result in results.items()
    ]
    print(_table(["ops/s (keys/s)", *PHASES], rows, markdown))
    ours = results.get("mirrorkv")
    if ours is None:
        return True
    print()
    ratio_rows = []
    for name, result in results.items():
        if name == "mirrorkv":
            continue
        cells = []
        for phase in PHASES:
            a, b = ours.median(phase), result.median(phase)
            cells.append(f"{a / b:.2f}x" if a and b else "-")
        ratio_rows.append([f"mirrorkv / {name}", *cells])
    if ratio_rows:
        print(_table(["ratio", *PHASES], ratio_rows, markdown))
    print()
    checks: list[tuple[str, float | None, float]] = []
    get, put = ours.median("get"), ours.median("put")
    get_many, put_many = ours.median("get_many"), ours.median("put_many")
    checks.append(
        ("get_many >= 10x mirrorkv's get loop", get_many / get if get_many and get else None, 10.0)
    )
    checks.append(
        ("put_many >= 5x mirrorkv's put loop", put_many / put if put_many and put else None, 5.0)
    )
    raw = results.get("psycopg")
    if raw is not None:
        raw_get, raw_put = raw.median("get"), raw.median("put")
        checks.append(
            ("single get >= 0.90x raw psycopg", get / raw_get if get and raw_get else None, 0.90)
        )
        checks.append(
            ("single put >= 0.75x raw psycopg", put / raw_put if put and raw_put else None, 0.75)
        )
    passed = True
    target_rows = []
    for label, value, needed in checks:
        ok = value is not None and value >= needed
        passed = passed and ok
        target_rows.append(
            [label, "-" if value is None else f"{value:.2f}x", "PASS" if ok else "FAIL"]
        )
    print(_table(["target", "measured", ""], target_rows, markdown))
    return passed


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; the exit status is 0 where every target passed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("MIRRORKV_BENCH_POSTGRES_URL", DEFAULT_URL))
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--phase-seconds", type=float, default=3.0)
    parser.add_argument("--only", default=",".join(CONTENDERS))
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    names = [name for name in args.only.split(",") if name]
    unknown = set(names) - set(CONTENDERS)
    if unknown:
        parser.error(
            f"unknown contenders: {', '.join(sorted(unknown))}; known: {', '.join(CONTENDERS)}"
        )
    items = make_items(args.keys, 0, 1)
    batch = make_items(args.keys, args.keys, 2)
    results = {name: Result() for name in names}
    from mirrorkv.urls import parse_url

    shown = parse_url(args.url).redacted()
    print(
        f"PostgreSQL at {shown}; {args.keys} keys x 100 B; {args.repeat} rounds; "
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs"
    )
    # Warm up every contender (imports, prepared statements, the server's caches).
    run_round(names, args.url, items[:1000], batch[:1000], 0.2, {n: Result() for n in names})
    for round_index in range(args.repeat):
        shift = round_index % len(names)
        run_round(
            names[shift:] + names[:shift], args.url, items, batch, args.phase_seconds, results
        )
        print(f"round {round_index + 1}/{args.repeat} done", file=sys.stderr)
    print()
    return 0 if report(results, args.markdown) else 1


if __name__ == "__main__":
    sys.exit(main())
