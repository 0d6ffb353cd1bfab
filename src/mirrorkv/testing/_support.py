"""Helpers shared by the conformance suite's test classes."""

from __future__ import annotations

import hashlib
import io
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ..meta import Meta
from ..store import Store
from . import StoreFactory

__all__ = [
    "BIG_VALUE",
    "MIB",
    "READ_SIZE",
    "STREAMING_PEAK_LIMIT",
    "key_calls",
    "reopen_or_skip",
    "run_threads",
    "same_value",
    "write_random_file",
]

#: One mebibyte.
MIB = 1 << 20
#: The size of the large value streamed in and out.
BIG_VALUE = 64 * MIB
#: The read size used when streaming it out.
READ_SIZE = 64 * 1024
#: Peak traced memory allowed while a 64 MiB value streams through a bounded store.
STREAMING_PEAK_LIMIT = 16 * MIB


def key_calls(store: Store, key: Any) -> list[tuple[str, Callable[[], object]]]:
    """Every public method that takes a key (or prefix), called with ``key``."""
    return [
        ("get", lambda: store.get(key)),
        ("put", lambda: store.put(key, b"v")),
        ("delete", lambda: store.delete(key)),
        ("head", lambda: store.head(key)),
        ("in", lambda: key in store),
        ("open", lambda: store.open(key).close()),
        ("put_file", lambda: store.put_file(key, io.BytesIO(b"v"))),
        ("get_file", lambda: store.get_file(key, io.BytesIO())),
        ("copy from", lambda: store.copy(key, "valid")),
        ("copy to", lambda: store.copy("valid", key)),
        ("get_many", lambda: store.get_many(["valid", key])),
        ("put_many", lambda: store.put_many([("other", b"v"), (key, b"v")])),
        ("delete_many", lambda: store.delete_many(["valid", key])),
        ("incr", lambda: store.incr(key)),
        ("decr", lambda: store.decr(key)),
        ("url_for", lambda: store.url_for(key)),
        ("keys", lambda: list(store.keys(key))),
        ("list", lambda: list(store.list(key))),
        ("ls", lambda: store.ls(key)),
    ]


def same_value(a: Meta, b: Meta) -> bool:
    """Whether two records describe the same write (``modified`` may differ in precision)."""
    fields = ("key", "size", "etag", "content_type", "version")
    return all(getattr(a, f) == getattr(b, f) for f in fields) and dict(a.metadata) == dict(
        b.metadata
    )


def reopen_or_skip(factory: StoreFactory, store: Store) -> Store:
    """Close ``store`` and open it again from ``factory``; skip unless it is persistent."""
    if not factory.persistent:
        pytest.skip(f"{factory.name} is not persistent")
    store.close()
    return factory.open()


def run_threads(work: Callable[[int], None], count: int) -> None:
    """Run ``work(i)`` in ``count`` threads and re-raise the first failure."""
    failures: list[BaseException] = []

    def run(index: int) -> None:
        try:
            work(index)
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


def write_random_file(path: Path, size: int) -> tuple[str, str]:
    """Fill ``path`` with ``size`` random bytes; return their MD5 and SHA-256 hex digests."""
    rng = random.Random(64)
    md5, sha = hashlib.md5(), hashlib.sha256()
    with open(path, "wb") as out:
        for _ in range(size // MIB):
            block = rng.randbytes(MIB)
            md5.update(block)
            sha.update(block)
            out.write(block)
    return md5.hexdigest(), sha.hexdigest()
