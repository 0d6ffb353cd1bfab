"""Side-by-side benchmark of mirrorkv's core stores and the peers a user would pick instead.

Usage (from the repository root, with the ``bench`` extra installed)::

    .venv/bin/python benchmarks/bench_core.py                  # everything importable, 3 rounds
    .venv/bin/python benchmarks/bench_core.py --only memory,minimalkv-dict --repeat 7
    .venv/bin/python benchmarks/bench_core.py --keys 20000 --batch 100000 --markdown
    .venv/bin/python benchmarks/bench_core.py --list            # the contender names

The workload, run by every contender in ONE process: ``--keys`` keys shaped
like ``user42/item00001234`` with 100-byte values (distinct, random, seeded);
``put`` each key one call at a time into an empty store, ``get`` each (in a
shuffled order), ``keys`` (one full iteration in ascending key order),
``list`` (one full ordered iteration of per-key metadata), ``delete`` each
key one call at a time, then ``put_many`` of ``--batch`` new keys in one
call. Figures are operations per second (for ``keys``/``list``: keys yielded
per second), the median of all runs over ``--repeat`` rounds. Rounds
interleave the contenders (each round runs every contender in a rotated
order) so that noise from a shared machine spreads over all of them; a
contender whose whole workload takes less than ``--min-round-seconds`` runs
it again within the round (up to 10 times), so that a fast phase of a few
milliseconds is sampled many times. Every run gets a fresh store in a fresh
temporary directory and is timed with ``time.perf_counter``; an untimed
small run warms every contender up first. The garbage collector stays on
(it is part of the real cost) but runs a full collection before each phase.

Slow contenders are not run to the end of a phase that would take minutes:
a ``put``, ``get`` or ``delete`` phase (and a ``put_many`` that is only a loop
of puts) stops after ``--phase-seconds``; a capped ``put`` loads the rest of
the keys untimed through a bulk call, so later phases still see them all,
and keys a capped ``delete`` left stay in the store. The figure is then the
rate over the calls timed (at least 1,000); the report marks it with ``~``.
A batch that is one transaction is always timed whole; one that is not
(FileStore, minimalkv) is timed as calls of 1,000 items, capped likewise.

Durability, compared like with like (printed with the results too):

* In-memory: ``memory`` (mirrorkv MemoryStore), ``dict``, ``minimalkv-dict``.
  Nothing is durable.
* SQLite, surviving a crash of the process but not of the machine (WAL
  with ``synchronous=NORMAL``, no fsync per commit): ``sqlite`` (mirrorkv
  SQLiteStore with its default ``fsync=False``), ``sqlite3`` (raw: WAL,
  NORMAL, autocommit, one ``INSERT OR REPLACE`` per put, one ``SELECT`` per
  get, ``SELECT key ... ORDER BY key`` for keys, ``executemany`` in one
  transaction for the batch, on a ``(key TEXT PRIMARY KEY, value BLOB)
  WITHOUT ROWID`` table: one b-tree, the fastest layout, so a true limit),
  ``diskcache`` (its defaults are WAL and NORMAL), ``sqlitedict``
  (``autocommit=True``; journal mode switched to WAL and synchronous to
  NORMAL, from its defaults DELETE and FULL),
  ``minimalkv-sql`` (SQLAlchemyStore on a SQLite file, switched to WAL and
  NORMAL; needs ``pip install sqlalchemy``).
* ``lmdb`` with ``sync=False``: a commit survives a crash of the process
  (the pages are written, not fsynced), like the SQLite contenders; after a
  power loss LMDB may lose recent commits *or* be corrupt, which SQLite in
  WAL/NORMAL never is.
* Files, no fsync on either side: ``file`` (mirrorkv FileStore, default
  ``fsync=False``: temporary file then rename, plus its metadata) and
  ``minimalkv-fs`` (FilesystemStore, which writes the target file in place:
  a crash mid-write leaves a torn value, which ours never does).

minimalkv forbids ``/`` in keys (and needs no hierarchy), so its keys map
``/`` to ``.`` (``user42.item00001234``); the mapping happens before timing.
minimalkv and sqlitedict have no ordered key iteration, so their ``keys``
figure includes a ``sorted()``; stores without per-key metadata report no
``list`` figure, except ``dict``, ``sqlite3`` and ``lmdb``, which yield
(key, size) pairs in order as the cheapest stand-in. Stores without a batch
write loop over single puts for ``put_many`` (minimalkv), or use their own
batch idiom: ``dict.update``, one ``executemany`` transaction (raw
sqlite3), ``sqlitedict.update`` (one executemany), ``diskcache.transact``,
one LMDB write transaction with ``putmulti``.

The script writes nothing into the repository; it prints the table, the
ratios of each mirrorkv store to each peer, and the issue's targets with
PASS/FAIL. ``--markdown`` prints the same as Markdown for the README.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from contenders import CONTENDERS, Contender, Item

PHASES = ("put", "get", "keys", "list", "delete", "put_many")

#: Items per put_many call for stores whose put_many is not one transaction.
BATCH_CHUNK = 1000

#: The most runs of the workload one contender makes in one round.
MAX_RUNS_PER_ROUND = 10


@dataclass
class Result:
    """Phase timings of one contender over all rounds."""

    rates: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in PHASES})
    partial: set[str] = field(default_factory=set)

    def median(self, phase: str) -> float | None:
        """The median rate of ``phase`` in operations per second, or None if never measured."""
        values = self.rates[phase]
        return statistics.median(values) if values else None


# -- the workload -------------------------------------------------------------


def make_items(count: int, start: int, seed: int) -> list[Item]:
    """``count`` keys like ``user42/item00001234`` with distinct 100-byte values."""
    rng = random.Random(seed)
    return [
        (f"user{index % 100}/item{index:08d}", rng.randbytes(100))
        for index in range(start, start + count)
    ]


def _consume(iterable: Iterable[object]) -> int:
    count = 0
    for _ in iterable:
        count += 1
    return count


def _timed_calls(
    call: Callable[..., object],
    arguments: list[Any],
    budget: float,
    minimum: int = 1000,
    pairs: bool = False,
) -> tuple[float, int]:
    """Call ``call(argument)`` (``call(*pair)`` with ``pairs``) until done or ``budget`` s pass.

    Returns the elapsed time and how many calls were made; the clock is read
    once every 256 calls (at least ``minimum`` calls are always made). The
    inner loops are as bare as Python allows, so that the harness adds the
    same few nanoseconds to every contender.
    """
    done = 0
    total = len(arguments)
    step = 256 if minimum >= 256 else 1
    started = time.perf_counter()
    while done < total:
        chunk = arguments[done : done + step]
        if pairs:
            for first, second in chunk:
                call(first, second)
        else:
            for first in chunk:
                call(first)
        done += len(chunk)
        if done >= minimum and time.perf_counter() - started > budget:
            break
    return time.perf_counter() - started, done


def run_once(
    contender: Contender,
    items: list[Item],
    batch: list[Item],
    order: list[int],
    budget: float,
    result: Result,
) -> None:
    """Run the whole workload once on a fresh store in a fresh temporary directory."""
    directory = tempfile.mkdtemp(prefix=f"mirrorkv-bench-{contender.name}-")
    try:
        adapter = contender.open(directory)
        if adapter.map_key is not None:
            mapped = adapter.map_key
            items = [(mapped(key), value) for key, value in items]
            batch = [(mapped(key), value) for key, value in batch]
        keys = [key for key, _ in items]
        shuffled = [keys[index] for index in order]
        count = len(items)
        perf = time.perf_counter

        gc.collect()
        elapsed, done = _timed_calls(adapter.put, items, budget, pairs=True)
        result.rates["put"].append(done / elapsed)
        if done < count:
            result.partial.add("put")
            (adapter.fill or adapter.put_many)(items[done:])

        gc.collect()
        elapsed, done = _timed_calls(adapter.get, shuffled, budget)
        result.rates["get"].append(done / elapsed)
        if done < count:
            result.partial.add("get")

        gc.collect()
        started = perf()
        seen = _consume(adapter.keys())
        result.rates["keys"].append(seen / (perf() - started))
        if seen != count:
            raise AssertionError(f"{contender.name}: keys() yielded {seen} of {count}")

        if adapter.list is not None:
            gc.collect()
            started = perf()
            seen = _consume(adapter.list())
            result.rates["list"].append(seen / (perf() - started))
            if seen != count:
                raise AssertionError(f"{contender.name}: list() yielded {seen} of {count}")

        gc.collect()
        elapsed, done = _timed_calls(adapter.delete, shuffled, budget)
        result.rates["delete"].append(done / elapsed)
        if done < count:
            result.partial.add("delete")  # the keys left stay in the store

        gc.collect()
        if adapter.transactional:
            started = perf()
            adapter.put_many(batch)
            result.rates["put_many"].append(len(batch) / (perf() - started))
        else:
            chunks = [batch[i : i + BATCH_CHUNK] for i in range(0, len(batch), BATCH_CHUNK)]
            elapsed, done = _timed_calls(adapter.put_many, chunks, budget, minimum=2)
            result.rates["put_many"].append(min(done * BATCH_CHUNK, len(batch)) / elapsed)
            if done < len(chunks):
                result.partial.add("put_many")
        adapter.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# -- reporting ----------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One of the issue's speed targets: ours / peer >= minimum on one phase."""

    ours: str
    peer: str
    phase: str
    minimum: float


TARGETS = [
    Target("memory", "minimalkv-dict", "get", 4.0),
    Target("memory", "minimalkv-dict", "put", 1.5),
    Target("sqlite", "diskcache", "put", 2.0),
    Target("sqlite", "sqlitedict", "put", 5.0),
    Target("sqlite", "diskcache", "get", 1.25),
    Target("sqlite", "sqlite3", "put", 0.6),
    Target("sqlite", "sqlite3", "get", 0.6),
    Target("sqlite", "sqlite3", "put_many", 0.6),
    Target("sqlite", "sqlite3", "keys", 0.5),
    Target("file", "minimalkv-fs", "put", 1.0),
    Target("file", "minimalkv-fs", "get", 1.0),
]

# Which peers each of our stores is compared with in the ratio table.
PEERS_OF = {
    "memory": ["dict", "minimalkv-dict"],
    "sqlite": ["sqlite3", "diskcache", "sqlitedict", "minimalkv-sql", "lmdb"],
    "file": ["minimalkv-fs"],
}


def _rate(value: float | None, partial: bool = False) -> str:
    if value is None:
        return "—"
    mark = "~" if partial else ""
    if value >= 1e6:
        return f"{mark}{value / 1e6:.2f}M"
    if value >= 1e3:
        return f"{mark}{value / 1e3:.1f}k"
    return f"{mark}{value:.0f}"


def _ratio(ours: float | None, peer: float | None) -> str:
    if ours is None or peer is None:
        return "—"
    return f"{ours / peer:.2f}x"


def _table(header: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def report(
    results: dict[str, Result],
    chosen: list[Contender],
    skipped: dict[str, str],
    args: argparse.Namespace,
    elapsed: float,
) -> str:
    """The whole report as text (or Markdown)."""
    md = args.markdown
    out: list[str] = []

    def heading(text: str) -> None:
        out.append(f"\n### {text}\n" if md else f"\n{text}\n{'=' * len(text)}")

    command = " ".join(["python", "benchmarks/bench_core.py", *sys.argv[1:]])
    heading("Operations per second (median of rounds)")
    out.append(
        f"{args.keys:,} keys of 100 bytes, put_many of {args.batch:,}; "
        f"{args.repeat} interleaved round(s), fast contenders rerun to "
        f"{args.min_round_seconds:g} s a round; Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, {platform.machine()}, {os.cpu_count()} CPUs; "
        f"temp dir {tempfile.gettempdir()}; {elapsed:.0f} s in all.\n"
        f"Command: `{command}`\n"
    )
    header = ["store", *PHASES]
    rows = []
    for contender in chosen:
        result = results[contender.name]
        label = f"{contender.name} (mirrorkv)" if contender.ours else contender.name
        rows.append([label] + [_rate(result.median(p), p in result.partial) for p in PHASES])
    out.append(_table(header, rows, md))
    if any(result.partial for result in results.values()):
        out.append(
            f"\n~ : timed over the first calls only (phase capped at {args.phase_seconds:g} s)."
        )

    heading("Ratio of each mirrorkv store to each peer (higher is better for mirrorkv)")
    rows = []
    for ours, peers in PEERS_OF.items():
        if ours not in results:
            continue
        for peer in peers:
            if peer not in results:
                continue
            rows.append(
                [f"{ours} / {peer}"]
                + [_ratio(results[ours].median(p), results[peer].median(p)) for p in PHASES]
            )
    out.append(_table(header, rows, md) if rows else "(no pair of mirrorkv store and peer ran)")

    heading("The issue's targets")
    rows = []
    for target in TARGETS:
        name = f"{target.ours} {target.phase} >= {target.minimum:g}x {target.peer}"
        if target.ours not in results or target.peer not in results:
            missing = target.ours if target.ours not in results else target.peer
            rows.append([name, "—", "n/a", skipped.get(missing, "not selected")])
            continue
        ours = results[target.ours].median(target.phase)
        peer = results[target.peer].median(target.phase)
        assert ours is not None and peer is not None
        ratio = ours / peer
        verdict = "PASS" if ratio >= target.minimum else "FAIL"
        rows.append([name, f"{ratio:.2f}x", verdict, f"{_rate(ours)} vs {_rate(peer)}"])
    out.append(_table(["target", "measured", "verdict", "ops/s"], rows, md))

    heading("Durability of each contender")
    rows = [[c.name, c.durability + (f"; {c.note}" if c.note else "")] for c in chosen]
    out.append(_table(["store", "durability"], rows, md))
    if skipped:
        heading("Not run")
        out.extend(f"- {name}: {why}" for name, why in skipped.items())
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run the rounds, print the report."""
    parser = argparse.ArgumentParser(
        description="Benchmark mirrorkv's core stores against their peers, side by side.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--keys", type=int, default=20_000, help="keys put one at a time")
    parser.add_argument("--batch", type=int, default=100_000, help="items in the put_many")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument(
        "--only", default="", help="comma-separated contender names (default: all importable)"
    )
    parser.add_argument(
        "--phase-seconds",
        type=float,
        default=1.0,
        help="stop timing a put or delete phase after this long (the rest is done untimed)",
    )
    parser.add_argument(
        "--min-round-seconds",
        type=float,
        default=1.0,
        help="a contender faster than this reruns the workload within a round (up to 10 runs)",
    )
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    parser.add_argument("--list", action="store_true", help="list the contenders and exit")
    parser.add_argument("--seed", type=int, default=42, help="seed of values and read order")
    args = parser.parse_args(argv)

    if args.list:
        for contender in CONTENDERS:
            print(
                f"{contender.name:15} {'mirrorkv' if contender.ours else 'peer':8} "
                f"{contender.durability}"
            )
        return 0
    names = [name.strip() for name in args.only.split(",") if name.strip()]
    known = {c.name for c in CONTENDERS}
    unknown = [name for name in names if name not in known]
    if unknown:
        parser.error(f"unknown contender(s) {unknown}; known: {sorted(known)}")

    chosen: list[Contender] = []
    skipped: dict[str, str] = {}
    for contender in CONTENDERS:
        if names and contender.name not in names:
            continue
        probe = tempfile.mkdtemp(prefix="mirrorkv-bench-probe-")
        try:
            contender.open(probe).close()
        except ImportError as error:
            skipped[contender.name] = f"not importable ({error})"
            continue
        except Exception as error:  # a broken contender is reported, not fatal
            skipped[contender.name] = f"failed to open: {type(error).__name__}: {error}"
            continue
        finally:
            shutil.rmtree(probe, ignore_errors=True)
        chosen.append(contender)

    items = make_items(args.keys, 0, args.seed)
    batch = make_items(args.batch, args.keys, args.seed + 1)
    order = list(range(args.keys))
    random.Random(args.seed).shuffle(order)
    results = {contender.name: Result() for contender in chosen}

    # An untimed warm-up on a small workload (imports, page faults, caches).
    warm_items, warm_batch = items[:1000], batch[:1000]
    warm_order = [index for index in order if index < 1000]
    for contender in list(chosen):
        try:
            run_once(contender, warm_items, warm_batch, warm_order, args.phase_seconds, Result())
        except Exception as error:  # a broken contender is reported, not fatal
            skipped[contender.name] = f"failed: {type(error).__name__}: {error}"
            chosen.remove(contender)
            del results[contender.name]

    started = time.perf_counter()
    for round_number in range(args.repeat):
        shift = round_number % max(len(chosen), 1)
        for contender in chosen[shift:] + chosen[:shift]:
            if contender.name in skipped:
                continue
            print(f"round {round_number + 1}/{args.repeat}: {contender.name}", file=sys.stderr)
            try:
                # A fast contender runs the workload again (fresh store) until the
                # round has lasted --min-round-seconds: its phases last milliseconds,
                # which one burst of a neighbour's load could otherwise decide.
                round_started = time.perf_counter()
                for _ in range(MAX_RUNS_PER_ROUND):
                    run_once(
                        contender, items, batch, order, args.phase_seconds, results[contender.name]
                    )
                    if time.perf_counter() - round_started >= args.min_round_seconds:
                        break
            except Exception as error:  # a broken contender is reported, not fatal
                skipped[contender.name] = f"failed: {type(error).__name__}: {error}"
    for name in skipped:
        results.pop(name, None)
    chosen = [contender for contender in chosen if contender.name in results]
    print(report(results, chosen, skipped, args, time.perf_counter() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
