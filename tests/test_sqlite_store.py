"""What is specific to `SQLiteStore`; the conformance suite covers the Store contract."""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import sqlite3
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import IO, cast

import pytest

import mirrorkv
from mirrorkv import (
    Capability,
    CorruptValue,
    InvalidURL,
    InvalidValue,
    KeyNotFound,
    MirrorKVError,
    PreconditionFailed,
    StoreUnavailable,
)
from mirrorkv.stores.sqlite import SCHEMA_VERSION, SQLiteStore

MIB = 1 << 20


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "sub" / "dir" / "store.db"


@pytest.fixture
def store(path: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore(path) as opened:
        yield opened


def _pragma(store: SQLiteStore, name: str) -> object:
    # The calling thread's own connection: synchronous is a per-connection setting.
    return store._local.conn.execute(f"PRAGMA {name}").fetchone()[0]


# -- opening ---------------------------------------------------------------


def test_creates_parent_directories_and_declares_capabilities(
    store: SQLiteStore, path: Path
) -> None:
    assert path.is_file()
    assert store.path == str(path)
    assert store.capabilities & Capability.CONDITIONAL_WRITES
    assert store.capabilities & Capability.MULTI_PROCESS
    assert store.capabilities & Capability.SERVER_SIDE_COPY
    assert store.capabilities & Capability.NATIVE_COUNTERS
    assert store.capabilities & Capability.TRANSACTIONS
    assert repr(store) == f"SQLiteStore({str(path)!r})"


def test_wal_and_synchronous_normal_by_default(store: SQLiteStore, path: Path) -> None:
    assert _pragma(store, "journal_mode") == "wal"
    assert _pragma(store, "synchronous") == 1  # NORMAL
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # kept in the file


def test_fsync_means_synchronous_full(path: Path) -> None:
    with SQLiteStore(path, fsync=True) as store:
        assert _pragma(store, "synchronous") == 2  # FULL
        assert "fsync=True" in repr(store)


def test_url_options(path: Path) -> None:
    with mirrorkv.open(f"sqlite://{path}?fsync=yes&timeout=2.5") as store:
        assert isinstance(store, SQLiteStore)
        assert _pragma(store, "synchronous") == 2
        assert _pragma(store, "busy_timeout") == 2500
        store.put("k", b"v")
        url = store.url
    assert url == f"sqlite://{path}?fsync=true&timeout=2.5"
    with mirrorkv.open(url) as again:
        assert again.get("k") == b"v"
    with mirrorkv.open(f"sqlite://{path}", fsync=False) as store:
        assert isinstance(store, SQLiteStore)
        assert _pragma(store, "synchronous") == 1


@pytest.mark.parametrize(
    "query", ["colour=blue", "fsync=maybe", "timeout=soon", "timeout=-1", "fsync=1&cache=2"]
)
def test_bad_url_options(path: Path, query: str) -> None:
    with pytest.raises(InvalidURL):
        mirrorkv.open(f"sqlite://{path}?{query}")


def test_url_of_a_relative_path_and_odd_characters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with mirrorkv.open("sqlite:rel.db") as store:
        assert isinstance(store, SQLiteStore)
        assert store.url == f"sqlite://{tmp_path}/rel.db"
    assert (tmp_path / "rel.db").is_file()
    odd = tmp_path / "a dir?#%" / "x y.db"
    with SQLiteStore(odd) as store:
        store.put("k", b"v")
        url = store.url
    with mirrorkv.open(url) as again:
        assert isinstance(again, SQLiteStore)
        assert again.path == str(odd)
        assert again.get("k") == b"v"


def test_refuses_a_newer_schema(path: Path) -> None:
    SQLiteStore(path).close()
    with sqlite3.connect(path) as raw:
        raw.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(MirrorKVError, match="newer"):
        SQLiteStore(path)


def test_refuses_another_applications_database(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as raw:
        raw.execute("CREATE TABLE notes (body TEXT)")
    with pytest.raises(MirrorKVError, match="another application"):
        SQLiteStore(other)
    with sqlite3.connect(other) as raw:  # and left it as it was
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not an SQLite database at all" * 100)
    with pytest.raises(CorruptValue) as caught:
        SQLiteStore(junk)
    assert not isinstance(caught.value, sqlite3.Error)
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)
    assert str(junk) in str(caught.value)


def test_rejects_non_file_paths() -> None:
    for bad in ("", ":memory:"):
        with pytest.raises(MirrorKVError):
            SQLiteStore(bad)


# -- what the file keeps ----------------------------------------------------


def test_metadata_survives_reopen(path: Path) -> None:
    with SQLiteStore(path) as store:
        written = store.put(
            "docs/ré sumé.txt",
            "héllo".encode(),
            content_type="text/plain; charset=utf-8",
            metadata={"owner": "ann", "ünï": "cödé ✓"},
        )
        plain = store.put("plain", b"x")
    with SQLiteStore(path) as store:
        assert store.head("docs/ré sumé.txt") == written
        assert store.head("plain") == plain
        assert list(store.list()) == [written, plain]
        assert store.get("docs/ré sumé.txt") == "héllo".encode()


def test_keys_in_utf8_byte_order(store: SQLiteStore) -> None:
    keys = ["z", "é", "e", "\uffff", "\U0001f600", "a/b", "a", "a\u0101", "a\x7f", "E"]
    store.put_many({key: key.encode() for key in keys})
    expected = sorted(keys, key=lambda key: key.encode())
    assert list(store.keys()) == expected
    assert list(store) == expected
    assert [meta.key for meta in store.list()] == expected
    assert list(store.keys("a")) == ["a", "a/b", "a\x7f", "a\u0101"]
    assert list(store.keys("\uffff")) == ["\uffff"]
    assert list(store.keys(start_after="\uffff")) == ["\U0001f600"]
    assert store.get_many(["é", "\U0001f600", "absent", "é"]) == {
        "é": "é".encode(),
        "\U0001f600": "\U0001f600".encode(),
    }


def test_listing_pages_do_not_pin_a_snapshot(store: SQLiteStore) -> None:
    store.put_many({f"k{i:05d}": b"v" for i in range(300)})
    keys = store.keys()
    assert next(keys) == "k00000"
    # The half-read listing holds no statement open, so this thread's writes
    # commit and a second store on the same file sees them at once.
    store.put("new", b"1")
    with SQLiteStore(store.path) as other:
        assert other.get("new") == b"1"
    assert sum(1 for _ in keys) == 299 + 1  # "new" sorts after "k...": seen by a later page


def test_version_changes_across_stores_and_after_delete(path: Path) -> None:
    with SQLiteStore(path) as first, SQLiteStore(path) as second:
        seen = {first.put("k", b"same").version}
        seen.add(second.put("k", b"same").version)
        first.delete("k")
        seen.add(first.put("k", b"same").version)
        seen.add(second.put_many({"k": b"same"})[0].version)
        seen.add(first.copy("k", "k").version)
        assert len(seen) == 5
        assert first.head("k").version == second.head("k").version


def test_copy_of_a_large_value_streams_inside_the_database(store: SQLiteStore) -> None:
    data = os.urandom(3 * MIB + 5)
    written = store.put("big", data, content_type="x/y", metadata={"m": "1"})
    copied = store.copy("big", "copy")
    assert store.get("copy") == data
    assert (copied.etag, copied.size, copied.content_type) == (written.etag, len(data), "x/y")
    assert dict(copied.metadata) == {"m": "1"}
    assert store.head("copy") == copied
    with pytest.raises(KeyNotFound):
        store.copy("absent", "copy")


# -- streaming --------------------------------------------------------------


def _write_file(target: Path, size: int) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    chunk = os.urandom(MIB)
    with target.open("wb") as out:
        for _ in range(size // MIB):
            out.write(chunk)
            digest.update(chunk)
    return digest.hexdigest()


@pytest.mark.slow
def test_64_mib_streams_with_bounded_memory(store: SQLiteStore, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    etag = _write_file(source, 64 * MIB)
    tracemalloc.start()
    try:
        meta = store.put_file("big", source)
        _, put_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        digest = hashlib.md5(usedforsecurity=False)
        with store.open("big") as stream:
            while chunk := stream.read(65536):
                digest.update(chunk)
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert meta.size == 64 * MIB
    assert meta.etag == etag == digest.hexdigest() == store.head("big").etag
    assert put_peak < 16 * MIB, put_peak
    assert read_peak < 16 * MIB, read_peak


def test_stream_from_an_unseekable_source(store: SQLiteStore) -> None:
    data = os.urandom(3 * MIB + 1)

    class Pipe(io.RawIOBase):
        def __init__(self) -> None:
            self._inner = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            return self._inner.readinto(buffer)

    pipe = cast(IO[bytes], Pipe())
    meta = store.put_file("piped", pipe, metadata={"a": "b"}, if_none_match="*")
    assert meta.etag == hashlib.md5(data, usedforsecurity=False).hexdigest()
    assert store.get("piped") == data
    assert store.head("piped") == meta


def test_a_failed_stream_write_changes_nothing(store: SQLiteStore) -> None:
    store.put("k", b"old")

    class Truncated(io.BytesIO):
        def read(self, size: int | None = -1, /) -> bytes:
            return b"" if self.tell() >= MIB else super().read(size)

    with pytest.raises(InvalidValue, match="ended"):
        store.put_file("k", Truncated(bytes(3 * MIB)))
    with pytest.raises(PreconditionFailed):
        store.put_file("k", io.BytesIO(bytes(3 * MIB)), if_none_match="*")
    assert store.get("k") == b"old"
    assert list(store.keys()) == ["k"]


def test_open_reads_a_snapshot(store: SQLiteStore) -> None:
    old = os.urandom(3 * MIB)
    store.put("k", old)
    with store.open("k") as stream:
        head = stream.read(65536)
        store.put("k", os.urandom(3 * MIB))  # the same thread
        writer = threading.Thread(target=store.delete, args=("k",))
        writer.start()
        writer.join()
        assert "k" not in store
        assert head + stream.read() == old
        assert stream.seek(10) == 10
        assert stream.read(5) == old[10:15]
    with pytest.raises(ValueError):
        stream.read(1)


# -- errors and concurrency ---------------------------------------------------


def test_busy_database_is_store_unavailable(path: Path) -> None:
    with SQLiteStore(path, timeout=0.05) as store:
        store.put("k", b"1")
        blocker = sqlite3.connect(path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreUnavailable) as caught:
                store.put("k", b"2")
            assert caught.value.retryable
            assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
            with pytest.raises(StoreUnavailable):
                store.incr("n")
            assert store.get("k") == b"1"  # readers are not blocked in WAL mode
        finally:
            blocker.close()
        store.put("k", b"2")


def test_closed_store(path: Path) -> None:
    store = SQLiteStore(path)
    store.put("k", b"v")
    store.close()
    store.close()
    with pytest.raises(MirrorKVError, match="closed"):
        store.get("k")


def test_threads_share_a_store(store: SQLiteStore) -> None:
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(50):
                store.put(f"t{worker}/{i}", b"%d" % i)
                store.incr("shared")
                assert store.get(f"t{worker}/{i}") == b"%d" % i
            store.put_many({f"t{worker}/bulk{i}": b"b" for i in range(20)})
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.get("shared") == b"400"
    assert len(list(store.keys("t"))) == 8 * 70


def _process_worker(url: str, worker: int, barrier: object) -> None:
    with mirrorkv.open(url) as store:
        barrier.wait(60)  # type: ignore[attr-defined]
        for i in range(100):
            store.incr("counter")
            store.put(f"w{worker}/{i}", bytes([worker]) * 20_000)
            store.put("shared", bytes([worker]) * 50_000)


@pytest.mark.slow
def test_processes_write_one_file(store: SQLiteStore) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    workers = [
        context.Process(target=_process_worker, args=(store.url, n, barrier)) for n in range(4)
    ]
    for process in workers:
        process.start()
    for process in workers:
        process.join(120)
    assert [process.exitcode for process in workers] == [0, 0, 0, 0]
    assert store.get("counter") == b"400"
    shared = store.get("shared")
    assert len(shared) == 50_000 and len(set(shared)) == 1  # whole, never torn
    assert len(list(store.keys("w"))) == 400
    for worker in range(4):
        assert store.get(f"w{worker}/99") == bytes([worker]) * 20_000
