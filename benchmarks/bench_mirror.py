"""The mirror's metadata questions against plain boto3 and MimicDB, on one moto bucket.

Usage (from the repository root, with the ``s3``, ``test`` and ``bench`` extras)::

    .venv/bin/python benchmarks/bench_mirror.py                     # 20,000 objects, 1M-key index
    .venv/bin/python benchmarks/bench_mirror.py --objects 2000 --index-keys 100000
    .venv/bin/python benchmarks/bench_mirror.py --index-keys 0 --markdown --profile

One process, one run. The script starts moto's S3 server as a separate
process on a free port, fills one bucket with ``--objects`` objects over
``--prefixes`` prefixes (``p037/obj004242.csv``: 8 upload threads, sizes
100 to 3,999 bytes) and asks the same questions of:

* plain boto3: paginated ``list_objects_v2`` (what a boto3 user writes:
  the glob's literal prefix is passed as ``Prefix``, sizes are summed over
  the listing, a glob is ``fnmatch`` over it) and ``head_object``;
* the mirror (``Mirror(S3Store, SQLiteIndex)``) after its initial ``sync``:
  ``list``, ``ls``, ``du``, ``find``, ``head``;
* MimicDB 1.0.5 (boto 2, its SQLite backend, in memory unless
  ``--mimicdb-db`` names a file) after its own ``sync``, the same questions
  from its index: ``bucket.list()``, ``bucket.list(prefix=)``, sums and
  ``fnmatch`` over them, ``bucket.get_key``. Its questions write to its
  database (each listed key is added to its key set again, see the report),
  so its database is put back as the sync left it before each timed call.

Requests are counted on the wire by each client's own hooks (botocore's
``before-send``/``after-call``; boto 2's ``make_request``), with the bytes of
the responses; the mirror's ``stats()`` must agree that it sent none. Every
answer is checked against the truth (what was uploaded). Times are medians
of per-call times; boto3's calls at least ``--repeat`` times and for at least
2 s, local ones for at least 1 s, each local answer once moto's server has
gone idle after the boto3 calls before it. What the same requests would
cost at real S3 uses the prices of :class:`mirrorkv.mirror.RequestPrices`
and the latencies in
:data:`S3_LATENCY` (one request after another, as a paginated listing goes).

For the listings, globs and head, the same rows are also read from the
index file by one plain SQL statement (a glob's and a head's by key, as if
the matching keys were known), then made into records with one
``tuple.__new__(Meta, row)`` each: the least any index that reads SQLite on
each call and answers with records spends, so the report can say which
targets such an index can reach at all on this machine and this moto.

Then the initial ``sync`` against the bare paginated listing it needs
(interleaved, ``--sync-repeat`` times, each sync into a new index), the cost
of recording one write, and the index alone filled to ``--index-keys`` keys
(``bench_index.py``'s keys and timer): ``du`` of every shape of prefix and
``record``. ``--profile`` runs cProfile on the mirror's answers that miss a
target (the four furthest short, and the slowest ``du`` at scale if it
takes 1 ms or more) and prints where their time goes.

At 20,000 objects the whole run takes 10 to 15 minutes on two cores, most
of it moto (about 0.4 s a 1,000-key page, two minutes to upload) and
MimicDB, whose SQLite backend makes one table per key: its sync and each of
its listings slow down as the tables add up.
"""

from __future__ import annotations

import argparse
import cProfile
import fnmatch
import functools
import gc
import io
import os
import pstats
import shlex
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _mirror_peers import Meter, MimicPeer, meter_boto3, open_mimicdb
from bench_index import BUCKET as INDEX_BUCKET
from bench_index import key_of, per_call
from bench_s3 import REGION, start_moto
from mirrorkv.meta import Meta
from mirrorkv.mirror import Mirror, RequestPrices, SQLiteIndex
from mirrorkv.mirror.index import literal_prefix
from mirrorkv.stores.memory import MemoryStore
from mirrorkv.stores.s3 import S3Store

#: Assumed latency of one request to real S3 from the same region, by kind:
#: a LIST page of 1,000 keys, a HEAD or a GET of a small object, a PUT of a small one.
S3_LATENCY = {"LIST": 0.030, "HEAD": 0.015, "GET": 0.015, "PUT": 0.030}
PRICES = RequestPrices()  # LIST/PUT $0.005 per 1,000, GET/HEAD $0.0004 per 1,000
EXTENSIONS = ("json", "csv", "log")
GLOB_ALL = "*/obj*7.csv"
GLOB_NARROW = "p01*/obj*7.csv"

Answer = Any
_new_meta = tuple.__new__
#: Seconds a local answer is timed for, at least (the median of its calls is reported).
LOCAL_BUDGET = 1.0
#: Seconds a boto3 answer is timed for, at least (one of 100 ms gets 20 calls, not 3).
REMOTE_BUDGET = 2.0


def wait_until_idle(pid: int, most: float = 15.0) -> None:
    """Wait until process ``pid`` (moto's server) has used no CPU for 0.2 s, at most ``most`` s.

    After serving a listing, moto's process goes on working (freeing what it
    built) for a while; timing local answers meanwhile measures two processes
    on two cores. Without ``/proc`` it waits one second.
    """
    stat = Path(f"/proc/{pid}/stat")

    def cpu() -> int:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks

    if not stat.exists():
        time.sleep(1.0)
        return
    deadline = time.monotonic() + most
    before = cpu()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = cpu()
        if now == before:
            return
        before = now


def key_name(i: int, prefixes: int) -> str:
    """The i-th object's key: ``p037/obj004242.csv``."""
    return f"p{i % prefixes:03d}/obj{i:06d}.{EXTENSIONS[i % 3]}"


def size_of(i: int) -> int:
    """The i-th object's size: 100 to 3,999 bytes."""
    return 100 + (i * 7919) % 3900


# -- what requests cost -----------------------------------------------------------


def price_class(operation: str) -> str:
    """An operation's kind as S3 bills it: LIST, PUT (also COPY, POST), HEAD or GET."""
    if operation.startswith("List") or operation == "GET bucket":
        return "LIST"
    if operation.startswith(("Put", "Copy", "PUT", "POST")):
        return "PUT"
    if operation.startswith(("Head", "HEAD")):
        return "HEAD"
    return "GET"


def at_s3(requests: Counter[str]) -> tuple[float, float]:
    """``(seconds, dollars)`` the requests would take at real S3, one after another."""
    by_class: Counter[str] = Counter()
    for operation, count in requests.items():
        by_class[price_class(operation)] += count
    seconds = sum(S3_LATENCY[kind] * count for kind, count in by_class.items())
    return seconds, PRICES.cost(by_class)


# -- timing -----------------------------------------------------------------------


@dataclass
class Figure:
    """One contender's answer to one question: time per call, requests and bytes per call."""

    seconds: float
    requests: Counter[str]
    bytes: int
    answer: Answer
    exact: bool
    note: str = ""

    @property
    def request_count(self) -> int:
        """All requests of one call."""
        return sum(self.requests.values())


def timed_calls(
    meter: Meter | None,
    call: Callable[[], Answer],
    *,
    calls: int,
    budget: float = 0.0,
    before: Callable[[], None] | None = None,
) -> tuple[float, Counter[str], int, Answer]:
    """Median seconds, requests and bytes of one call, and the first call's answer.

    At least ``calls`` calls, more while their total is under ``budget``
    seconds (at most 5,000). ``before`` runs untimed before each call.
    """
    gc.collect()
    times: list[float] = []
    first: Answer = None
    requests: Counter[str] = Counter()
    received = 0
    while len(times) < calls or (sum(times) < budget and len(times) < 5000):
        if before is not None:
            before()
        mark = meter.snapshot() if meter is not None else None
        start = time.perf_counter()
        answer = call()
        times.append(time.perf_counter() - start)
        if len(times) == 1:
            first = answer
            if meter is not None and mark is not None:
                requests, received = meter.since(mark)
    return statistics.median(times), requests, received, first


# -- the questions ------------------------------------------------------------------


@dataclass
class Question:
    """One question, how each contender asks it, the truth, and the targets."""

    name: str
    truth: Answer
    boto3: Callable[[], Answer]
    mirror: Callable[[], Answer]
    mimic: Callable[[Any], Answer] | None = None
    vs_boto3: float | None = None
    vs_mimic: float | None = None
    figures: dict[str, Figure] = field(default_factory=dict)
    #: The answer's rows read from the index file by one plain SQL statement, and its time.
    rows: Callable[[], Answer] | None = None
    rows_seconds: float | None = None
    #: The same rows made into records (one ``tuple.__new__(Meta, row)`` each, its key
    #: taken, as the questions take theirs), and its time.
    records_seconds: float | None = None


def paginate(client: Any, bucket: str, **args: Any) -> Iterator[dict[str, Any]]:
    """boto3's paginated ``list_objects_v2`` pages."""
    yield from client.get_paginator("list_objects_v2").paginate(Bucket=bucket, **args)


def boto3_keys(client: Any, bucket: str, prefix: str = "") -> list[str]:
    """Every key under ``prefix``, listed by boto3."""
    return [
        item["Key"]
        for page in paginate(client, bucket, Prefix=prefix)
        for item in page.get("Contents", ())
    ]


def boto3_usage(client: Any, bucket: str, prefix: str = "") -> tuple[int, int]:
    """``(objects, bytes)`` under ``prefix``, summed over boto3's listing."""
    objects = total = 0
    for page in paginate(client, bucket, Prefix=prefix):
        for item in page.get("Contents", ()):
            objects += 1
            total += item["Size"]
    return objects, total


def boto3_children(client: Any, bucket: str) -> dict[str, tuple[int, int]]:
    """``(objects, bytes)`` per top-level prefix, grouped over boto3's listing of everything."""
    usage: dict[str, list[int]] = {}
    for page in paginate(client, bucket):
        for item in page.get("Contents", ()):
            head, slash, _ = item["Key"].partition("/")
            entry = usage.setdefault(head + slash if slash else "", [0, 0])
            entry[0] += 1
            entry[1] += item["Size"]
    return {child: (objects, size) for child, (objects, size) in usage.items()}


def boto3_glob(client: Any, bucket: str, glob: str) -> list[str]:
    """Keys matching ``glob`` (fnmatch over a listing of the glob's literal prefix)."""
    return [
        key
        for key in boto3_keys(client, bucket, literal_prefix(glob))
        if fnmatch.fnmatchcase(key, glob)
    ]


ROW_COLUMNS = "key, size, etag, modified, content_type, metadata, version"


def rows_reader(mirror: Mirror) -> Callable[[str, tuple[Any, ...]], Callable[[], Answer]]:
    """Makes calls that read rows of the mirror's SQLite index with one plain statement.

    Their time is the least any SQLite index spends on an answer: the
    rows alone, through Python's sqlite3, with no record made of them.
    """
    index = mirror.index
    assert isinstance(index, SQLiteIndex)
    conn = sqlite3.connect(f"file:{index.path}?mode=ro", uri=True, check_same_thread=False)

    def reader(where: str, args: tuple[Any, ...]) -> Callable[[], Answer]:
        sql = f"SELECT {ROW_COLUMNS} FROM entries WHERE bucket = ? AND {where} ORDER BY key"
        arguments = (mirror.bucket, *args)
        return lambda: conn.execute(sql, arguments).fetchall()

    return reader


def mimic_listing(bucket: Any, prefix: str = "") -> list[tuple[str, int]]:
    """``(key, size)`` of what MimicDB lists under ``prefix`` from its index."""
    return [(key.name, key.size) for key in bucket.list(prefix=prefix)]


def questions(
    client: Any, bucket: str, mirror: Mirror, truth: dict[str, int], args: argparse.Namespace
) -> list[Question]:
    """The questions, each with its truth (from what was uploaded)."""
    keys = sorted(truth, key=str.encode)
    prefix = f"p{37 % args.prefixes:03d}/"
    under = [key for key in keys if key.startswith(prefix)]
    head_key = key_name(args.objects // 2 + 1, args.prefixes)
    children: dict[str, tuple[int, int]] = {}
    for key in keys:
        child = key.split("/", 1)[0] + "/"
        objects, size = children.get(child, (0, 0))
        children[child] = (objects + 1, size + truth[key])
    globbed = {
        glob: [key for key in keys if fnmatch.fnmatchcase(key, glob)]
        for glob in (GLOB_ALL, GLOB_NARROW)
    }

    def usage(within: list[str]) -> tuple[int, int]:
        return len(within), sum(truth[key] for key in within)

    def mirror_usage(where: str) -> tuple[int, int]:
        found = mirror.du(where)
        return found.objects, found.bytes

    read = rows_reader(mirror)
    in_range = read("key >= ? AND key < ?", (prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)))

    def by_key(wanted: list[str]) -> Callable[[], Answer]:
        return read(f"key IN ({', '.join('?' * len(wanted))})", tuple(wanted))

    return [
        Question(
            "list all",
            keys,
            lambda: boto3_keys(client, bucket),
            lambda: [meta.key for meta in mirror.list()],
            lambda b: [key for key, _ in mimic_listing(b)],
            300,
            100,
            rows=read("1", ()),
        ),
        Question(
            f"list one prefix ({len(under)} keys): list",
            under,
            lambda: boto3_keys(client, bucket, prefix),
            lambda: [meta.key for meta in mirror.list(prefix)],
            lambda b: [key for key, _ in mimic_listing(b, prefix)],
            300,
            100,
            rows=in_range,
        ),
        Question(
            "list one prefix: ls",
            under,
            lambda: [
                item["Key"]
                for page in paginate(client, bucket, Prefix=prefix, Delimiter="/")
                for item in page.get("Contents", ())
            ],
            lambda: [meta.key for meta in mirror.ls(prefix).objects],
            None,
            300,
            rows=in_range,
        ),
        Question(
            f"ls top level ({len(children)} prefixes)",
            sorted(children, key=str.encode),
            lambda: [
                common["Prefix"]
                for page in paginate(client, bucket, Delimiter="/")
                for common in page.get("CommonPrefixes", ())
            ],
            lambda: mirror.ls("").prefixes,
        ),
        Question(
            "total size (du all)",
            usage(keys),
            lambda: boto3_usage(client, bucket),
            lambda: mirror_usage(""),
            lambda b: usage_of(mimic_listing(b)),
            20_000,
            100,
        ),
        Question(
            "total size of one prefix",
            usage(under),
            lambda: boto3_usage(client, bucket, prefix),
            lambda: mirror_usage(prefix),
            lambda b: usage_of(mimic_listing(b, prefix)),
            None,
            100,
        ),
        Question(
            "size per top-level prefix (du depth=1)",
            children,
            lambda: boto3_children(client, bucket),
            lambda: {
                child: (usage.objects, usage.bytes)
                for child, usage in mirror.du("", depth=1).children.items()
            },
        ),
        Question(
            f"glob {GLOB_ALL} ({len(globbed[GLOB_ALL])} hits)",
            globbed[GLOB_ALL],
            lambda: boto3_glob(client, bucket, GLOB_ALL),
            lambda: [meta.key for meta in mirror.find(glob=GLOB_ALL)],
            lambda b: [key for key, _ in mimic_listing(b) if fnmatch.fnmatchcase(key, GLOB_ALL)],
            3000,
            100,
            rows=by_key(globbed[GLOB_ALL]),
        ),
        Question(
            f"glob {GLOB_NARROW} ({len(globbed[GLOB_NARROW])} hits)",
            globbed[GLOB_NARROW],
            lambda: boto3_glob(client, bucket, GLOB_NARROW),
            lambda: [meta.key for meta in mirror.find(glob=GLOB_NARROW)],
            lambda b: [
                key for key, _ in mimic_listing(b, "p01") if fnmatch.fnmatchcase(key, GLOB_NARROW)
            ],
            3000,
            100,
            rows=by_key(globbed[GLOB_NARROW]),
        ),
        Question(
            "head one key",
            truth[head_key],
            lambda: client.head_object(Bucket=bucket, Key=head_key)["ContentLength"],
            lambda: mirror.head(head_key).size,
            lambda b: b.get_key(head_key).size,
            300,
            100,
            rows=by_key([head_key]),
        ),
    ]


def usage_of(listing: list[tuple[str, int]]) -> tuple[int, int]:
    """``(objects, bytes)`` of a listing of ``(key, size)``."""
    return len(listing), sum(size for _, size in listing)


def describe(answer: Answer) -> str:
    """A short account of an answer: a count of keys, a usage, a size."""
    if isinstance(answer, list):
        distinct = len(set(answer))
        more = f" ({distinct:,} distinct)" if distinct != len(answer) else ""
        return f"{len(answer):,} keys{more}"
    if isinstance(answer, tuple):
        return f"{answer[0]:,} obj, {answer[1]:,} B"
    if isinstance(answer, dict):
        return f"{len(answer):,} prefixes"
    if answer is None:
        return "not found"
    return f"{answer:,} B"


# -- the contenders ask ----------------------------------------------------------------


def ask_boto3(question: Question, meter: Meter, args: argparse.Namespace) -> None:
    """Time plain boto3 on ``question``: ``--repeat`` calls, more while under 2 s in all."""
    seconds, requests, received, answer = timed_calls(
        meter, question.boto3, calls=args.repeat, budget=REMOTE_BUDGET
    )
    question.figures["boto3"] = Figure(
        seconds, requests, received, answer, answer == question.truth
    )


def ask_mirror(question: Question, mirror: Mirror, meter: Meter) -> None:
    """Time the mirror on ``question``; note remote requests by the wire and by its stats.

    Requests are those of the first call; any sent by the warm-up or later
    calls are noted. The rows alone and as records (see :func:`report_floors`)
    are timed in turn with the mirror, call by call, so that all three see
    the same machine.
    """
    before, mark = mirror.stats().remote_requests, meter.snapshot()
    question.mirror()  # warm: compiled statements, pages in the OS cache
    _, requests, received, answer = timed_calls(meter, question.mirror, calls=1)
    rows = question.rows
    contenders: list[Callable[[], Answer]] = [question.mirror]
    if rows is not None:
        contenders += [rows, lambda: [_new_meta(Meta, row).key for row in rows()]]
    seconds = timed_in_turn(contenders, LOCAL_BUDGET)
    counted = mirror.stats().remote_requests - before
    sent = sum(meter.since(mark)[0].values())
    note = "" if counted == sent == 0 else f"{sent} sent in all, stats() counted {counted}"
    question.figures["mirror"] = Figure(
        seconds[0], requests, received, answer, answer == question.truth, note
    )
    if rows is not None:
        question.rows_seconds, question.records_seconds = seconds[1:]


def timed_in_turn(calls: list[Callable[[], Answer]], budget: float) -> list[float]:
    """The median seconds of each of ``calls``, called in turn for at least ``budget``
    seconds (at least 3 and at most 5,000 rounds)."""
    gc.collect()
    times: list[list[float]] = [[] for _ in calls]
    spent = 0.0
    while len(times[0]) < 3 or (spent < budget and len(times[0]) < 5000):
        for call, taken in zip(calls, times, strict=True):
            start = time.perf_counter()
            call()
            taken.append(time.perf_counter() - start)
            spent += taken[-1]
    return [statistics.median(taken) for taken in times]


def ask_mimic(question: Question, peer: MimicPeer, saved: Any, args: argparse.Namespace) -> None:
    """Time MimicDB on ``question``, its database put back as its sync left it before each call."""
    if question.mimic is None:
        return
    bucket = peer.bucket()
    ask = question.mimic
    is_head = question.name == "head one key"
    calls = 20 if is_head else args.mimic_calls
    seconds, requests, received, answer = timed_calls(
        peer.meter,
        lambda: ask(bucket),
        calls=calls,
        before=None if is_head else lambda: peer.restore(saved),
    )
    grown = peer.rows()[0]  # after one call (or 20 heads) since the sync
    peer.restore(saved)
    # Order is not held against MimicDB: a listing is exact if it has each key once.
    exact = (
        sorted(answer) == sorted(question.truth)
        if isinstance(answer, list)
        else answer == question.truth
    )
    question.figures["MimicDB"] = Figure(seconds, requests, received, answer, exact, f"{grown:,}")


# -- sync, writes, the index at scale -------------------------------------------------------


@dataclass
class Row:
    """A line of a small table: a label, a time, requests and bytes, and a note."""

    label: str
    seconds: float
    requests: Counter[str] = field(default_factory=Counter)
    received: int = 0
    note: str = ""


def measure_sync(
    endpoint: str, client: Any, meter: Meter, bucket: str, directory: Path, args: argparse.Namespace
) -> tuple[Mirror, Meter, list[Row]]:
    """The initial sync (a new index each time) interleaved with the bare listing it needs.

    Returns the mirror of the last sync (its index now full) with its
    client's meter, and the median rows.
    """
    bare: list[float] = []
    store_list: list[float] = []
    syncs: list[float] = []
    mirror: Mirror | None = None
    mirror_meter = Meter()
    bare_requests: Counter[str] = Counter()
    bare_bytes = list_bytes = sync_bytes = 0
    list_requests_: Counter[str] = Counter()
    sync_requests: Counter[str] = Counter()
    report = None
    for round_ in range(args.sync_repeat):
        seconds, bare_requests, bare_bytes, _ = timed_calls(
            meter, lambda: sum(1 for _ in boto3_keys(client, bucket)), calls=1
        )
        bare.append(seconds)
        if mirror is not None:
            mirror.close()
            mirror.index.close()
        store = S3Store(bucket, endpoint_url=endpoint, region=REGION)
        mirror_meter = meter_boto3(store.client)
        seconds, list_requests_, list_bytes, _ = timed_calls(
            mirror_meter, functools.partial(count, store.list), calls=1
        )
        store_list.append(seconds)
        index = SQLiteIndex(directory / f"mirror-{round_}.db")
        mirror = Mirror(store, index)
        seconds, sync_requests, sync_bytes, report = timed_calls(mirror_meter, mirror.sync, calls=1)
        syncs.append(seconds)
        print(
            f"sync round {round_ + 1}: bare listing {bare[-1]:.2f} s, S3Store.list "
            f"{store_list[-1]:.2f} s, initial sync {syncs[-1]:.2f} s ({report})",
            file=sys.stderr,
        )
    assert mirror is not None and report is not None
    median = statistics.median
    again, again_requests, again_bytes, again_report = timed_calls(
        mirror_meter, mirror.sync, calls=1
    )
    rows = [
        Row("bare paginated listing (boto3)", median(bare), bare_requests, bare_bytes),
        Row("S3Store.list (mirrorkv, no index)", median(store_list), list_requests_, list_bytes),
        Row(
            "initial mirror.sync()",
            median(syncs),
            sync_requests,
            sync_bytes,
            f"added {report.added:,}, its report counts {report.requests} requests; "
            f"{median(syncs) / median(bare):.2f}x the bare listing",
        ),
        Row(
            "mirror.sync() again (nothing changed)",
            again,
            again_requests,
            again_bytes,
            f"changed {again_report.added + again_report.changed + again_report.removed}",
        ),
    ]
    return mirror, mirror_meter, rows


def measure_writes(mirror: Mirror, store_meter: Meter, args: argparse.Namespace) -> list[Row]:
    """One put through the mirror vs straight to S3Store, and the index's ``record`` alone."""
    store = mirror.remote
    value = b"w" * 1000
    times: tuple[list[float], list[float]] = ([], [])
    sent: list[tuple[Counter[str], int]] = []
    # Taking turns, so that moto's drift and other load hit both alike.
    for i in range(args.writes):
        for way, write in enumerate((store.put, mirror.put)):
            mark = store_meter.snapshot()
            start = time.perf_counter()
            write(f"zz-writes/{way}-{i:05d}", value)
            times[way].append(time.perf_counter() - start)
            if i == 0:
                sent.append(store_meter.since(mark))
    remote, mirrored = statistics.median(times[0]), statistics.median(times[1])
    now = time.time()
    index = mirror.index
    record = per_call(
        lambda i: index.record(mirror.bucket, Meta(f"zz-record/r{i:06d}", 1000, "e" * 32, now)),
        2000,
    )
    memory = MemoryStore()
    local = Mirror(MemoryStore(), index, bucket="memory://bench")  # the same index file
    bare = per_call(lambda i: memory.put(f"w/{i:06d}", value), 2000)
    recorded = per_call(lambda i: local.put(f"w/{i:06d}", value), 2000)
    return [
        Row("S3Store.put (1,000 bytes, no mirror)", remote, *sent[0]),
        Row(
            "mirror.put (remote put + record)",
            mirrored,
            *sent[1],
            f"difference {(mirrored - remote) * 1e6:+,.0f} µs (medians of {args.writes}, in turns)",
        ),
        Row("MemoryStore.put (1,000 bytes)", bare),
        Row(
            "mirror.put over a MemoryStore (same index)",
            recorded,
            note=f"the mirror's own cost of a write: {(recorded - bare) * 1e6:,.1f} µs "
            f"({verdict(recorded - bare < 100e-6, 'target < 100 µs')})",
        ),
        Row(
            "index.record alone (into the synced bucket's index)",
            record,
            note=verdict(record < 100e-6, "target < 100 µs"),
        ),
    ]


def count(items: Callable[[], Iterable[Any]]) -> int:
    """How many items ``items()`` yields."""
    return sum(1 for _ in items())


def measure_index(keys: int, directory: Path, profiles: list[str] | None) -> list[Row]:
    """``bench_index.py``'s index filled to ``keys`` keys: du of every prefix shape, record.

    With ``profiles``, the slowest ``du`` is profiled there when it misses 1 ms.
    """
    rows: list[Row] = []
    path = directory / "scale.db"
    with SQLiteIndex(path) as index:
        now = time.time()
        start = time.perf_counter()
        index.record_many(
            INDEX_BUCKET, (Meta(key_of(i), i % 5000, "e" * 32, now) for i in range(keys))
        )
        fill = time.perf_counter() - start
        print(f"index filled with {keys:,} keys in {fill:.1f} s", file=sys.stderr)
        mirror = Mirror(MemoryStore(), index, bucket=INDEX_BUCKET)
        shapes: list[tuple[str, Callable[[int], str], int]] = [
            ("''", lambda i: "", 2000),
            ("'tenantNN/' (1%)", lambda i: f"tenant{i % 100:02}/", 2000),
            ("'tenantNN/dayMMM/' (0.01%)", lambda i: f"tenant{i % 100:02}/day{i % 97:03}/", 2000),
            (
                "'tenantNN/dayMMM/obj00' (no '/')",
                lambda i: f"tenant{i % 100:02}/day{i % 97:03}/obj00",
                500,
            ),
            ("'tenantNN/day0' (100 small days)", lambda i: f"tenant{i % 100:02}/day0", 200),
            ("'tenantN' (10 tenants)", lambda i: f"tenant{i % 10}", 50),
            ("'tenant' (every key, no '/')", lambda i: "tenant", 15),
            ("'t' (every key, no '/')", lambda i: "t", 15),
        ]
        worst, worst_label, worst_prefix = 0.0, "", ""
        for label, prefix, calls in shapes:
            seconds = per_call(lambda i, prefix=prefix: mirror.du(prefix(i)), calls)  # type: ignore[misc]
            if seconds > worst:
                worst, worst_label, worst_prefix = seconds, label, prefix(7)
            rows.append(Row(f"mirror.du({label})", seconds, note=verdict(seconds < 1e-3, "< 1 ms")))
        rows.append(
            Row(f"worst du above: {worst_label}", worst, note=verdict(worst < 1e-3, "< 1 ms"))
        )
        if profiles is not None and worst >= 1e-3:
            profiles.append(
                profile(
                    f"du({worst_prefix!r}) at {keys:,} keys",
                    lambda: mirror.du(worst_prefix),
                    worst,
                )
            )
        new = per_call(
            lambda i: index.record(
                INDEX_BUCKET, Meta(f"tenant{i % 100:02}/new/w{i:07}", 10, "e" * 32, now)
            ),
            5000,
        )
        rows.append(
            Row(
                "index.record (one new key, committed)", new, note=verdict(new < 100e-6, "< 100 µs")
            )
        )
        over = per_call(
            lambda i: index.record(INDEX_BUCKET, Meta(key_of(i * 7 % keys), i, "e" * 32, now)), 5000
        )
        rows.append(
            Row(
                "index.record (overwrite, size changes)",
                over,
                note=verdict(over < 100e-6, "< 100 µs"),
            )
        )
        head = per_call(lambda i: mirror.head(key_of(i * 13 % keys)), 5000)
        rows.append(Row("mirror.head (hit)", head))
        rows.insert(
            0, Row(f"record_many of {keys:,} keys (fill)", fill, note=f"{keys / fill:,.0f} keys/s")
        )
    return rows


def verdict(ok: bool, target: str) -> str:
    """``MET target`` or ``MISSED target``."""
    return f"{'MET' if ok else 'MISSED'} {target}"


# -- the report ------------------------------------------------------------------------------


def fmt_seconds(seconds: float) -> str:
    """A duration in s, ms or µs."""
    if seconds >= 1:
        return f"{seconds:,.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:,.1f} ms"
    return f"{seconds * 1e6:,.1f} µs"


def fmt_requests(requests: Counter[str]) -> str:
    """Requests by price class: ``20 LIST``, ``1 GET``, ``0``."""
    by_class: Counter[str] = Counter()
    for operation, count in requests.items():
        by_class[price_class(operation)] += count
    return " + ".join(f"{count:,} {kind}" for kind, count in sorted(by_class.items())) or "0"


def fmt_bytes(received: int) -> str:
    """Bytes received, in B, kB or MB."""
    if received >= 1_000_000:
        return f"{received / 1e6:,.2f} MB"
    if received >= 1000:
        return f"{received / 1e3:,.1f} kB"
    return f"{received:,} B"


def fmt_s3(requests: Counter[str]) -> str:
    """What the requests would take at real S3: time, and dollars per 1,000 such calls."""
    seconds, dollars = at_s3(requests)
    if not requests:
        return "0 ms, $0"
    return f"{seconds * 1e3:,.0f} ms, ${dollars * 1000:,.4f}/1k"


def table(header: list[str], rows: list[list[str]], markdown: bool) -> None:
    """Print a table, aligned (text) or as Markdown."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = [
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return f"| {' | '.join(padded)} |" if markdown else "  ".join(padded)

    print(line(header))
    if markdown:
        print("|" + "|".join("-" * (width + 2) for width in widths) + "|")
    for row in rows:
        print(line(row))
    print()


def speedup(question: Question, peer: str) -> float | None:
    """How many times faster the mirror answered than ``peer`` (None: no figure)."""
    theirs = question.figures.get(peer)
    ours = question.figures.get("mirror")
    if theirs is None or ours is None:
        return None
    return theirs.seconds / ours.seconds


def target_cells(ratio: float | None, target: float | None) -> list[str]:
    """The ratio, the target and the verdict as table cells."""
    if ratio is None:
        return ["n/a", "", ""]
    if target is None:
        return [f"{ratio:,.0f}x", "none", ""]
    return [f"{ratio:,.0f}x", f">= {target:,.0f}x", "MET" if ratio >= target else "MISSED"]


def exactness(figure: Figure) -> str:
    """``exact``, or ``WRONG`` and what was returned."""
    return "exact" if figure.exact else f"WRONG: {describe(figure.answer)}"


def report_questions(asked: list[Question], args: argparse.Namespace) -> None:
    """The two tables of questions: the mirror against boto3, and against MimicDB."""
    print(
        f"## The mirror against plain boto3 ({args.objects:,} objects, {args.prefixes} prefixes)\n"
    )
    rows = []
    for question in asked:
        boto3 = question.figures["boto3"]
        mirror = question.figures["mirror"]
        rows.append(
            [
                question.name,
                fmt_seconds(boto3.seconds),
                fmt_requests(boto3.requests),
                fmt_bytes(boto3.bytes),
                fmt_s3(boto3.requests),
                fmt_seconds(mirror.seconds),
                fmt_requests(mirror.requests) + (f" ({mirror.note})" if mirror.note else ""),
                *target_cells(speedup(question, "boto3"), question.vs_boto3),
                f"{at_s3(boto3.requests)[0] / mirror.seconds:,.0f}x",
                f"{exactness(boto3)} / {exactness(mirror)}",
            ]
        )
    table(
        [
            "question",
            "boto3",
            "boto3 requests",
            "received",
            "at real S3",
            "mirror",
            "mirror requests",
            "speedup",
            "target",
            "",
            "vs S3 est.",
            "boto3 / mirror answer",
        ],
        rows,
        args.markdown,
    )
    if not any("MimicDB" in question.figures for question in asked):
        return
    print("## The mirror against MimicDB 1.0.5 (boto 2, SQLite backend), after its sync\n")
    rows = []
    for question in asked:
        mimic = question.figures.get("MimicDB")
        if mimic is None:
            continue
        mirror = question.figures["mirror"]
        rows.append(
            [
                question.name,
                fmt_seconds(mimic.seconds),
                fmt_requests(mimic.requests),
                describe(mimic.answer),
                "exact" if mimic.exact else "WRONG",
                fmt_seconds(mirror.seconds),
                describe(mirror.answer),
                "exact" if mirror.exact else "WRONG",
                *target_cells(speedup(question, "MimicDB"), question.vs_mimic),
                mimic.note,
            ]
        )
    table(
        [
            "question",
            "MimicDB",
            "requests",
            "its answer",
            "",
            "mirror",
            "mirror's answer",
            "",
            "speedup",
            "target",
            "",
            "its key set after",
        ],
        rows,
        args.markdown,
    )
    print(
        "MimicDB's key set holds one row per key and listing (or a head) adds rows: "
        "'its key set after' counts its rows after one call (20 for head) from the synced state; "
        "its database is put back before each timed call.\n"
    )


def report_floors(asked: list[Question], markdown: bool) -> None:
    """The least SQLite spends on each answer, and the best speedups it leaves."""
    print("## The rows alone: the least any index reading SQLite on each call spends\n")
    rows = []
    for question in asked:
        floor, records = question.rows_seconds, question.records_seconds
        if floor is None or records is None:
            continue
        mirror = question.figures["mirror"].seconds
        cells = [
            question.name,
            fmt_seconds(mirror),
            fmt_seconds(floor),
            fmt_seconds(records),
            f"{mirror / records:.2f}x",
        ]
        for peer, target in (("boto3", question.vs_boto3), ("MimicDB", question.vs_mimic)):
            theirs = question.figures.get(peer)
            if theirs is None or target is None:
                cells += ["", ""]
                continue
            best = theirs.seconds / records
            verdict = "reachable" if best >= target else "OUT OF REACH"
            cells += [f"{best:,.0f}x", f"{verdict} (>= {target:,.0f}x)"]
        rows.append(cells)
    table(
        [
            "question",
            "mirror",
            "rows alone",
            "as records",
            "mirror / records",
            "boto3 / records",
            "",
            "MimicDB / records",
            "",
        ],
        rows,
        markdown,
    )
    print(
        "'rows alone' fetches the answer's rows (all seven columns; a glob's and a head's "
        "by key, as if the matching keys were known) with one SQL statement through "
        "sqlite3; 'as records' also makes each row a Meta with one tuple.__new__ and takes "
        "its key, as the questions do: the least an answer of records costs. "
        "'boto3 / records' and 'MimicDB / records' are the best speedups such an index "
        "can reach, against the targets.\n"
    )


def report_rows(title: str, rows: list[Row], markdown: bool) -> None:
    """A small table of :class:`Row`."""
    print(f"## {title}\n")
    table(
        ["", "time", "requests", "received", "at real S3", "note"],
        [
            [
                row.label,
                fmt_seconds(row.seconds),
                fmt_requests(row.requests),
                fmt_bytes(row.received) if row.received else "",
                fmt_s3(row.requests) if row.requests else "",
                row.note,
            ]
            for row in rows
        ],
        markdown,
    )


def shortfalls(asked: list[Question]) -> list[tuple[float, str, Question]]:
    """``(speedup / target, peer, question)`` for every target, worst first."""
    found = []
    for question in asked:
        for peer, target in (("boto3", question.vs_boto3), ("MimicDB", question.vs_mimic)):
            ratio = speedup(question, peer)
            if target is not None and ratio is not None:
                found.append((ratio / target, peer, question))
    return sorted(found, key=lambda item: item[0])


def profile(name: str, call: Callable[[], Any], per_call_seconds: float) -> str:
    """cProfile ``call`` for about a second; the report of where its time goes."""
    calls = max(3, int(1.0 / max(per_call_seconds, 1e-6)))
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        call()
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("tottime").print_stats(14)
    text = out.getvalue()
    top = text[text.find("   ncalls") :].rstrip()
    return f"## cProfile of the mirror's {name}, {calls:,} calls (by own time)\n\n{top}\n"


def missed_profiles(asked: list[Question], most: int = 4) -> list[str]:
    """Profiles of the mirror's answers that missed a target, worst first (at most ``most``)."""
    done: list[str] = []
    texts = []
    for share, _, question in shortfalls(asked):
        if share >= 1 or question.name in done or len(done) >= most:
            continue
        done.append(question.name)
        texts.append(
            profile(f"'{question.name}'", question.mirror, question.figures["mirror"].seconds)
        )
    return texts


# -- setting up -------------------------------------------------------------------------------


def upload(client: Any, bucket: str, args: argparse.Namespace) -> dict[str, int]:
    """Fill ``bucket`` with the objects (8 threads); return key -> size."""
    truth = {key_name(i, args.prefixes): size_of(i) for i in range(args.objects)}

    def put(i: int) -> None:
        client.put_object(Bucket=bucket, Key=key_name(i, args.prefixes), Body=b"v" * size_of(i))

    start = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        for done, _ in enumerate(pool.map(put, range(args.objects)), 1):
            if done % 5000 == 0:
                print(f"uploaded {done:,} objects", file=sys.stderr)
    print(
        f"uploaded {args.objects:,} objects in {time.perf_counter() - start:.0f} s", file=sys.stderr
    )
    return truth


def mimic_sync(
    endpoint: str, bucket: str, args: argparse.Namespace
) -> tuple[MimicPeer | None, list[Row], str]:
    """MimicDB opened and synced (its time, requests, the rows it holds), or why it cannot run."""
    try:
        peer = open_mimicdb(endpoint, bucket, args.mimicdb_db)
        seconds, requests, received, _ = timed_calls(peer.meter, peer.sync, calls=1)
        rows, distinct = peer.rows()
        print(f"MimicDB synced in {seconds:.1f} s ({rows:,} rows)", file=sys.stderr)
    except Exception as error:  # whatever stops boto 2 or MimicDB here is the reason printed
        return None, [], f"{type(error).__name__}: {error}"
    row = Row(
        f"MimicDB conn.sync() ({'in memory' if args.mimicdb_db == ':memory:' else 'file'})",
        seconds,
        requests,
        received,
        f"holds {rows:,} rows for {distinct:,} keys",
    )
    return peer, [row], ""


def run(endpoint: str, moto_pid: int, directory: Path, args: argparse.Namespace) -> None:
    """Everything, in order; prints the report."""
    import boto3

    admin = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
    bucket = "bench-mirror"
    admin.create_bucket(Bucket=bucket)
    truth = upload(admin, bucket, args)
    client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
    meter = meter_boto3(client)
    peer, mimic_rows, mimic_skipped = mimic_sync(endpoint, bucket, args)
    if peer is None:
        print(f"MimicDB skipped: {mimic_skipped}\n")
    saved = peer.save() if peer is not None else None
    mirror, mirror_meter, sync_rows = measure_sync(endpoint, client, meter, bucket, directory, args)
    asked = questions(client, bucket, mirror, truth, args)
    for question in asked:
        ask_boto3(question, meter, args)
        wait_until_idle(moto_pid)
        ask_mirror(question, mirror, mirror_meter)
        if peer is not None:
            wait_until_idle(moto_pid)
            try:
                ask_mimic(question, peer, saved, args)
            except Exception as error:  # its failure is a finding, not the end of the run
                print(f"MimicDB failed on '{question.name}': {type(error).__name__}: {error}\n")
        figures = ", ".join(
            f"{who} {fmt_seconds(figure.seconds)}" for who, figure in question.figures.items()
        )
        print(f"asked: {question.name}: {figures}", file=sys.stderr, flush=True)
    worst = shortfalls(asked)
    profiles = missed_profiles(asked) if args.profile else []
    write_rows = measure_writes(mirror, mirror_meter, args)
    scale_rows: list[Row] = []
    if args.index_keys:
        scale_rows = measure_index(args.index_keys, directory, profiles if args.profile else None)

    report_questions(asked, args)
    report_floors(asked, args.markdown)
    sync_rows += mimic_rows
    bare, initial = sync_rows[0].seconds, sync_rows[2].seconds
    sync_rows[2].note += f" ({verdict(initial <= 1.5 * bare, 'target <= 1.5x')})"
    report_rows("The initial sync against the bare listing it needs", sync_rows, args.markdown)
    report_rows("Recording one write (index of the synced bucket)", write_rows, args.markdown)
    if scale_rows:
        report_rows(f"The index alone at {args.index_keys:,} keys", scale_rows, args.markdown)
    remote = [
        q.name for q in asked if q.figures["mirror"].request_count or q.figures["mirror"].note
    ]
    print("## Targets\n")
    print(
        verdict(not remote, "every question answered with zero remote requests")
        + (f" (sent some: {', '.join(remote)})" if remote else "")
    )
    wrong = [q.name for q in asked if not q.figures["mirror"].exact]
    print(
        verdict(not wrong, "the mirror's answers exact")
        + (f" (wrong: {', '.join(wrong)})" if wrong else "")
    )
    if peer is not None:
        inexact = [
            q.name for q in asked if "MimicDB" in q.figures and not q.figures["MimicDB"].exact
        ]
        print(f"MimicDB's answers not exact: {', '.join(inexact) or 'none'}")
    for share, who, question in worst:
        target = question.vs_boto3 if who == "boto3" else question.vs_mimic
        print(
            f"{'MET' if share >= 1 else 'MISSED'} {question.name} vs {who}: "
            f"{speedup(question, who):,.0f}x (target {target:,.0f}x)"
        )
    print(
        "\nAt real S3 (assumed, one request after another): "
        f"LIST page {S3_LATENCY['LIST'] * 1e3:.0f} ms, "
        f"HEAD/GET {S3_LATENCY['HEAD'] * 1e3:.0f} ms, PUT {S3_LATENCY['PUT'] * 1e3:.0f} ms; "
        f"LIST/PUT ${PRICES.list_put_per_1000}/1k, GET/HEAD ${PRICES.get_head_per_1000}/1k.\n"
    )
    for text in profiles:
        print(text)
    mirror.close()
    mirror.index.close()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--objects", type=int, default=20_000, help="objects in the bucket")
    parser.add_argument("--prefixes", type=int, default=100, help="top-level prefixes")
    parser.add_argument("--index-keys", type=int, default=1_000_000, help="0: skip the index alone")
    parser.add_argument(
        "--repeat", type=int, default=3, help="boto3 calls per question, at least (median)"
    )
    parser.add_argument("--sync-repeat", type=int, default=3, help="initial syncs (median)")
    parser.add_argument("--mimic-calls", type=int, default=1, help="MimicDB calls per question")
    parser.add_argument("--mimicdb-db", default=":memory:", help="MimicDB's SQLite database")
    parser.add_argument("--writes", type=int, default=50, help="puts timed, each way")
    parser.add_argument("--dir", default=None, help="where the index files go (default: TMPDIR)")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    parser.add_argument("--profile", action="store_true", help="cProfile the worst mirror path")
    args = parser.parse_args(argv)
    executable = (
        os.path.relpath(sys.executable)
        if sys.executable.startswith(os.getcwd())
        else sys.executable
    )
    print(f"command: {shlex.join([executable, *sys.argv])}\n")
    if "AWS_ACCESS_KEY_ID" not in os.environ:
        os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=args.dir)))
        log = stack.enter_context(tempfile.TemporaryFile())
        process, endpoint = start_moto(log)
        try:
            run(endpoint, process.pid, directory, args)
        finally:
            process.terminate()
            process.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
