"""What is specific to `SQLStore` on real servers; the conformance suite covers the contract.

Runs on PostgreSQL and MariaDB (see ``tests/services/sql.py`` for where the
servers come from); the stop/restart and password tests start private
servers of their own.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import random
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

import mirrorkv
from mirrorkv import (
    AccessDenied,
    InvalidURL,
    InvalidValue,
    KeyNotFound,
    MemoryStore,
    MirrorKVError,
    PreconditionFailed,
    StoreUnavailable,
)
from mirrorkv.stores.sql import INLINE_LIMIT, SCHEMA_VERSION, SQLStore
from mirrorkv.testing.conformance import ORDER_KEYS, utf8_sorted
from services import ServiceUnavailable, skip_unavailable, unique_name
from services.sql import OwnServer, own_mariadb, own_postgres, table_url

MIB = 1 << 20
SECRET = "S3cret-pw-never-shown"


@pytest.fixture(params=["postgresql", "mysql"])
def server_url(request: pytest.FixtureRequest) -> str:
    """Each server in turn (its URL without a table)."""
    fixture = "postgres_url" if request.param == "postgresql" else "mysql_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
def url(server_url: str) -> Iterator[str]:
    """A store URL with a table of its own, dropped afterwards."""
    store_url = table_url(server_url, unique_name("mkv"))
    yield store_url
    store = SQLStore(store_url.split("?")[0], table=store_url.rsplit("=", 1)[1])
    store.drop_tables()


@pytest.fixture
def store(url: str) -> Iterator[SQLStore]:
    opened = mirrorkv.open(url)
    assert isinstance(opened, SQLStore)
    yield opened
    opened.close()


def _raw_execute(
    store: SQLStore, sql: str, params: tuple[object, ...] = ()
) -> list[tuple[object, ...]]:
    """Run SQL on a connection of the store's own engine (for inspecting the tables)."""
    lease = store._leases.get()
    lease.cursor.execute(sql, params or None)
    try:
        return list(lease.cursor.fetchall())
    except Exception:
        return []


# -- order ------------------------------------------------------------------------


def test_listing_is_in_utf8_byte_order(store: SQLStore) -> None:
    keys = [*ORDER_KEYS, "é/1", "é/2", "éa", "\U0010ffff", "a\U0010ffff", "\u00ff", "\u0100"]
    store.put_many([(key, key.encode()) for key in keys])
    assert list(store.keys()) == utf8_sorted(keys)
    assert [meta.key for meta in store.list()] == utf8_sorted(keys)
    assert list(store.keys("é")) == utf8_sorted(["é", "é/1", "é/2", "éa"])
    assert list(store.keys("é/")) == ["é/1", "é/2"]
    assert list(store.keys("a", start_after="a0")) == utf8_sorted(
        [key for key in keys if key.startswith("a") and key.encode() > b"a0"]
    )
    listing = store.ls("é")
    assert [meta.key for meta in listing.objects] == ["é", "éa"]
    assert listing.prefixes == ["é/"]


def test_listing_pages_through_many_keys(store: SQLStore) -> None:
    keys = [f"k/{i:05d}" for i in range(2500)]
    store.put_many([(key, b"v") for key in keys])
    assert list(store.keys("k/")) == keys
    assert list(store.keys("k/", start_after="k/01000"))[:2] == ["k/01001", "k/01002"]


# -- values, counters, layout -----------------------------------------------------------


def test_large_values_leave_no_orphan_chunks(store: SQLStore) -> None:
    chunks = store.table + "_chunks"
    big = random.Random(3).randbytes(3 * MIB + 5)
    store.put("k", big)
    assert _raw_execute(store, f"SELECT COUNT(*) FROM {chunks}") == [(4,)]
    store.put("k", b"small")  # an upsert over a large value
    assert _raw_execute(store, f"SELECT COUNT(*) FROM {chunks}") == [(0,)]
    store.put("k", big, content_type="x/y")
    store.put("k", big)  # large over large
    assert _raw_execute(store, f"SELECT COUNT(*) FROM {chunks}") == [(4,)]
    store.put_many([("k", b"tiny"), ("j", big)])
    assert store.get("k") == b"tiny"
    assert store.get("j") == big
    assert _raw_execute(store, f"SELECT COUNT(*) FROM {chunks}") == [(4,)]
    store.delete_many(["j", "absent"])
    store.put("k", big)
    store.delete("k")
    assert _raw_execute(store, f"SELECT COUNT(*) FROM {chunks}") == [(0,)]


def test_inline_limit_boundary(store: SQLStore) -> None:
    for size in (INLINE_LIMIT - 1, INLINE_LIMIT, INLINE_LIMIT + 1):
        data = random.Random(size).randbytes(size)
        meta = store.put("k", data)
        assert store.get("k") == data
        assert store.head("k").etag == meta.etag == hashlib.md5(data).hexdigest()
        with store.open("k") as stream:
            assert stream.read() == data


def test_incr_matches_other_stores(store: SQLStore) -> None:
    memory = MemoryStore()
    for target in (store, memory):
        target.put("text", b"12a")
        target.put("n", b"-007", content_type="text/plain", metadata={"a": "1"})
    assert store.incr("n", 10) == memory.incr("n", 10) == 3
    assert store.get("n") == memory.get("n") == b"3"
    assert store.head("n").content_type == "text/plain"
    assert store.head("n").metadata == {"a": "1"}
    assert store.incr("huge", 10**30, initial=10**30) == 2 * 10**30
    assert store.get("huge") == b"%d" % (2 * 10**30)
    with pytest.raises(InvalidValue) as ours:
        store.incr("text")
    with pytest.raises(InvalidValue) as theirs:
        memory.incr("text")
    assert str(ours.value) == str(theirs.value)
    store.put("big", b"x" * (INLINE_LIMIT + 1))
    with pytest.raises(InvalidValue):
        store.incr("big")


# -- processes -------------------------------------------------------------------------


def cas_worker(url: str, keys: list[str], rounds: int) -> None:
    """Add 1 to each key ``rounds`` times with conditional writes, retrying on conflicts."""
    with mirrorkv.open(url) as store:
        for _ in range(rounds):
            for key in keys:
                while True:
                    meta = store.head(key)
                    value = int(store.get(key))
                    try:
                        store.put(key, b"%d" % (value + 1), if_match=meta.etag)
                        break
                    except PreconditionFailed:
                        continue


def test_two_processes_conditional_writes(store: SQLStore, url: str) -> None:
    keys = ["shared/a", "shared/b", "shared/big"]
    for key in keys[:2]:
        store.put(key, b"0")
    # One key holds a large value first (int() ignores the spaces): the first write
    # over it goes through the locked path.
    store.put("shared/big", b"0" + b" " * INLINE_LIMIT)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=cas_worker, args=(url, keys, 40)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(180)
    assert [worker.exitcode for worker in workers] == [0, 0]
    assert [store.get(key) for key in keys] == [b"80"] * 3


def test_if_none_match_from_threads_creates_once(store: SQLStore) -> None:
    import threading

    wins: list[int] = []
    barrier = threading.Barrier(6)

    def create(index: int) -> None:
        barrier.wait()
        try:
            store.put("once", b"%d" % index, if_none_match="*")
            wins.append(index)
        except PreconditionFailed:
            pass

    threads = [threading.Thread(target=create, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(wins) == 1
    assert store.get("once") == b"%d" % wins[0]


# -- streaming ----------------------------------------------------------------------------


class _Unseekable(io.RawIOBase):
    """A stream of ``size`` pseudo-random bytes that cannot seek (nor tell its size)."""

    def __init__(self, size: int) -> None:
        self._left = size
        self._rng = random.Random(64)
        self.md5 = hashlib.md5()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        count = min(len(buffer), self._left, 256 * 1024)
        data = self._rng.randbytes(count)
        self.md5.update(data)
        buffer[:count] = data
        self._left -= count
        return count


@pytest.mark.slow
def test_64mib_value_streams_in_bounded_memory(store: SQLStore) -> None:
    size = 64 * MIB
    source = _Unseekable(size)
    tracemalloc.start()
    try:
        meta = store.put_file("big", io.BufferedReader(source))
        peak_in = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        digest, seen = hashlib.md5(), 0
        with store.open("big") as stream:
            while chunk := stream.read(64 * 1024):
                digest.update(chunk)
                seen += len(chunk)
        peak_out = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (meta.size, meta.etag) == (size, source.md5.hexdigest())
    assert (seen, digest.hexdigest()) == (size, meta.etag)
    assert peak_in < 12 * MIB, f"put_file peaked at {peak_in / MIB:.1f} MiB"
    assert peak_out < 12 * MIB, f"open/read peaked at {peak_out / MIB:.1f} MiB"


def test_open_reads_a_snapshot(store: SQLStore) -> None:
    old = random.Random(1).randbytes(3 * MIB)
    store.put("k", old)
    with store.open("k") as stream:
        first = stream.read(MIB)
        store.put("k", b"new")
        store.delete("k")
        rest = stream.read()
    assert first + rest == old
    with pytest.raises(KeyNotFound):
        store.open("k")


# -- servers that go away, credentials ------------------------------------------------


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[OwnServer]:
    """A PostgreSQL server of this module's own, whose logins need a password."""
    try:
        with own_postgres(password=SECRET) as server:
            yield server
    except ServiceUnavailable as error:
        skip_unavailable(error)


def _check_stop_and_restart(server: OwnServer) -> None:
    url = table_url(server.url, unique_name("mkv"))
    store = mirrorkv.open(url)
    try:
        big = random.Random(5).randbytes(3 * MIB)
        store.put("big", big)
        store.put("small", b"v")
        stream = store.open("big")
        assert stream.read(10) == big[:10]
        server.stop()
        try:
            with pytest.raises(StoreUnavailable) as caught:
                stream.read()  # mid-operation: the connection under the stream is gone
            assert SECRET not in str(caught.value)
            stream.close()
            for call in (lambda: store.get("small"), lambda: store.put("x", b"1")):
                with pytest.raises(StoreUnavailable) as caught:
                    call()
                assert caught.value.retryable
                assert SECRET not in str(caught.value)
        finally:
            server.restart()
        # Back: the first call reconnects (reads retry once on a fresh connection).
        assert store.get("small") == b"v"
        store.put("x", b"2")
        assert store.get("big") == big
        assert store.incr("n") == 1
    finally:
        store.close()
        SQLStore(server.url, table=url.rsplit("=", 1)[1]).drop_tables()


@pytest.mark.slow
def test_postgres_stopped_mid_operation_then_back(private_postgres: OwnServer) -> None:
    _check_stop_and_restart(private_postgres)


@pytest.mark.slow
def test_mariadb_stopped_mid_operation_then_back() -> None:
    try:
        with own_mariadb() as server:
            _check_stop_and_restart(server)
    except ServiceUnavailable as error:
        skip_unavailable(error)


def _secret_free(error: BaseException) -> None:
    """Neither the error nor anything chained to it shows the password."""
    seen: BaseException | None = error
    while seen is not None:
        assert SECRET not in str(seen) and SECRET not in repr(seen)
        seen = seen.__cause__ or seen.__context__


def test_postgres_password_redacted_and_bad_password_clear(private_postgres: OwnServer) -> None:
    table = unique_name("mkv")
    good = table_url(private_postgres.url, table)
    assert SECRET in good
    with mirrorkv.open(good) as store:
        store.put("k", b"v")
        assert SECRET not in repr(store)
        assert SECRET not in store.url
        assert "***" in store.url
        engine = store._engine  # SQLAlchemy masks it as well
        assert SECRET not in repr(engine) and SECRET not in str(engine.url)
    bad = good.replace(SECRET, "wrong-" + SECRET[::-1])
    with pytest.raises(AccessDenied) as caught:
        mirrorkv.open(bad)
    assert not caught.value.retryable
    assert "credentials" in str(caught.value)
    assert "password authentication failed" in str(caught.value)
    _secret_free(caught.value)
    assert SECRET[::-1] not in str(caught.value)
    SQLStore(private_postgres.url, table=table).drop_tables()


def test_mysql_bad_password_clear(mysql_url: str) -> None:
    user = unique_name("u")
    admin = SQLStore(mysql_url, table=unique_name("mkv"))
    try:
        for host in ("%", "localhost"):
            _raw_execute(admin, "CREATE USER %s@%s IDENTIFIED BY %s", (user, host, SECRET))
        host_part = mysql_url.split("@", 1)[1]
        bad = f"mysql://{user}:wrong-{SECRET[::-1]}@{host_part}"
        with pytest.raises(AccessDenied) as caught:
            mirrorkv.open(bad)
        assert "credentials" in str(caught.value)
        assert "Access denied" in str(caught.value)
        _secret_free(caught.value)
        assert SECRET[::-1] not in str(caught.value)
    finally:
        for host in ("%", "localhost"):
            _raw_execute(admin, "DROP USER IF EXISTS %s@%s", (user, host))
        admin.drop_tables()


def test_unreachable_server_is_unavailable() -> None:
    from services import free_port

    port = free_port()
    with pytest.raises(StoreUnavailable) as caught:
        mirrorkv.open(f"postgresql://u:{SECRET}@127.0.0.1:{port}/db?connect_timeout=2")
    _secret_free(caught.value)
    with pytest.raises(StoreUnavailable) as caught:
        mirrorkv.open(f"mysql://u:{SECRET}@127.0.0.1:{port}/db?connect_timeout=2")
    _secret_free(caught.value)


# -- schema, table names, options --------------------------------------------------------


def test_schema_version_mismatch_is_refused(store: SQLStore, url: str) -> None:
    meta_table = store.table + "_meta"
    _raw_execute(store, f"UPDATE {meta_table} SET value = '99' WHERE name = 'schema_version'")
    with pytest.raises(MirrorKVError, match=f"schema version 99.*version {SCHEMA_VERSION}"):
        mirrorkv.open(url)
    _raw_execute(store, f"UPDATE {meta_table} SET value = %s", (str(SCHEMA_VERSION),))
    mirrorkv.open(url).close()


def test_foreign_table_is_refused(server_url: str) -> None:
    table = unique_name("foreign")
    helper = SQLStore(server_url, table=unique_name("mkv"))
    try:
        _raw_execute(helper, f"CREATE TABLE {table} (id INTEGER PRIMARY KEY)")
        with pytest.raises(MirrorKVError, match="not a mirrorkv table"):
            SQLStore(server_url, table=table)
        # Nothing was created beside it.
        with pytest.raises(MirrorKVError, match="not a mirrorkv table"):
            SQLStore(server_url, table=table)
    finally:
        _raw_execute(helper, f"DROP TABLE IF EXISTS {table}")
        helper.drop_tables()


@pytest.mark.parametrize(
    "name",
    [
        "",
        "1abc",
        "a-b",
        "a b",
        "kv; DROP TABLE users",
        'kv"; DROP TABLE users; --',
        "kv`",
        "é",
        "x" * 49,
        None,
        5,
    ],
)
def test_table_name_is_validated(server_url: str, name: object) -> None:
    with pytest.raises(InvalidValue):
        SQLStore(server_url, table=name)  # type: ignore[arg-type]


def test_table_name_in_url_is_validated(server_url: str) -> None:
    with pytest.raises(InvalidValue):
        mirrorkv.open(f"{server_url}?table=kv%3B%20DROP%20TABLE%20users")


def test_from_url_options(server_url: str) -> None:
    table = unique_name("mkv")
    options = "pool_size=2&max_overflow=1&pool_timeout=5&connect_timeout=3"
    with mirrorkv.open(f"{server_url}?table={table}&{options}") as store:
        assert isinstance(store, SQLStore)
        assert store.table == table
        store.put("k", b"v")
    with mirrorkv.open(server_url, table=table) as store:
        assert store.get("k") == b"v"
    with pytest.raises(InvalidURL, match=r"bogus.*accepted: table, pool_size"):
        mirrorkv.open(f"{server_url}?table={table}&bogus=1")
    with pytest.raises(InvalidURL, match="pool_size"):
        mirrorkv.open(f"{server_url}?pool_size=many")
    with pytest.raises(InvalidValue, match="pool_size"):
        mirrorkv.open(f"{server_url}?pool_size=0")
    SQLStore(server_url, table=table).drop_tables()


def test_schemes_map_to_drivers(postgres_url: str, mysql_url: str) -> None:
    table = unique_name("mkv")
    for url in (
        postgres_url.replace("postgresql://", "postgres://", 1),
        mysql_url.replace("mysql://", "mariadb://", 1),
    ):
        with mirrorkv.open(url, table=table) as store:
            store.put("k", b"v")
            assert store.get("k") == b"v"
            assert repr(store).startswith("SQLStore(")
        SQLStore(url, table=table).drop_tables()
    with pytest.raises(InvalidURL):
        SQLStore("sqlite:///x.db")


def test_pool_bounds_threads(server_url: str) -> None:
    import threading

    table = unique_name("mkv")
    with mirrorkv.open(
        server_url, table=table, pool_size=1, max_overflow=0, pool_timeout=1
    ) as store:
        store.put("k", b"v")  # this thread holds the only connection
        errors: list[BaseException] = []

        def other() -> None:
            try:
                store.get("k")
            except BaseException as error:
                errors.append(error)

        thread = threading.Thread(target=other)
        started = time.monotonic()
        thread.start()
        thread.join()
        assert isinstance(errors[0], StoreUnavailable)
        assert "no free connection" in str(errors[0])
        assert time.monotonic() - started < 10
    SQLStore(server_url, table=table).drop_tables()


def test_closed_store_refuses_calls(store: SQLStore) -> None:
    store.put("k", b"v")
    store.close()
    store.close()
    with pytest.raises(MirrorKVError, match="closed"):
        store.get("k")


def test_keys_are_parameters_not_sql(store: SQLStore) -> None:
    nasty = ["'; DROP TABLE x; --", '"', "\\", "%s", "%(x)s", "a'b", "`"]
    store.put_many([(key, key.encode()) for key in nasty])
    assert store.get_many(nasty) == {key: key.encode() for key in nasty}
    assert list(store.keys()) == utf8_sorted(nasty)
    for key in nasty:
        store.put(key, b"x", if_match=store.head(key).etag)
        assert store.incr(key + "n") == 1
    store.delete_many(nasty)
    assert list(store.keys()) == utf8_sorted(key + "n" for key in nasty)


def test_big_batches(store: SQLStore) -> None:
    items = [(f"b/{i:05d}", b"%d" % i) for i in range(5000)]
    store.put_many(items)
    found = store.get_many([key for key, _ in items] + ["absent"])
    assert found == dict(items)
    store.delete_many([key for key, _ in items[:2500]])
    assert len(list(store.keys("b/"))) == 2500


def test_put_file_paths(store: SQLStore, tmp_path: Path) -> None:
    data = random.Random(9).randbytes(INLINE_LIMIT * 2 + 3)
    (tmp_path / "f").write_bytes(data)
    meta = store.put_file("f", tmp_path / "f", content_type="a/b", metadata={"x": "y"})
    assert meta == store.head("f")
    assert store.get("f") == data
    store.get_file("f", tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == data
