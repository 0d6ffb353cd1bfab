"""Side-by-side benchmark of mirrorkv's RedisStore, minimalkv's RedisStore and raw redis-py.

Usage (from the repository root, with the ``redis`` and ``bench`` extras installed)::

    .venv/bin/python benchmarks/bench_redis.py                      # the local server, 5 rounds
    .venv/bin/python benchmarks/bench_redis.py --url redis://10.0.0.5:6379/2 --repeat 9
    .venv/bin/python benchmarks/bench_redis.py --own-server --markdown  # a private redis-server
    .venv/bin/python benchmarks/bench_redis.py --only mirrorkv,redis-py

The server is ``--url``, else ``$MIRRORKV_TEST_REDIS_URL``, else
``redis://127.0.0.1:6379/0``; ``--own-server`` starts a ``redis-server`` on
a free port (persistence off) for the run and stops it after. Every
contender talks to the same server from ONE process, over one connection at
a time, with 100-byte random values (seeded):

* ``put``: ``--keys`` single writes, one call (one round trip) each;
* ``get``: the same keys read back one call each, in a shuffled order;
* ``get_many``: ``--batch`` keys in one call;
* ``put_many``: ``--batch`` new keys in one call.

Contenders: ``mirrorkv`` (RedisStore: each put writes the value, its
metadata and the listing index in one Lua script; each get is one ``GET``;
batches are one ``MULTI``/``EXEC``), ``minimalkv`` (its ``RedisStore``: one
``SET``/``GET`` per key and no metadata or index; it has no batch calls, so
its batches are loops of single calls), ``redis-py`` (raw ``SET``/``GET``
through ``redis.Redis``; ``MGET`` for ``get_many`` and a non-transactional
pipeline of ``SET`` for ``put_many``), and ``redis-conn``: the same raw
commands packed, sent and read over ONE connection held for the whole run
(redis-py's ``Connection``), which skips the pool check-out and check-in
that every ``redis.Redis`` call makes: the floor a Python client on
redis-py's parser reaches, and what mirrorkv's store does too (one
connection kept per thread). Keys are prefixed per contender and removed
after each run.

Figures are operations per second (keys per second for the batches), the
median over ``--repeat`` rounds, after one untimed warm-up round. Within a
round the contenders take turns: single calls in blocks of 250, each
contender timing its block in a rotated order, and the batches call by
call, so that bursts of load from elsewhere on a shared machine hit every
contender alike. The script prints the table, mirrorkv's
ratios to each peer and to its own one-call-at-a-time loop, and the issue's
targets with PASS/FAIL: ``get_many`` >= 10x the single-get loop, ``put_many``
>= 5x the single-put loop, a single get within 10% of raw ``GET`` and a
single put within 25% of raw ``SET`` (in time per call). ``--markdown``
prints Markdown for the docs.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PHASES = ("put", "get", "get_many", "put_many")
Item = tuple[str, bytes]


@dataclass
class Adapter:
    """One contender's calls over one server; ``cleanup`` removes what it wrote."""

    put: Callable[[str, bytes], object]
    get: Callable[[str], object]
    get_many: Callable[[list[str]], object]
    put_many: Callable[[list[Item]], object]
    cleanup: Callable[[], None]
    close: Callable[[], None]


@dataclass
class Result:
    """Phase rates of one contender over all rounds."""

    rates: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in PHASES})

    def median(self, phase: str) -> float | None:
        """The median rate of ``phase`` in operations per second, or None if never measured."""
        values = self.rates[phase]
        return statistics.median(values) if values else None


# -- contenders -----------------------------------------------------------------


def _mirrorkv(url: str, tag: str) -> Adapter:
    import mirrorkv
    from mirrorkv.stores.redis import RedisStore

    separator = "&" if "?" in url else "?"
    store = mirrorkv.open(f"{url}{separator}namespace=bench-mkv-{tag}")
    assert isinstance(store, RedisStore)
    return Adapter(
        put=store.put,
        get=store.get,
        get_many=store.get_many,
        put_many=store.put_many,
        cleanup=store.clear,
        close=store.close,
    )


def _raw_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)


def _delete_prefix(client: Any, prefix: str) -> None:
    names = list(client.scan_iter(match=f"{prefix}*", count=5000))
    for start in range(0, len(names), 5000):
        client.delete(*names[start : start + 5000])


def _minimalkv(url: str, tag: str) -> Adapter:
    from minimalkv.memory.redisstore import RedisStore

    client = _raw_client(url)
    store = RedisStore(client)
    prefix = f"bench-minimalkv-{tag}."

    def put_many(items: list[Item]) -> None:
        for key, value in items:
            store.put(prefix + key, value)

    def get_many(keys: list[str]) -> dict[str, bytes]:
        return {key: store.get(prefix + key) for key in keys}

    return Adapter(
        put=lambda key, value: store.put(prefix + key, value),
        get=lambda key: store.get(prefix + key),
        get_many=get_many,
        put_many=put_many,
        cleanup=lambda: _delete_prefix(client, prefix),
        close=client.close,
    )


def _redis_py(url: str, tag: str) -> Adapter:
    client = _raw_client(url)
    prefix = f"bench-raw-{tag}:"

    def put_many(items: list[Item]) -> None:
        pipe = client.pipeline(transaction=False)
        for key, value in items:
            pipe.set(prefix + key, value)
        pipe.execute()

    def get_many(keys: list[str]) -> list[bytes | None]:
        values: list[bytes | None] = client.mget([prefix + key for key in keys])
        return values

    return Adapter(
        put=lambda key, value: client.set(prefix + key, value),
        get=lambda key: client.get(prefix + key),
        get_many=get_many,
        put_many=put_many,
        cleanup=lambda: _delete_prefix(client, prefix),
        close=client.close,
    )


def _redis_conn(url: str, tag: str) -> Adapter:
    client = _raw_client(url)
    conn = client.connection_pool.get_connection()
    prefix = f"bench-conn-{tag}:"

    def call(*args: Any) -> Any:
        conn.send_packed_command(conn.pack_command(*args), check_health=False)
        return conn.read_response()

    def put_many(items: list[Item]) -> None:
        commands = [("SET", prefix + key, value) for key, value in items]
        conn.send_packed_command(conn.pack_commands(commands), check_health=False)
        for _ in commands:
            conn.read_response()

    def close() -> None:
        client.connection_pool.release(conn)
        client.close()

    return Adapter(
        put=lambda key, value: call("SET", prefix + key, value),
        get=lambda key: call("GET", prefix + key),
        get_many=lambda keys: call("MGET", *[prefix + key for key in keys]),
        put_many=put_many,
        cleanup=lambda: _delete_prefix(client, prefix),
        close=close,
    )


CONTENDERS: dict[str, Callable[[str, str], Adapter]] = {
    "mirrorkv": _mirrorkv,
    "minimalkv": _minimalkv,
    "redis-py": _redis_py,
    "redis-conn": _redis_conn,
}


# -- the workload -------------------------------------------------------------------


def make_items(count: int, start: int, seed: int) -> list[Item]:
    """``count`` keys like ``user42.item00001234`` (no ``/``: minimalkv forbids it)."""
    rng = random.Random(seed)
    return [(f"user{i % 100}.item{i:08d}", rng.randbytes(100)) for i in range(start, start + count)]


#: Single calls are timed in blocks of this many, the contenders taking turns block by block.
BLOCK = 250


def run_round(
    adapters: dict[str, Adapter],
    items: list[Item],
    batch: list[Item],
    order: list[int],
    results: dict[str, Result],
    shift: int,
) -> None:
    """Run every phase once for every contender, interleaved, then remove what was written.

    The contenders take turns block by block within a phase (and call by
    call for the batches), in an order rotated by ``shift``, so that a burst
    of load from elsewhere on the machine hits all of them alike.
    """
    names = list(adapters)
    names = names[shift % len(names) :] + names[: shift % len(names)]
    perf = time.perf_counter
    keys = [items[i][0] for i in order]
    batch_keys = [key for key, _ in batch]
    spent = {name: dict.fromkeys(PHASES, 0.0) for name in names}
    try:
        gc.collect()
        for start in range(0, len(items), BLOCK):
            block = items[start : start + BLOCK]
            for name in names:
                put = adapters[name].put
                started = perf()
                for key, value in block:
                    put(key, value)
                spent[name]["put"] += perf() - started
        gc.collect()
        for start in range(0, len(keys), BLOCK):
            block_keys = keys[start : start + BLOCK]
            for name in names:
                get = adapters[name].get
                started = perf()
                for key in block_keys:
                    get(key)
                spent[name]["get"] += perf() - started
        for name in names:
            gc.collect()
            started = perf()
            adapters[name].put_many(batch)
            spent[name]["put_many"] = perf() - started
        for name in names:
            gc.collect()
            started = perf()
            adapters[name].get_many(batch_keys)
            spent[name]["get_many"] = perf() - started
    finally:
        for name in names:
            adapters[name].cleanup()
    for name in names:
        for phase, count in (("put", len(items)), ("get", len(keys))):
            results[name].rates[phase].append(count / spent[name][phase])
        for phase in ("put_many", "get_many"):
            results[name].rates[phase].append(len(batch) / spent[name][phase])


# -- the report -------------------------------------------------------------------


def _rate(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:,.1f}k" if value >= 1000 else f"{value:,.0f}"


def _ratio(ours: float | None, peer: float | None) -> str:
    return "-" if not ours or not peer else f"{ours / peer:.2f}x"


def _table(header: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.rjust(width) for cell, width in zip(cells, widths, strict=True))

    return "\n".join([line(header), *(line(row) for row in rows)])


def report(results: dict[str, Result], args: argparse.Namespace, server: str) -> bool:
    """Print the figures, the ratios and the targets; True where every target passes."""
    md = args.markdown
    print(f"{'## ' if md else ''}RedisStore benchmark")
    print()
    print(
        f"Server {server}; Python {platform.python_version()}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs; {args.keys:,} single calls, batches of {args.batch:,}; "
        f"median of {args.repeat} rounds (ops/s; keys/s for batches)."
    )
    print()
    rows = [[name] + [_rate(r.median(p)) for p in PHASES] for name, r in results.items()]
    print(_table(["contender", *PHASES], rows, md))
    print()
    ours = results.get("mirrorkv")
    if ours is None:
        return True
    ratio_rows = [
        [f"mirrorkv / {name}"] + [_ratio(ours.median(p), r.median(p)) for p in PHASES]
        for name, r in results.items()
        if name != "mirrorkv"
    ]
    if ratio_rows:
        print(_table(["ratio", *PHASES], ratio_rows, md))
        print()
    raw = results.get("redis-py")
    checks: list[tuple[str, float | None, float]] = [
        ("get_many vs its single-get loop", _div(ours.median("get_many"), ours.median("get")), 10),
        ("put_many vs its single-put loop", _div(ours.median("put_many"), ours.median("put")), 5),
    ]
    if raw is not None:
        # "within 10%" of the raw client's time per call: ours / raw rate >= 1 / 1.10.
        checks.append(
            ("single get vs raw GET", _div(ours.median("get"), raw.median("get")), 1 / 1.1)
        )
        checks.append(
            ("single put vs raw SET", _div(ours.median("put"), raw.median("put")), 1 / 1.25)
        )
    passed = True
    target_rows = []
    for name, value, floor in checks:
        ok = value is not None and value >= floor
        passed &= ok
        shown = "-" if value is None else f"{value:.2f}x"
        target_rows.append([name, shown, f">= {floor:.2f}x", "PASS" if ok else "FAIL"])
    print(_table(["target", "measured", "needed", "result"], target_rows, md))
    return passed


def _div(a: float | None, b: float | None) -> float | None:
    return None if not a or not b else a / b


# -- the server -----------------------------------------------------------------------


def _own_server() -> tuple[subprocess.Popen[bytes], str, str]:
    binary = shutil.which("redis-server") or shutil.which("valkey-server")
    if binary is None:
        sys.exit("--own-server: no redis-server or valkey-server on PATH")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    folder = tempfile.mkdtemp(prefix="mirrorkv-bench-redis-")
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--daemonize", "no"]
    argv += ["--save", "", "--appendonly", "no", "--dir", folder]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return process, f"redis://127.0.0.1:{port}/0", folder


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; the exit status is 1 where a target fails."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="the Redis server (default: the local one)")
    parser.add_argument("--own-server", action="store_true", help="start a private redis-server")
    parser.add_argument("--keys", type=int, default=5000, help="single calls per phase")
    parser.add_argument("--batch", type=int, default=10_000, help="keys per batch call")
    parser.add_argument("--repeat", type=int, default=5, help="rounds (median reported)")
    parser.add_argument("--only", help="comma-separated contenders: " + ",".join(CONTENDERS))
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(CONTENDERS)
    unknown = set(names) - set(CONTENDERS)
    if unknown:
        parser.error(f"unknown contenders: {', '.join(sorted(unknown))}")

    process = folder = None
    if args.own_server:
        process, url, folder = _own_server()
    else:
        url = args.url or os.environ.get("MIRRORKV_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"
    try:
        tag = f"{os.getpid():x}"
        adapters = {name: CONTENDERS[name](url, tag) for name in names}
        items = make_items(args.keys, 0, seed=1)
        batch = make_items(args.batch, args.keys, seed=2)
        order = list(range(len(items)))
        random.Random(3).shuffle(order)
        warm = {name: Result() for name in names}  # untimed: connections, scripts, caches
        run_round(adapters, items[:500], batch[:500], list(range(500)), warm, 0)
        results = {name: Result() for name in names}
        for round_number in range(args.repeat):
            run_round(adapters, items, batch, order, results, round_number)
        for adapter in adapters.values():
            adapter.close()
        shown = url.split("@")[-1] if "@" in url else url
        return 0 if report(results, args, shown) else 1
    finally:
        if process is not None:
            process.terminate()
            process.wait(10)
            shutil.rmtree(folder or "", ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
