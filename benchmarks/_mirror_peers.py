"""Request meters and the MimicDB peer for ``bench_mirror.py`` (private to the benchmarks).

:class:`Meter` counts what a client sent and received: requests by
operation, and response bytes (body plus status line and headers, as
received). :func:`meter_boto3` attaches one to a boto3/botocore client
through its event hooks; :func:`open_mimicdb` opens MimicDB (boto 2 and
MimicDB's SQLite backend) with a boto 2 connection whose requests feed one.
"""

from __future__ import annotations

import importlib.util
import sqlite3
import sys
import types
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Meter:
    """Requests by operation and response bytes seen so far."""

    requests: Counter[str] = field(default_factory=Counter)
    bytes: int = 0

    def snapshot(self) -> tuple[Counter[str], int]:
        """A copy of the counts, to subtract later (see :meth:`since`)."""
        return Counter(self.requests), self.bytes

    def since(self, mark: tuple[Counter[str], int]) -> tuple[Counter[str], int]:
        """Requests by operation and bytes since ``mark`` (a :meth:`snapshot`)."""
        requests = Counter(self.requests)
        requests.subtract(mark[0])
        return +requests, self.bytes - mark[1]


def _header_bytes(headers: Any) -> int:
    """Bytes of a header block as sent: ``name: value\\r\\n`` per header, plus the blank line."""
    return sum(len(str(name)) + len(str(value)) + 4 for name, value in headers.items()) + 2


def meter_boto3(client: Any) -> Meter:
    """A :class:`Meter` fed by ``client``'s ``before-send`` and ``after-call`` hooks.

    ``before-send`` fires once per HTTP request actually sent (retries
    included); ``after-call`` gives the raw response, whose body is counted
    from its Content-Length for streamed answers (GetObject) so as not to
    consume them.
    """
    meter = Meter()

    def on_send(event_name: str, **_: Any) -> None:
        meter.requests[event_name.rsplit(".", 1)[-1]] += 1

    def on_call(http_response: Any, model: Any, **_: Any) -> None:
        if model.has_streaming_output:
            body = int(http_response.headers.get("content-length", 0))
        else:
            body = len(http_response.content)
        meter.bytes += body + _header_bytes(http_response.headers) + len("HTTP/1.1 200 OK\r\n")

    events = client.meta.events
    events.register("before-send.s3", on_send)
    events.register("after-call.s3", on_call)
    return meter


@dataclass
class MimicPeer:
    """MimicDB on a bucket: its boto 2 connection, bucket, backend, and the meter."""

    connection: Any
    bucket_name: str
    sqlite: sqlite3.Connection
    meter: Meter

    def bucket(self) -> Any:
        """The MimicDB bucket (from its index: no request once synced)."""
        return self.connection.get_bucket(self.bucket_name)

    def sync(self) -> None:
        """MimicDB's own sync of the bucket (a full listing, recorded key by key)."""
        self.connection.sync(self.bucket_name)

    def rows(self) -> tuple[int, int]:
        """``(rows, distinct keys)`` in MimicDB's key set of the bucket."""
        table = f"mimicdb:{self.bucket_name}"
        found = self.sqlite.execute(
            f'SELECT COUNT(*), COUNT(DISTINCT member) FROM "{table}"'
        ).fetchone()
        return int(found[0]), int(found[1])

    def save(self) -> sqlite3.Connection:
        """A copy of MimicDB's whole database (its questions change it: see the report)."""
        copy = sqlite3.connect(":memory:")
        self.sqlite.backup(copy)
        return copy

    def restore(self, saved: sqlite3.Connection) -> None:
        """Put back a copy made by :meth:`save`."""
        saved.backup(self.sqlite)


def boto2_shims() -> None:
    """Give boto 2 what newer Pythons removed, before it is imported.

    ``imp`` (gone in Python 3.12) is imported by boto's plugin loader, which
    this benchmark never uses: a stand-in whose functions find no plugin.
    Python 3.11 still has ``imp``, so there nothing changes.
    """
    if importlib.util.find_spec("imp") is not None:
        return

    def no_plugin(*_: Any) -> Any:
        raise ImportError("boto plugins are not loaded by this benchmark")

    shim = types.ModuleType("imp", "A stand-in for boto 2's plugin loader (see boto2_shims).")
    shim.find_module = no_plugin  # type: ignore[attr-defined]
    shim.load_module = no_plugin  # type: ignore[attr-defined]
    sys.modules.setdefault("imp", shim)


def open_mimicdb(endpoint: str, bucket: str, database: str) -> MimicPeer:
    """MimicDB with its SQLite backend in ``database`` on ``bucket`` at ``endpoint``.

    Raises ImportError (mimicdb or boto missing) or whatever boto 2 raises
    when it cannot run here; the caller prints the reason and skips it.
    """
    boto2_shims()
    import mimicdb
    from boto.s3.connection import OrdinaryCallingFormat
    from mimicdb.backends.sqlite import SQLite
    from mimicdb.s3.connection import S3Connection

    meter = Meter()

    class MeteredConnection(S3Connection):  # type: ignore[misc]
        """MimicDB's connection, counting each HTTP request and the bytes of its answer.

        Requests are named by method and target: ``GET bucket`` is a listing.
        """

        def make_request(self, method: str, *args: Any, **kwargs: Any) -> Any:
            key = kwargs.get("key", args[1] if len(args) > 1 else "")
            meter.requests[f"{method} {'object' if key else 'bucket'}"] += 1
            response = super().make_request(method, *args, **kwargs)
            meter.bytes += _header_bytes(dict(response.getheaders())) + len("HTTP/1.1 200 OK\r\n")
            read = response.read

            def counted_read(*read_args: Any) -> bytes:
                data: bytes = read(*read_args)
                meter.bytes += len(data)
                return data

            response.read = counted_read
            return response

    backend = SQLite(database)
    mimicdb.MimicDB(backend)
    host, port = endpoint.split("://", 1)[1].rsplit(":", 1)
    connection = MeteredConnection(
        "testing",
        "testing",
        host=host,
        port=int(port),
        is_secure=False,
        calling_format=OrdinaryCallingFormat(),
    )
    return MimicPeer(connection, bucket, backend._sqlite, meter)
