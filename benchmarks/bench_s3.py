"""Side-by-side benchmark of mirrorkv's S3Store, minimalkv's Boto3Store and a plain boto3 loop.

Usage (from the repository root, with the ``s3``, ``test`` and ``bench`` extras)::

    .venv/bin/python benchmarks/bench_s3.py                      # starts moto, 3 rounds
    .venv/bin/python benchmarks/bench_s3.py --keys 500 --batch 2000 --repeat 5
    .venv/bin/python benchmarks/bench_s3.py --endpoint http://127.0.0.1:9000  # your own S3
    .venv/bin/python benchmarks/bench_s3.py --markdown

The server is moto's HTTP server, started by this script as a separate
process on a free port (or the S3 named by ``--endpoint``; credentials then
come from boto3's usual chain, and ``testing`` where the environment has
none). All three contenders talk to the same server, in ONE process, each in
its own new bucket per run, with ``--value-size``-byte random values:

* ``put``: ``--keys`` keys written one call at a time; ``get``: each read
  back one call at a time (shuffled). Figures: operations per second, and
  the client's CPU time per operation (``time.process_time`` of this
  process: what the library costs, free of the server's share and much
  less disturbed by other load on the machine than the wall clock).
  The contenders take turns every ``--chunk`` calls, so that a burst of
  load from elsewhere hits all of them alike.
  Where the script started moto, also the server's CPU time per request
  (from ``/proc``): moto answers on one core (Python, one process), so the
  larger of the two CPU figures bounds the rate of any concurrency.
* ``put_many`` / ``get_many``: ``--batch`` keys in one call. mirrorkv runs
  them on its thread pool (``max_concurrency`` 16); minimalkv and plain
  boto3 have no batch call, so their figure is their loop of single calls.

Every figure is the median over ``--repeat`` rounds, after an untimed
warm-up round. The plain boto3 loop is
``client.put_object(Bucket, Key, Body)`` / ``client.get_object(...)["Body"].read()``
on a client with boto3's defaults: the floor any S3 library on boto3 pays.
mirrorkv's put also sends a content type and its version token in the
metadata, and builds a ``Meta``; its get checks the key and translates errors.

Targets (from the issue): ``get_many`` and ``put_many`` at least 3x mirrorkv's
own one-at-a-time loop; a single get within 10% of plain boto3 (ratio >= 0.91)
and a single put within 25% (ratio >= 0.80). Printed with PASS/FAIL.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

REGION = "us-east-1"


@dataclass
class Contender:
    """One library under test: how it makes a store in a bucket and does each phase."""

    name: str
    open: Callable[[str], Any]
    put: Callable[[Any, str, bytes], object]
    get: Callable[[Any, str], bytes]
    put_many: Callable[[Any, dict[str, bytes]], object] | None = None
    get_many: Callable[[Any, list[str]], object] | None = None
    close: Callable[[Any], None] = lambda store: None
    results: dict[str, list[float]] = field(default_factory=dict)


def server_cpu(pid: int | None) -> float:
    """CPU seconds the server process has used so far (Linux ``/proc``; 0 where unknown)."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_moto(log: Any) -> tuple[subprocess.Popen[bytes], str]:
    """moto's HTTP server in its own process, on a free port, once it answers."""
    import boto3

    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
    deadline = time.monotonic() + 60
    while True:
        try:
            client.list_buckets()
            return process, endpoint
        except Exception:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise SystemExit("moto's server did not start") from None
            time.sleep(0.2)


def contenders(endpoint: str) -> list[Contender]:
    """mirrorkv, minimalkv and plain boto3 against ``endpoint``."""
    import boto3

    from mirrorkv.stores.s3 import S3Store

    raw = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)

    def raw_put(bucket: str, key: str, value: bytes) -> object:
        return raw.put_object(Bucket=bucket, Key=key, Body=value)

    def raw_get(bucket: str, key: str) -> bytes:
        data: bytes = raw.get_object(Bucket=bucket, Key=key)["Body"].read()
        return data

    found: list[Contender] = [
        Contender(
            "mirrorkv",
            lambda bucket: S3Store(bucket, endpoint_url=endpoint, region=REGION),
            lambda store, key, value: store.put(key, value),
            lambda store, key: store.get(key),
            lambda store, items: store.put_many(items),
            lambda store, keys: store.get_many(keys),
            lambda store: store.close(),
        ),
        Contender("boto3", lambda bucket: bucket, raw_put, raw_get),
    ]
    try:
        from minimalkv.net.boto3store import Boto3Store
    except ImportError:
        print("minimalkv is not installed: pip install minimalkv (the bench extra)")
    else:
        resource = boto3.resource("s3", endpoint_url=endpoint, region_name=REGION)
        found.append(
            Contender(
                "minimalkv",
                lambda bucket: Boto3Store(resource.Bucket(bucket)),
                lambda store, key, value: store.put(key, value),
                lambda store, key: store.get(key),
            )
        )
    return found


def run_round(
    found: list[Contender], admin: Any, args: argparse.Namespace, round_: int, label: str
) -> None:
    """One round: every contender in a new bucket; single ops interleaved in small chunks.

    The single puts (then gets) are timed in chunks of ``--chunk`` calls,
    the contenders taking turns chunk by chunk, so that a burst of load from
    elsewhere on the machine hits all of them alike. Records ops/s and the
    client's CPU time per op (``time.process_time``: this process only, not
    the server's).
    """
    rng = random.Random(args.seed + round_)
    # minimalkv refuses '/' in keys; the same dotted keys for every contender.
    single = {f"user{i % 97}.item{i:08d}": rng.randbytes(args.value_size) for i in range(args.keys)}
    order = list(single)
    rng.shuffle(order)
    names = list(single)
    buckets = {c.name: f"bench-{uuid.uuid4().hex[:20]}" for c in found}
    stores = {}
    for contender in found:
        admin.create_bucket(Bucket=buckets[contender.name])
        stores[contender.name] = contender.open(buckets[contender.name])
    try:
        for phase, keys in (("put", names), ("get", order)):
            wall = dict.fromkeys(buckets, 0.0)
            cpu = dict.fromkeys(buckets, 0.0)
            served = dict.fromkeys(buckets, 0.0)
            gc.collect()
            for start in range(0, len(keys), args.chunk):
                chunk = keys[start : start + args.chunk]
                turn = (start // args.chunk + round_) % len(found)
                for contender in found[turn:] + found[:turn]:
                    store = stores[contender.name]
                    server_start = server_cpu(args.server_pid)
                    cpu_start, wall_start = time.process_time(), time.perf_counter()
                    if phase == "put":
                        for key in chunk:
                            contender.put(store, key, single[key])
                    else:
                        for key in chunk:
                            contender.get(store, key)
                    wall[contender.name] += time.perf_counter() - wall_start
                    cpu[contender.name] += time.process_time() - cpu_start
                    served[contender.name] += server_cpu(args.server_pid) - server_start
            for contender in found:
                contender.results.setdefault(phase, []).append(len(keys) / wall[contender.name])
                per_op = cpu[contender.name] / len(keys) * 1e6
                contender.results.setdefault(f"{phase} cpu", []).append(per_op)
                per_op = served[contender.name] / len(keys) * 1e6
                contender.results.setdefault(f"{phase} server", []).append(per_op)
        for contender in found:
            if contender.put_many is None or contender.get_many is None:
                for phase in ("put", "get"):
                    contender.results.setdefault(f"{phase}_many", []).append(
                        contender.results[phase][-1]
                    )
                continue
            store = stores[contender.name]
            many = {
                f"batch{i % 97}.item{i:08d}": rng.randbytes(args.value_size)
                for i in range(args.batch)
            }
            batch_names = list(many)
            rng.shuffle(batch_names)
            put_many, get_many = contender.put_many, contender.get_many
            gc.collect()
            start_time = time.perf_counter()
            put_many(store, many)
            rate = args.batch / (time.perf_counter() - start_time)
            contender.results.setdefault("put_many", []).append(rate)
            gc.collect()
            start_time = time.perf_counter()
            got = get_many(store, batch_names)
            rate = args.batch / (time.perf_counter() - start_time)
            assert isinstance(got, dict) and len(got) == args.batch
            contender.results.setdefault("get_many", []).append(rate)
    finally:
        for contender in found:
            contender.close(stores[contender.name])
            _empty_and_delete(admin, buckets[contender.name])
    for contender in found:
        figures = {phase: round(values[-1]) for phase, values in contender.results.items()}
        print(f"{label}: {contender.name} {figures}", file=sys.stderr)


def _empty_and_delete(admin: Any, bucket: str) -> None:
    for page in admin.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        objects = [{"Key": item["Key"]} for item in page.get("Contents", ())]
        if objects:
            admin.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
    admin.delete_bucket(Bucket=bucket)


PHASES = ("put", "get", "put_many", "get_many")


def report(found: list[Contender], args: argparse.Namespace) -> int:
    """Print the table, the ratios and the targets; return 0 (targets are not a test)."""

    def median(contender: Contender, phase: str) -> float:
        return statistics.median(contender.results[phase])

    sep = " | " if args.markdown else "  "
    header = [
        "contender",
        *[f"{phase} ops/s" for phase in PHASES],
        "put CPU µs/op",
        "get CPU µs/op",
        "server CPU µs/put",
        "server CPU µs/get",
    ]
    rows = [
        [
            c.name,
            *[f"{median(c, p):,.0f}" for p in PHASES],
            f"{median(c, 'put cpu'):,.0f}",
            f"{median(c, 'get cpu'):,.0f}",
            f"{median(c, 'put server'):,.0f}",
            f"{median(c, 'get server'):,.0f}",
        ]
        for c in found
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        text = sep.join(cell.rjust(width) for cell, width in zip(cells, widths, strict=True))
        return f"| {text} |" if args.markdown else text

    print(
        f"\nS3 on {args.endpoint or 'moto (separate process)'}: {args.keys} single ops, "
        f"batches of {args.batch}, {args.value_size}-byte values, median of {args.repeat}\n"
    )
    print(line(header))
    if args.markdown:
        print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print(line(row))
    by_name = {c.name: c for c in found}
    ours = by_name["mirrorkv"]
    print()
    for peer in found:
        if peer is ours:
            continue
        ratios = ", ".join(f"{p} {median(ours, p) / median(peer, p):.2f}x" for p in PHASES)
        print(f"mirrorkv / {peer.name}: {ratios}")
    raw = by_name["boto3"]
    checks = [
        ("get_many >= 3x mirrorkv's get loop", median(ours, "get_many") / median(ours, "get"), 3.0),
        ("put_many >= 3x mirrorkv's put loop", median(ours, "put_many") / median(ours, "put"), 3.0),
        ("single get within 10% of boto3", median(ours, "get") / median(raw, "get"), 1 / 1.10),
        ("single put within 25% of boto3", median(ours, "put") / median(raw, "put"), 1 / 1.25),
        (
            "client CPU of a get within 10% of boto3's",
            median(raw, "get cpu") / median(ours, "get cpu"),
            1 / 1.10,
        ),
        (
            "client CPU of a put within 25% of boto3's",
            median(raw, "put cpu") / median(ours, "put cpu"),
            1 / 1.25,
        ),
    ]
    ceiling = [
        1e6 / max(median(ours, f"{p} cpu"), median(ours, f"{p} server")) for p in ("put", "get")
    ]
    if median(ours, "get server"):
        print(
            "\nThe server's CPU per request bounds any client: a single-threaded "
            f"server peaks near {ceiling[0]:,.0f} puts/s and {ceiling[1]:,.0f} gets/s "
            f"({ceiling[0] / median(ours, 'put'):.1f}x and {ceiling[1] / median(ours, 'get'):.1f}x "
            "mirrorkv's loop), whatever the concurrency."
        )
    print()
    for label, value, target in checks:
        verdict = "PASS" if value >= target else "FAIL"
        print(f"{verdict}  {label}: {value:.2f} (target >= {target:.2f})")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--keys", type=int, default=1000, help="single puts and gets per run")
    parser.add_argument("--batch", type=int, default=10_000, help="keys in put_many/get_many")
    parser.add_argument("--chunk", type=int, default=25, help="single ops per turn")
    parser.add_argument("--value-size", type=int, default=1024, help="bytes per value")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--endpoint", help="an S3 endpoint to use instead of starting moto")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--seed", type=int, default=42, help="seed of values and read order")
    args = parser.parse_args(argv)
    if "AWS_ACCESS_KEY_ID" not in os.environ:
        os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    import boto3

    with tempfile.TemporaryFile() as log:
        process = None
        endpoint = args.endpoint
        if endpoint is None:
            process, endpoint = start_moto(log)
        args.server_pid = process.pid if process is not None else None
        try:
            admin = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
            found = contenders(endpoint)
            warm = argparse.Namespace(**{**vars(args), "keys": 20, "batch": 20})
            run_round(found, admin, warm, 0, "warm-up")  # clients, connections, code paths
            for contender in found:
                contender.results.clear()
            for round_ in range(args.repeat):
                run_round(found, admin, args, round_, f"round {round_ + 1}")
            return report(found, args)
        finally:
            if process is not None:
                process.terminate()
                process.wait(10)


if __name__ == "__main__":
    sys.exit(main())
