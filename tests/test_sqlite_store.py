"""What is specific to `SQLiteStore`; the conformance suite covers the Store contract."""

from __future__ import annotations

import gc
import hashlib
import io
import multiprocessing
import os
import sqlite3
import threading
import tracemalloc
from collections.abc import Iterator
from contextlib import closing
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
from mirrorkv.stores.sqlite import INLINE_LIMIT, SCHEMA_VERSION, SQLiteStore

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
    return store._conn().execute(f"PRAGMA {name}").fetchone()[0]


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
    with closing(sqlite3.connect(path)) as raw, raw:
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
    with closing(sqlite3.connect(path)) as raw, raw:
        raw.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(MirrorKVError, match="newer"):
        SQLiteStore(path)


def test_refuses_another_applications_database(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with closing(sqlite3.connect(other)) as raw, raw:
        raw.execute("CREATE TABLE notes (body TEXT)")
    with pytest.raises(MirrorKVError, match="another application"):
        SQLiteStore(other)
    with closing(sqlite3.connect(other)) as raw, raw:  # and left it as it was
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


# -- the layout: small values inline, large ones in blob rows --------------


def _blob_rows(store: SQLiteStore) -> int:
    return cast(int, store._conn().execute("SELECT count(*) FROM blobs").fetchone()[0])


def _is_inline(store: SQLiteStore, key: str) -> bool:
    row = (
        store._conn()
        .execute("SELECT value IS NOT NULL, blob IS NULL FROM entries WHERE key = ?", (key,))
        .fetchone()
    )
    assert row[0] == row[1], row  # exactly one of the two places holds the value
    return bool(row[0])


def test_one_b_tree_for_entries(store: SQLiteStore) -> None:
    sql = (
        store._conn().execute("SELECT sql FROM sqlite_schema WHERE name = 'entries'").fetchone()[0]
    )
    assert "WITHOUT ROWID" in sql
    indexes = (
        store._conn()
        .execute("SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'entries'")
        .fetchone()[0]
    )
    assert indexes == 0
    assert _pragma(store, "recursive_triggers") == 1  # REPLACE must fire the blob trigger


@pytest.mark.parametrize("size", [INLINE_LIMIT - 1, INLINE_LIMIT, INLINE_LIMIT + 1])
def test_inline_limit_boundary(store: SQLiteStore, size: int) -> None:
    data = os.urandom(size)
    meta = store.put("k", data, metadata={"m": "1"})
    assert _is_inline(store, "k") == (size <= INLINE_LIMIT)
    assert _blob_rows(store) == (size > INLINE_LIMIT)
    assert store.get("k") == data
    assert store.head("k") == meta
    assert meta.size == size and meta.etag == hashlib.md5(data, usedforsecurity=False).hexdigest()
    assert store.get_many(["k"]) == {"k": data}
    with store.open("k") as stream:
        assert stream.read() == data
    store.put_many({"k": data})
    assert _is_inline(store, "k") == (size <= INLINE_LIMIT)
    assert store.get("k") == data
    assert store.copy("k", "c").size == size
    assert _is_inline(store, "c") == (size <= INLINE_LIMIT)
    assert store.get("c") == data
    store.delete_many(["k", "c"])
    assert _blob_rows(store) == 0


def test_large_overwrites_and_deletes_leave_no_blob_rows(store: SQLiteStore) -> None:
    big, bigger = os.urandom(INLINE_LIMIT + 1), os.urandom(2 * MIB)
    store.put("k", big)
    store.put("k", bigger, content_type="x/y")  # large over large
    assert _blob_rows(store) == 1
    store.put("k", b"small")  # small over large
    assert _blob_rows(store) == 0
    store.put_file("k", io.BytesIO(bigger))  # streamed over small
    store.put_file("k", io.BytesIO(bigger), if_match=store.head("k").etag)  # over large
    assert _blob_rows(store) == 1
    with pytest.raises(PreconditionFailed):  # a refused write adds nothing
        store.put("k", big, if_none_match="*")
    with pytest.raises(PreconditionFailed):
        store.put_file("k", io.BytesIO(bigger), if_match="nope")
    assert _blob_rows(store) == 1
    store.delete("k")
    assert _blob_rows(store) == 0
    store.put_many({"a": big, "b": big, "c": b"x"})
    store.put_many({"a": bigger, "b": b"y", "c": big})  # large, small and large again
    assert _blob_rows(store) == 2
    assert store.get_many(["a", "b", "c"]) == {"a": bigger, "b": b"y", "c": big}
    store.delete_many(["a", "b", "c", "absent"])
    assert _blob_rows(store) == 0
    assert list(store.keys()) == []


def test_bulk_load_without_triggers_only_while_no_blob_exists(store: SQLiteStore) -> None:
    store.put_many({"a": b"1", "b": b"2"})  # no blob row: the fast path, triggers off
    assert _pragma(store, "recursive_triggers") == 1  # and back on afterwards
    store.put("big", os.urandom(INLINE_LIMIT + 1))
    store.put_many({"big": b"small now", "c": b"3"})  # a blob exists: triggers stay on
    assert _blob_rows(store) == 0
    assert store.get_many(["a", "big", "c"]) == {"a": b"1", "big": b"small now", "c": b"3"}


def test_small_values_store_no_etag(store: SQLiteStore) -> None:
    meta = store.put("k", b"abc")
    stored = store._conn().execute("SELECT etag FROM entries WHERE key = 'k'").fetchone()
    assert stored == (None,)  # computed from the inline value when asked for
    assert store.head("k").etag == meta.etag == hashlib.md5(b"abc").hexdigest()
    store.put("k", b"abd", if_match=meta.etag)
    with pytest.raises(PreconditionFailed):
        store.put("k", b"abe", if_match=meta.etag)


def test_copies_leave_no_blob_rows(store: SQLiteStore) -> None:
    big = os.urandom(3 * MIB + 7)
    store.put("src", big, metadata={"m": "1"})
    store.put("dst", os.urandom(INLINE_LIMIT + 10))
    copied = store.copy("src", "dst")  # large over large: the target's blob row goes
    assert _blob_rows(store) == 2
    assert store.get("dst") == big and store.head("dst") == copied
    store.copy("src", "src")  # onto itself: the same blob row
    assert _blob_rows(store) == 2
    store.put("small", b"tiny", content_type="text/plain")
    store.copy("small", "dst")  # small over large
    assert _blob_rows(store) == 1
    assert store.get("dst") == b"tiny" and store.head("dst").content_type == "text/plain"
    store.copy("src", "small")  # large over small
    assert _blob_rows(store) == 2
    store.delete("src")
    assert store.get("small") == big  # a copy owns its own blob row
    store.delete_many(["small", "dst"])
    assert _blob_rows(store) == 0


def test_a_failed_large_write_leaves_no_blob_row(store: SQLiteStore) -> None:
    class Truncated(io.BytesIO):
        def read(self, size: int | None = -1, /) -> bytes:
            return b"" if self.tell() >= MIB else super().read(size)

    with pytest.raises(InvalidValue):
        store.put_file("k", Truncated(bytes(3 * MIB)))
    with pytest.raises(InvalidValue):  # a bad item fails the whole batch before writing
        store.put_many([("a", os.urandom(INLINE_LIMIT + 1)), ("b", "text")])  # type: ignore[list-item]
    assert _blob_rows(store) == 0
    assert list(store.keys()) == []


def test_put_many_keeps_the_order_of_repeated_keys(store: SQLiteStore) -> None:
    big = os.urandom(INLINE_LIMIT * 3)
    metas = store.put_many([("k", big), ("j", b"1"), ("k", b"small"), ("j", big)])
    assert [meta.key for meta in metas] == ["k", "j", "k", "j"]
    assert [meta.size for meta in metas] == [len(big), 1, 5, len(big)]
    assert store.get_many(["k", "j"]) == {"k": b"small", "j": big}
    assert _blob_rows(store) == 1
    assert store.head("j") == metas[3]


def test_put_many_checks_odd_batches_item_by_item(store: SQLiteStore) -> None:
    class Key(str):
        pass

    metas = store.put_many([(Key("sub"), bytearray(b"ba")), ["list", memoryview(b"mv")]])  # type: ignore[list-item]
    assert store.get_many(["sub", "list"]) == {"sub": b"ba", "list": b"mv"}
    assert [meta.size for meta in metas] == [2, 2]
    assert store.put_many([]) == []
    long_key = "é" * 512  # 1024 bytes of UTF-8
    store.put_many({long_key: b"x"})
    assert store.get(long_key) == b"x"
    for bad in ({"": b"x"}, {"a\x00b": b"x"}, {"é" * 513: b"x"}, {"ok": b"x", 5: b"y"}):
        with pytest.raises(MirrorKVError):
            store.put_many(bad)  # type: ignore[arg-type]
    assert sorted(store.keys()) == sorted(["sub", "list", long_key])


def test_default_content_type_reads_back(store: SQLiteStore) -> None:
    store.put("plain", b"x")
    store.put("typed", b"x", content_type="application/octet-stream", metadata={"a": "b"})
    store.incr("n")
    for key in ("plain", "typed", "n"):
        assert store.head(key).content_type == "application/octet-stream"
    stored = store._conn().execute("SELECT content_type FROM entries").fetchall()
    assert stored == [(None,), (None,), (None,)]  # NULL for the default: smaller rows


class _Pipe(io.RawIOBase):
    """A readable stream that cannot seek or tell its size, like a pipe."""

    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        return self._inner.readinto(buffer)


def _unseekable(data: bytes) -> IO[bytes]:
    return cast(IO[bytes], _Pipe(data))


@pytest.mark.parametrize(
    "size", [INLINE_LIMIT - 1, INLINE_LIMIT, INLINE_LIMIT + 1, MIB, MIB + 1, 2 * MIB + 3]
)
def test_streams_across_the_thresholds(store: SQLiteStore, size: int) -> None:
    data = os.urandom(size)

    meta = store.put_file("piped", _unseekable(data), content_type="x/y")
    assert meta == store.head("piped")
    assert meta.etag == hashlib.md5(data, usedforsecurity=False).hexdigest()
    assert _is_inline(store, "piped") == (size <= INLINE_LIMIT)
    with store.open("piped") as stream:
        pieces = []
        while chunk := stream.read(100_000):
            pieces.append(chunk)
        assert b"".join(pieces) == data
        stream.seek(size // 2)
        assert stream.read(10) == data[size // 2 : size // 2 + 10]
    store.put_file("seekable", io.BytesIO(data))
    assert store.get("seekable") == data
    store.delete_many(["piped", "seekable"])
    assert _blob_rows(store) == 0


def test_incr_over_a_large_value_is_refused_and_keeps_it(store: SQLiteStore) -> None:
    big = os.urandom(INLINE_LIMIT + 1)
    store.put("k", big)
    with pytest.raises(InvalidValue):
        store.incr("k")
    assert store.get("k") == big
    store.put("k", b"7" * (INLINE_LIMIT + 1))  # a large counter
    assert store.incr("k") == int(b"7" * (INLINE_LIMIT + 1)) + 1
    assert _blob_rows(store) == 0  # the counter is now inline


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

    pipe = _unseekable(data)
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


def test_a_store_dropped_without_close_closes_its_connections(path: Path) -> None:
    store = SQLiteStore(path)
    store.put("big", os.urandom(2 * MIB))
    with store.open("big") as stream:
        stream.read(1)
    conns = [store._conn(), *store._connections._idle_readers]  # the thread's, the stream's
    assert len(conns) == 2
    del store, stream
    gc.collect()
    for conn in conns:
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            conn.execute("SELECT 1")
