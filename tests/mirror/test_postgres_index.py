"""PostgresIndex: the index conformance suite, and what is particular to PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import random
import re
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from mirrorkv.errors import AccessDenied, InvalidURL, InvalidValue, MirrorKVError, StoreUnavailable
from mirrorkv.meta import Meta
from mirrorkv.mirror import _postgres_index_queries, postgres_index
from mirrorkv.mirror.index import (
    Usage,
    glob_literal_suffix,
    glob_regex,
    open_index,
    parent_prefixes,
)
from mirrorkv.mirror.postgres_index import PostgresIndex
from mirrorkv.stores.sql import SQLStore
from mirrorkv.testing.index_conformance import IndexConformance, IndexFactory
from services import ServiceUnavailable, free_port, skip_unavailable, unique_name
from services.sql import OwnServer, own_postgres, table_url

SECRET = "s3cret-Pa55word"


@pytest.fixture
def index_url(postgres_url: str) -> Iterator[str]:
    """A URL of a new index (its own table prefix), dropped after the test."""
    url = table_url(postgres_url, unique_name("mkvi"))
    yield url
    index = open_index(url)
    assert isinstance(index, PostgresIndex)
    index.drop_tables()


class TestPostgresIndex(IndexConformance):
    @pytest.fixture
    def index_factory(self, index_url: str) -> IndexFactory:
        return IndexFactory(
            "postgresql", lambda: open_index(index_url), url=index_url, multi_process=True
        )


def test_open_index_urls(index_url: str) -> None:
    table = index_url.rsplit("=", 1)[1]
    with open_index(index_url.replace("postgresql://", "postgres://", 1)) as index:
        assert isinstance(index, PostgresIndex)
        assert index.table == table
        assert index.url.endswith(f"?table={table}")
        assert repr(index).startswith("PostgresIndex(")
        index.record("b", Meta("k", 1, "e", 0.0))
    with open_index(index_url, pool_size="2") as again:
        assert again.du("b") == Usage(1, 1)
    with pytest.raises(InvalidURL):
        open_index(f"{index_url}&colour=red")
    with pytest.raises(InvalidURL):
        open_index(f"{index_url}&pool_size=many")
    with pytest.raises(InvalidValue):
        open_index(index_url.rsplit("=", 1)[0] + "=bad-name")
    with pytest.raises(InvalidURL):
        PostgresIndex("mysql://root@127.0.0.1/test")


def test_tables_and_collation(index_url: str, postgres_url: str) -> None:
    table = index_url.rsplit("=", 1)[1]
    PostgresIndex(postgres_url, table=table).close()
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name, collation_name FROM information_schema.columns "
            "WHERE table_name LIKE %s AND column_name IN ('key', 'prefix')",
            (f"{table}%",),
        ).fetchall()
    assert {row[0] for row in rows} == {f"{table}_entries", f"{table}_usage", f"{table}_dirty"}
    assert {row[2] for row in rows} == {"C"}


def test_refuses_other_tables(postgres_url: str) -> None:
    table = unique_name("mkvi")
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE "{table}_entries" (x int)')
        try:
            with pytest.raises(MirrorKVError, match="not made by a mirrorkv index"):
                PostgresIndex(postgres_url, table=table)
        finally:
            conn.execute(f'DROP TABLE "{table}_entries"')
    index = PostgresIndex(postgres_url, table=table)
    try:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f"UPDATE \"{table}_schema\" SET value = '99' WHERE name = 'version'")
        with pytest.raises(MirrorKVError, match="schema version 99"):
            PostgresIndex(postgres_url, table=table)
    finally:
        index.drop_tables()


def test_store_and_index_share_a_table_option(postgres_url: str) -> None:
    table = unique_name("mkv")
    store = SQLStore(postgres_url, table=table)
    try:
        with PostgresIndex(postgres_url, table=table) as index:
            store.put("k", b"v")
            index.record("b", Meta("k", 1, "e", 0.0))
            assert store.get("k") == b"v"
            assert index.du("b") == Usage(1, 1)
            index.drop_tables()
    finally:
        store.drop_tables()


def test_records_round_trip_as_given(index_url: str) -> None:
    with open_index(index_url) as index:
        listed = Meta("a/k", 0, "", 0.0, version="")
        index.record("b", listed)
        assert index.get("b", "a/k") == listed
        index.record_many("b", [Meta("a/j", 3, "x", 1.5, "text/plain", {"é": "ü"}, "")])
        assert index.get("b", "a/j") == Meta("a/j", 3, "x", 1.5, "text/plain", {"é": "ü"}, "")
        with pytest.raises(InvalidValue):
            index.record("b", Meta("a/n", 1, "e\x00", 0.0))
        with pytest.raises(InvalidValue):
            index.set_checkpoint("b", "sync", "a\x00")
        assert index.du("b", "a/") == Usage(2, 3)


def test_large_batches_and_du_children_seeks(index_url: str) -> None:
    with open_index(index_url) as index:
        keys = [f"t{t}/d{d:02}/o{o}" for t in range(3) for d in range(30) for o in range(12)]
        index.record_many("b", (Meta(k, len(k), "e", 0.0) for k in keys))
        assert index.du("b") == Usage(len(keys), sum(map(len, keys)))
        children = index.du_children("b", "t1/")
        assert list(children) == [f"t1/d{d:02}/" for d in range(30)]
        assert all(usage.objects == 12 for usage in children.values())
        assert index.ls("b", "t2/").prefixes == [f"t2/d{d:02}/" for d in range(30)]
        assert index.replace_range("b", "t0/", []) == (0, 0, 360)
        assert index.buckets() == ["b"]
        assert index.du("b", "t0/") == Usage(0, 0)
        assert "t0/" not in index.du_children("b")


# -- errors: credentials and servers that cannot be reached ---------------------------


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[OwnServer]:
    """A PostgreSQL server of this module's own, whose logins need a password."""
    try:
        with own_postgres(password=SECRET) as server:
            yield server
    except ServiceUnavailable as error:
        skip_unavailable(error)


@pytest.mark.slow
def test_bad_password_is_access_denied(private_postgres: OwnServer) -> None:
    wrong = private_postgres.url.replace(SECRET, "not-the-password")
    with pytest.raises(AccessDenied) as caught:
        open_index(wrong)
    assert "not-the-password" not in str(caught.value)
    assert SECRET not in str(caught.value)
    good = table_url(private_postgres.url, unique_name("mkvi"))
    index = open_index(good)
    try:
        assert SECRET not in repr(index)
        assert isinstance(index, PostgresIndex)
        assert SECRET not in index.url
        index.record("b", Meta("k", 1, "e", 0.0))
        assert index.du("b") == Usage(1, 1)
    finally:
        assert isinstance(index, PostgresIndex)
        index.drop_tables()


def test_unreachable_server_is_unavailable() -> None:
    url = f"postgresql://u:{SECRET}@127.0.0.1:{free_port()}/test?connect_timeout=2"
    with pytest.raises(StoreUnavailable) as caught:
        open_index(url)
    assert caught.value.retryable
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value)


def test_overlapping_batches_keep_du_exact(index_url: str) -> None:
    """Batches over the same keys in different orders, forgets and range replaces, at once."""
    failures: list[BaseException] = []
    index = open_index(index_url)

    def work(worker: int) -> None:
        rng = random.Random(worker)
        try:
            for _ in range(40):
                keys = [f"o/{rng.randrange(5)}/{rng.randrange(20)}" for _ in range(30)]
                choice = rng.random()
                if choice < 0.5:
                    index.record_many("b", [Meta(k, rng.randrange(50), "e", 0.0) for k in keys])
                elif choice < 0.8:
                    index.forget_many("b", keys)
                else:
                    prefix = f"o/{rng.randrange(5)}/"
                    chosen = {k for k in keys if k.startswith(prefix)}
                    index.replace_range("b", prefix, [Meta(k, 7, "e", 0.0) for k in sorted(chosen)])
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures
        model = {m.key: m.size for m in index.list("b")}
        for prefix in {p for key in model for p in parent_prefixes(key)} | {"", "o/"}:
            sizes = [s for k, s in model.items() if k.startswith(prefix)]
            assert index.du("b", prefix) == Usage(len(sizes), sum(sizes)), prefix
        assert sum(u.objects for u in index.du_children("b", "o/").values()) == len(model)
    finally:
        index.close()


def _model_ls(model: dict[str, int], prefix: str) -> tuple[list[str], list[str]]:
    """``(object keys, common prefixes)`` of ``ls(prefix, "/")`` over ``model``."""
    objects, prefixes = [], set()
    for key in model:
        if key.startswith(prefix):
            at = key.find("/", len(prefix))
            if at == -1:
                objects.append(key)
            else:
                prefixes.add(key[: at + 1])
    return sorted(objects), sorted(prefixes)


@pytest.mark.parametrize("seek_worth", [0, 10**9], ids=["seek-around-directories", "range-scan"])
def test_du_of_partial_prefixes_both_ways(
    index_url: str, monkeypatch: pytest.MonkeyPatch, seek_worth: int
) -> None:
    """du, ls and du_children over the subdirectories' rows, beside objects of their own or not."""
    monkeypatch.setattr(_postgres_index_queries, "SEEK_WORTH", seek_worth)
    rng = random.Random(7)
    parts = ["a", "ab", "a-b", "a0", "a.", "b", "é", "\U0001f600", ""]
    model: dict[str, int] = {}
    for _ in range(400):
        key = "/".join(rng.choice(parts) for _ in range(rng.randrange(1, 5))) or "x"
        model[key] = rng.randrange(1000)
    for _ in range(300):  # a bucket whose directories hold no objects of their own
        key = "/".join(rng.choice(parts) for _ in range(3)) + "/f"
        model[key] = rng.randrange(1000)
    with open_index(index_url) as index:
        for bucket, keys in (
            ("b", model),
            ("only", {k: s for k, s in model.items() if k[-2:] == "/f"}),
        ):
            index.record_many(bucket, [Meta(k, s, "e", 0.0) for k, s in keys.items()])
            prefixes = {key[:cut] for key in keys for cut in range(len(key) + 1)}
            for prefix in [*sorted(prefixes), "z", "a/z", "\U0010ffff", "a/\U0010ffff"]:
                sizes = [s for k, s in keys.items() if k.startswith(prefix)]
                assert index.du(bucket, prefix) == Usage(len(sizes), sum(sizes)), prefix
                listing = index.ls(bucket, prefix)
                objects, common = _model_ls(keys, prefix)
                assert [m.key for m in listing.objects] == objects, prefix
                assert listing.prefixes == common, prefix
                assert all(m.size == keys[m.key] for m in listing.objects)
                if prefix == "" or prefix.endswith("/"):
                    children = index.du_children(bucket, prefix)
                    assert sorted(k for k in children if k) == common, prefix
                    assert sum(children.values(), Usage()) == Usage(len(sizes), sum(sizes))


@pytest.mark.parametrize("own", [False, True], ids=["no-own-objects", "own-objects"])
def test_narrow_prefix_in_a_directory_of_many_subdirectories(index_url: str, own: bool) -> None:
    """Past the cap on the subdirectories read, du and ls read the gaps, still exactly."""
    model = {f"d/x{i:03}/f": i for i in range(300)}
    if own:
        # next to a subdirectory "d/x015/": before it, itself less its "/", just past it
        model.update({"d/x015.": 6, "d/x015": 7, "d/x0150": 8, "d/x0159": 8, "d/y": 9})
    with open_index(index_url) as index:
        index.record_many("b", [Meta(k, s, "e", 0.0) for k, s in model.items()])
        for prefix in ["d/x01", "d/x015", "d/x0", "d/x", "d/", "d/y", "d/x2"]:
            sizes = [s for k, s in model.items() if k.startswith(prefix)]
            assert index.du("b", prefix) == Usage(len(sizes), sum(sizes)), prefix
            listing = index.ls("b", prefix)
            objects, common = _model_ls(model, prefix)
            assert ([m.key for m in listing.objects], listing.prefixes) == (objects, common)


def _open_at_once(index_url: str, openers: int) -> None:
    """Open the index from ``openers`` threads at the same moment; none may fail."""
    barrier = threading.Barrier(openers)
    failures: list[BaseException] = []

    def open_one() -> None:
        try:
            barrier.wait()
            open_index(index_url).close()
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=open_one) for _ in range(openers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures


def test_an_index_made_before_the_depth_index_gains_it(index_url: str, postgres_url: str) -> None:
    table = index_url.rsplit("=", 1)[1]
    with open_index(index_url) as index:
        index.record_many(
            "b", [Meta(f"t{i}/d{j}/f", 1, "e", 0.0) for i in range(3) for j in range(3)]
        )
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'DROP INDEX "{table}_usage_by_depth"')  # as an index of before was made
    # Several openers at once: one builds the index, the others wait for it.
    _open_at_once(index_url, 4)
    with open_index(index_url) as index:
        assert index.du("b", "t") == Usage(9, 9)
        assert index.du_children("b", "t1/") == {f"t1/d{j}/": Usage(1, 1) for j in range(3)}
        assert index.ls("b").prefixes == ["t0/", "t1/", "t2/"]
    with psycopg.connect(postgres_url) as conn:
        found = conn.execute("SELECT to_regclass(%s)", (f'"{table}_usage_by_depth"',)).fetchone()
    assert found is not None and found[0] is not None


def test_an_index_made_before_the_suffix_index_gains_it(index_url: str, postgres_url: str) -> None:
    table = index_url.rsplit("=", 1)[1]
    keys = [f"t{i % 7}/d{i % 5}/obj{i}.csv" for i in range(400)]
    with open_index(index_url) as index:
        index.record_many("b", [Meta(k, 1, "e", 0.0) for k in keys])
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'DROP INDEX "{table}_entries_by_suffix"')  # as an index of before was made
    _open_at_once(index_url, 4)
    with psycopg.connect(postgres_url) as conn:
        found = conn.execute("SELECT to_regclass(%s)", (f'"{table}_entries_by_suffix"',))
        assert found.fetchone() != (None,)
    with open_index(index_url) as index, _suffix_paths() as paths:
        hits = [m.key for m in index.find("b", glob="*/*/obj*77.csv")]
        assert hits == sorted(k for k in keys if k.endswith("77.csv"))
        assert paths == [True]


@contextlib.contextmanager
def _suffix_paths() -> Iterator[list[bool]]:
    """Within it, a list of whether each ``find`` took the suffix index (True) or scanned."""
    taken: list[bool] = []
    original = PostgresIndex._by_suffix

    def spy(index: PostgresIndex, *args: Any) -> Any:
        rows = original(index, *args)
        taken.append(rows is not None)
        return rows

    PostgresIndex._by_suffix = spy  # type: ignore[method-assign]
    try:
        yield taken
    finally:
        PostgresIndex._by_suffix = original  # type: ignore[method-assign]


def test_a_user_who_does_not_own_the_tables_opens_it_without_the_depth_index(
    index_url: str, postgres_url: str
) -> None:
    """Building the index needs the table's owner; anyone else still reads exact answers."""
    table = index_url.rsplit("=", 1)[1]
    role = unique_name("mkvrole")
    with open_index(index_url) as index:
        index.record_many(
            "b", [Meta(f"t{i}/d{j}/f", 1, "e", 0.0) for i in range(3) for j in range(3)]
        )
        index.record("b", Meta("t1/own", 5, "e", 0.0))
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        try:
            conn.execute(f'CREATE ROLE "{role}" LOGIN')
        except psycopg.errors.InsufficientPrivilege:
            pytest.skip("this database user cannot create roles")
        try:
            conn.execute(f'DROP INDEX "{table}_usage_by_depth"')
            conn.execute(f'DROP INDEX "{table}_entries_by_suffix"')
            for suffix in ("schema", "entries", "usage", "dirty", "checkpoints"):
                conn.execute(
                    f'GRANT SELECT, INSERT, UPDATE, DELETE ON "{table}_{suffix}" TO "{role}"'
                )
            other = f"postgresql://{role}@{postgres_url.split('@', 1)[1]}"
            with PostgresIndex(other, table=table) as index:
                assert index.du("b", "t") == Usage(10, 14)
                assert index.du("b", "t1/") == Usage(4, 8)
                assert index.du_children("b", "t1/") == {
                    "": Usage(1, 5),
                    **{f"t1/d{j}/": Usage(1, 1) for j in range(3)},
                }
                listing = index.ls("b", "t1/")
                assert [m.key for m in listing.objects] == ["t1/own"]
                assert listing.prefixes == [f"t1/d{j}/" for j in range(3)]
                with _suffix_paths() as paths:  # no suffix index: find scans
                    assert [m.key for m in index.find("b", glob="*/*/f")] == [
                        f"t{i}/d{j}/f" for i in range(3) for j in range(3)
                    ]
                    assert [m.key for m in index.find("b", glob="t1/ow*")] == ["t1/own"]
                    assert [m.key for m in index.find("b", glob="**own")] == ["t1/own"]
                assert paths == []
            for name in ("usage_by_depth", "entries_by_suffix"):
                found = conn.execute("SELECT to_regclass(%s)", (f'"{table}_{name}"',))
                assert found.fetchone() == (None,)
        finally:
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')


def test_reads_use_the_depth_index(index_url: str, postgres_url: str) -> None:
    """The subdirectory reads are ranges of the depth index, not scans of every row below."""
    table = index_url.rsplit("=", 1)[1]
    with open_index(index_url) as index:
        index.record_many(
            "b", [Meta(f"t{i:02}/d{j:02}/f", 1, "e", 0.0) for i in range(30) for j in range(30)]
        )
        assert isinstance(index, PostgresIndex)
        sql = index._sql.children  # the statement under test
    with psycopg.connect(postgres_url) as conn:
        conn.execute(f'ANALYZE "{table}_usage"')
        conn.execute("SET enable_seqscan = off")
        plan = conn.execute(
            f"EXPLAIN {sql}",
            {"bucket": "b", "low": "", "level": 1, "high": _postgres_index_queries.CEILING},
        ).fetchall()
    assert f"{table}_usage_by_depth" in "\n".join(row[0] for row in plan)


def _generic_plan(conn: psycopg.Connection[Any], sql: str, args: tuple[Any, ...]) -> str:
    """The plan the index's connections would run ``sql`` with (a generic plan), as text."""
    numbers = iter(range(1, 100))
    name = unique_name("plan")
    conn.execute("SET plan_cache_mode = force_generic_plan")
    conn.execute(f"PREPARE {name} AS " + re.sub("%s", lambda _: f"${next(numbers)}", sql))
    cursor = psycopg.ClientCursor(conn)
    cursor.execute(f"EXPLAIN EXECUTE {name}({', '.join(['%s'] * len(args))})", args)
    return "\n".join(row[0] for row in cursor.fetchall())


def test_find_by_suffix_uses_the_suffix_index(index_url: str, postgres_url: str) -> None:
    """The count and the key reads are index-only scans of it; the rows read by it too."""
    table = index_url.rsplit("=", 1)[1]
    with open_index(index_url) as index:
        assert isinstance(index, PostgresIndex)
        index.record_many(
            "b",
            (
                Meta(f"t{i % 100:02}/d{i // 100 % 100:02}/o{i:06}", 1, "e", 0.0)
                for i in range(20_000)
            ),
        )
        sql = index._sql  # the statements under test
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'VACUUM ANALYZE "{table}_entries"')
        by_suffix = f"{table}_entries_by_suffix"
        count = _generic_plan(conn, sql.suffix_count, ("b", "", 8, 10**5, "b", "77", "78"))
        assert f"Index Only Scan using {by_suffix}" in count, count
        keys = _generic_plan(conn, sql.suffix_keys, ("b", "77", "78", "t7%/%77", "t7", "t8"))
        assert f"Index Only Scan using {by_suffix}" in keys, keys
        rows = _generic_plan(conn, sql.suffix_rows(" AND size >= %s"), ("b", "77", "78", "%77", 1))
        assert f"Index Scan using {by_suffix}" in rows, rows


#: Names and directories of the keys the suffix tests search: SQL's LIKE specials,
#: glob specials, multi-byte characters, look-alike endings.
_NAMES = [
    "7.csv",
    "a7.csv",
    "%7.csv",
    "_7.csv",
    "\\7.csv",
    "*7.csv",
    "?7.csv",
    "[7.csv",
    "é7.csv",
    "\U0001f6007.csv",
    "x.csv",
    "o77.csv",
    "7.csvx",
    "csv",
]
_DIRS = ["a", "ab", "a%", "a_", "b\\", "[x]", "é", "\U0001f600", "a/b", "a/b/c", ""]
#: ``(prefix, glob)`` pairs: classes, ``?``, escapes by class, ``**``, range prefixes.
_SEARCHES = [
    ("", "**.csv"),
    ("", "*/*7.csv"),
    ("", "**7.csv"),
    ("", "*%7.csv"),
    ("", "**/%7.csv"),
    ("", "**_7.csv"),
    ("", "**\\7.csv"),
    ("", "**[*]7.csv"),
    ("", "**[?]7.csv"),
    ("", "**[[]7.csv"),
    ("", "**[7.csv"),
    ("", "*/?7.csv"),
    ("", "*/[!a%]7.csv"),
    ("", "*/[a-z]7.csv"),
    ("", "**\U0001f6007.csv"),
    ("", "é/*"),
    ("", "a*/**7.csv"),
    ("", "a/b/*7.csv"),
    ("", "a%/*.csv"),
    ("", "a_/?7.csv"),
    ("", "a/*/[!x]7.csv"),
    ("a", "**o77.csv"),
    ("a/", "**7.csv"),
    ("a/b/", "a/b/*.csv"),
    ("[x]/", "[[]x]/**7.csv"),
    ("é", "**.csv"),
    ("zz", "**.csv"),
    ("", "**7.csvx"),
    ("", "**csv"),
    ("", "x.csv"),
]


def _suffix_model(rng: random.Random) -> dict[str, Meta]:
    model: dict[str, Meta] = {}
    for directory in _DIRS:
        for deeper in ("", "/q", "/r/s"):
            for name in _NAMES:
                key = "/".join(part for part in (directory + deeper, name) if part)
                if key.startswith("/"):
                    continue
                ctype = rng.choice([None, "text/csv", "application/x"])
                model[key] = Meta(
                    key,
                    rng.randrange(100),
                    "e",
                    float(rng.randrange(10)),
                    **({"content_type": ctype} if ctype else {}),
                )
    return model


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"min_size": 50},
        {"max_size": 20, "modified_after": 3.0},
        {"content_type": "text/csv"},
        {"content_type": "application/octet-stream"},
        {"regex": "7"},
    ],
    ids=["none", "min_size", "max_size-modified", "type", "default-type", "regex"],
)
def test_find_by_suffix_returns_what_the_scan_returns(
    index_url: str, monkeypatch: pytest.MonkeyPatch, filters: dict[str, Any]
) -> None:
    model = _suffix_model(random.Random(11))
    with open_index(index_url) as index:
        index.record_many("b", model.values())
        index.record_many("other", [Meta("a/x7.csv", 1, "e", 0.0)])  # another bucket, never found
        for prefix, glob in _SEARCHES:
            pattern = glob_regex(glob)
            expected = [
                meta
                for key, meta in sorted(model.items())
                if key.startswith(prefix) and pattern.fullmatch(key) and _passes(meta, filters)
            ]
            found = {}
            for way, share, shortest in (("suffix", 1e-9, 2), ("scan", 8, 10**6)):
                monkeypatch.setattr(postgres_index, "SUFFIX_SHARE", share)
                monkeypatch.setattr(postgres_index, "SUFFIX_SHORTEST", shortest)
                with _suffix_paths() as paths:
                    found[way] = list(index.find("b", prefix=prefix, glob=glob, **filters))
                assert paths == (
                    [] if way == "scan" or len(glob_literal_suffix(glob)) < 2 else [True]
                ), (
                    glob,
                    way,
                )
            assert found["suffix"] == expected, (prefix, glob)
            assert found["scan"] == expected, (prefix, glob)


def _passes(meta: Meta, filters: dict[str, Any]) -> bool:
    regex = filters.get("regex")
    return (
        meta.size >= filters.get("min_size", 0)
        and meta.size <= filters.get("max_size", 10**9)
        and meta.modified.timestamp() > filters.get("modified_after", -1.0)
        and meta.content_type == filters.get("content_type", meta.content_type)
        and (regex is None or re.search(regex, meta.key) is not None)
    )


def test_find_of_a_nul_finds_nothing(index_url: str) -> None:
    """No entry holds a NUL (text cannot): a search for one finds nothing, asking no query."""
    searches: list[tuple[dict[str, Any], list[str]]] = [
        ({"glob": "**a\x00bc"}, []),
        ({"glob": "a/\x00*"}, []),
        ({"regex": "^a/\x00"}, []),
        ({"glob": "**", "content_type": "text/\x00"}, []),
        ({"glob": "a/[!\x00]*"}, ["a/\x01", "a/bc"]),  # in a class: any one character
    ]
    with open_index(index_url) as index:
        index.record_many("b", [Meta("a/bc", 1, "e", 0.0), Meta("a/\x01", 1, "e", 0.0)])
        for search, expected in searches:
            assert [m.key for m in index.find("b", **search)] == expected, search


def test_find_scans_where_many_keys_end_so(index_url: str) -> None:
    """The suffix index is read only where the keys ending so are under an eighth of the range's
    directory; a common ending, or a short one, scans."""
    keys = [f"d{i % 4}/k{i:04}.csv" for i in range(2000)]
    with open_index(index_url) as index, _suffix_paths() as paths:
        index.record_many("b", [Meta(k, 1, "e", 0.0) for k in keys])
        for glob, way in [
            ("**.csv", False),  # every key
            ("**7.csv", True),  # a tenth of the bucket: under an eighth of ""
            ("d1/*7.csv", False),  # 200 keys end so, over an eighth of d1/'s 500
            ("d1/*77.csv", True),  # 20 keys
            ("d*/*77.csv", True),
            ("**v", False),  # one character: never tried
        ]:
            before = len(paths)
            hits = [m.key for m in index.find("b", glob=glob)]
            assert hits == sorted(k for k in keys if glob_regex(glob).fullmatch(k)), glob
            assert paths[before:] == ([way] if glob != "**v" else []), glob


@pytest.mark.slow
def test_stopped_server_then_back(private_postgres: OwnServer) -> None:
    url = table_url(private_postgres.url, unique_name("mkvi"))
    index = open_index(url)
    assert isinstance(index, PostgresIndex)
    try:
        index.record("b", Meta("a/k", 1, "e", 0.0))
        private_postgres.stop()
        try:
            calls = (
                lambda: index.du("b"),
                lambda: index.record("b", Meta("a/j", 2, "e", 0.0)),
                lambda: index.forget_many("b", ["a/k"]),
            )
            for call in calls:
                with pytest.raises(StoreUnavailable) as caught:
                    call()
                assert caught.value.retryable
                assert SECRET not in str(caught.value)
        finally:
            private_postgres.restart()
        # Back: a read reconnects on its own; the writes that failed changed nothing.
        assert index.du("b", "a/") == Usage(1, 1)
        index.record("b", Meta("a/j", 2, "e", 0.0))
        assert index.du("b") == Usage(2, 3)
    finally:
        index.drop_tables()


def test_forked_child_uses_its_own_connection(index_url: str) -> None:
    index = open_index(index_url)
    index.record("b", Meta("a/k", 1, "e", 0.0))
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            index.record("b", Meta("a/child", 2, "e", 0.0))
            index.close()  # closes the child's connections, never the parent's
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    index.record("b", Meta("a/parent", 4, "e", 0.0))  # the parent's connection still works
    assert index.du("b", "a/") == Usage(3, 7)
    index.close()
