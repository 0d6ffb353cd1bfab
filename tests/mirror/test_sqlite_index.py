"""SQLiteIndex: the index conformance suite, and what is particular to SQLite."""

from __future__ import annotations

import os
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mirrorkv.errors import InvalidURL, InvalidValue, MirrorKVError, StoreUnavailable
from mirrorkv.meta import Meta
from mirrorkv.mirror import SQLiteIndex, Usage, _sqlite_index_usage, open_index
from mirrorkv.mirror.index import glob_prefilter, glob_regex, literal_prefix, regex_literal_prefix
from mirrorkv.stores.sqlite import SQLiteStore
from mirrorkv.testing.index_conformance import IndexConformance, IndexFactory


class TestSQLiteIndex(IndexConformance):
    @pytest.fixture
    def index_factory(self, tmp_path: Path) -> IndexFactory:
        path = tmp_path / "index.db"
        return IndexFactory(
            "sqlite", lambda: SQLiteIndex(path), url=f"sqlite://{path}", multi_process=True
        )


def test_open_index_urls(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "i.db"
    with open_index(f"sqlite://{path}?timeout=5") as index:
        assert isinstance(index, SQLiteIndex)
        assert index.path == str(path)
        assert index.url == f"sqlite://{path}?timeout=5"
        index.record("b", Meta("k", 1, "e", 0.0))
    with open_index(f"sqlite://{path}") as again:
        assert again.du("b") == Usage(1, 1)
    with pytest.raises(InvalidURL):
        open_index(f"sqlite://{path}?colour=red")
    with pytest.raises(InvalidURL):
        open_index("ftp://localhost/0")
    with pytest.raises(InvalidValue):
        SQLiteIndex(":memory:")


def test_refuses_other_databases(tmp_path: Path) -> None:
    store_path = tmp_path / "store.db"
    SQLiteStore(store_path).close()
    with pytest.raises(MirrorKVError, match="not a mirrorkv metadata index"):
        SQLiteIndex(store_path)
    index_path = tmp_path / "index.db"
    SQLiteIndex(index_path).close()
    with pytest.raises(MirrorKVError):
        SQLiteStore(index_path).put("k", b"v")


def test_schema_is_without_rowid_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "index.db"
    SQLiteIndex(path).close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        sql = dict(conn.execute("SELECT name, sql FROM sqlite_schema WHERE type = 'table'"))
    conn.close()
    assert set(sql) == {"entries", "aggregates", "dirty", "checkpoints"}
    assert all("WITHOUT ROWID" in text for text in sql.values())


def test_deferred_fields_are_read_once_when_recorded(tmp_path: Path) -> None:
    from mirrorkv.meta import Details

    calls = []

    def fetch() -> Meta:
        calls.append(1)
        return Meta("k", 3, "e", 1.0, "text/plain", {"a": "b"}, "v9")

    details = Details(fetch)
    listed = Meta("k", 3, "e", 1.0, details, details, details)
    with SQLiteIndex(tmp_path / "i.db") as index:
        index.record("b", listed)
        assert calls == [1]
        assert index.get("b", "k") == Meta("k", 3, "e", 1.0, "text/plain", {"a": "b"}, "v9")


def test_forked_child_uses_its_own_connection(tmp_path: Path) -> None:
    index = SQLiteIndex(tmp_path / "i.db")
    index.record("b", Meta("a/k", 1, "e", 0.0))
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            index.record("b", Meta("a/child", 2, "e", 0.0))
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert index.du("b", "a/") == Usage(2, 3)
    index.close()


def test_pattern_helpers() -> None:
    assert literal_prefix("logs/2024/*.gz") == "logs/2024/"
    assert literal_prefix("plain") == "plain"
    assert regex_literal_prefix(r"^logs/2024\.x") == "logs/2024.x"
    assert regex_literal_prefix(r"^logs/ab*") == "logs/a"
    assert regex_literal_prefix(r"^a|b") == ""
    assert regex_literal_prefix(r"logs") == ""
    assert glob_regex("a/*/c").fullmatch("a/b/c")
    assert not glob_regex("a/*/c").fullmatch("a/b/x/c")
    assert glob_regex("a/**/c").fullmatch("a/b/x/c")
    assert glob_regex("a[.]b").fullmatch("a.b")
    assert glob_regex("a[").fullmatch("a[")
    assert glob_regex("[]]").fullmatch("]")
    with pytest.raises(InvalidValue):
        glob_regex("[z-a]")


_PATTERN_TEXT = st.text(alphabet="ab/*?[]!%_\\-é", max_size=8)


@settings(max_examples=400, deadline=None)
@given(glob=_PATTERN_TEXT, key=st.text(alphabet="ab/*?[]!%_\\-é", min_size=1, max_size=8))
def test_glob_prefilter_keeps_every_match(glob: str, key: str) -> None:
    """What the SQL prefilter drops, the exact glob would drop too (GLOB and LIKE alike)."""
    try:
        if not glob_regex(glob).fullmatch(key):
            return
    except InvalidValue:  # a reversed range in a class
        return
    conn = sqlite3.connect(":memory:")
    conn.execute("PRAGMA case_sensitive_like = ON")
    pattern = glob_prefilter(glob, "glob")
    if pattern is not None:
        assert conn.execute("SELECT ? GLOB ?", (key, pattern)).fetchone()[0] == 1, pattern
    like = glob_prefilter(glob, "like")
    if like is not None:
        matched = conn.execute("SELECT ? LIKE ? ESCAPE '\\'", (key, like)).fetchone()[0]
        assert matched == 1, like


def test_glob_prefilter_drops_what_it_can() -> None:
    assert glob_prefilter("*/obj*7.csv", "glob") == "*/obj*7.csv"
    assert glob_prefilter("*/obj*7.csv", "like") == "%/obj%7.csv"
    assert glob_prefilter("a[!x]?**z", "glob") == "a??*z"
    assert glob_prefilter("50%_[*]*", "like") == "50\\%\\__%"
    assert glob_prefilter("x*[?]", "glob") == "x*?"
    assert glob_prefilter("logs/*", "glob") is None  # the key range already is the filter
    with pytest.raises(ValueError):
        glob_prefilter("*", "regex")


def test_busy_writer_times_out_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "i.db"
    with SQLiteIndex(path, timeout=0.1) as index:
        index.record("b", Meta("a/k", 1, "e", 0.0))
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreUnavailable):
                index.record("b", Meta("a/other", 5, "e", 0.0))
            assert index.du("b", "a/") == Usage(1, 1)  # readers are not blocked
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        index.record("b", Meta("a/other", 5, "e", 0.0))
        assert index.du("b", "a/") == Usage(2, 6)


@pytest.mark.parametrize("seek_worth", [0, 10**9], ids=["seek-around-directories", "range-scan"])
def test_du_of_partial_prefixes_both_ways(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seek_worth: int
) -> None:
    monkeypatch.setattr(_sqlite_index_usage, "SEEK_WORTH", seek_worth)
    rng = random.Random(7)
    parts = ["a", "ab", "a-b", "b", "é", "\U0001f600", ""]
    model: dict[str, int] = {}
    for _ in range(400):
        key = "/".join(rng.choice(parts) for _ in range(rng.randrange(1, 5))) or "x"
        model[key] = rng.randrange(1000)
    for _ in range(300):  # a bucket whose directories hold no objects of their own
        key = "only/" + "/".join(rng.choice(parts) for _ in range(3)) + "/f"
        model[key] = rng.randrange(1000)
    with SQLiteIndex(tmp_path / "i.db") as index:
        index.record_many("b", [Meta(k, s, "e", 0.0) for k, s in model.items()])
        prefixes = {key[:cut] for key in model for cut in range(1, len(key) + 1)}
        for prefix in [*sorted(prefixes), "z", "a/z", "\U0010ffff"]:
            sizes = [s for k, s in model.items() if k.startswith(prefix)]
            assert index.du("b", prefix) == Usage(len(sizes), sum(sizes)), prefix


def test_an_index_made_before_the_depth_index_gains_it(tmp_path: Path) -> None:
    path = tmp_path / "i.db"
    with SQLiteIndex(path) as index:
        index.record_many(
            "b", [Meta(f"t{i}/d{j}/f", 1, "e", 0.0) for i in range(3) for j in range(3)]
        )
    old = sqlite3.connect(path, isolation_level=None)
    old.execute("DROP INDEX aggregates_by_depth")  # as a file of the first schema was made
    old.close()
    with SQLiteIndex(path) as index:
        assert index.du("b", "t") == Usage(9, 9)
        assert index.du_children("b", "t1/") == {f"t1/d{j}/": Usage(1, 1) for j in range(3)}
    check = sqlite3.connect(path)
    names = [row[0] for row in check.execute("SELECT name FROM sqlite_schema WHERE type='index'")]
    check.close()
    assert "aggregates_by_depth" in names


def _reference_find(
    model: dict[str, int], glob: str, prefix: str = "", min_size: int = 0
) -> list[str]:
    pattern = glob_regex(glob)
    return sorted(
        (
            k
            for k, size in model.items()
            if k.startswith(prefix) and pattern.fullmatch(k) and size >= min_size
        ),
        key=str.encode,
    )


def _suffix_paths(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """A list of whether each later ``find`` took the suffix index (True) or scanned."""
    taken: list[bool] = []
    by_suffix = SQLiteIndex._by_suffix

    def spy(self: SQLiteIndex, *args: Any) -> Any:
        rows = by_suffix(self, *args)
        taken.append(rows is not None)
        return rows

    monkeypatch.setattr(SQLiteIndex, "_by_suffix", spy)
    return taken


def test_find_through_the_suffix_index_matches_a_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(11)
    endings = ["7.csv", "1.csv", ".json", "é.txt", "x", "%_.log", "[a].gz"]
    endings += [f"{n}.bin" for n in range(12)]  # so that each ending above is rare enough
    model = {}
    for i in range(3000):
        top = rng.choice(["p0", "p1", "q"])
        model[f"{top}{i % 7}/{'sub/' * (i % 2)}obj{i:05d}{rng.choice(endings)}"] = i
    taken = _suffix_paths(monkeypatch)
    with SQLiteIndex(tmp_path / "i.db") as index:
        index.record_many("b", [Meta(k, s, "e", 0.0) for k, s in model.items()])
        for glob, prefix, min_size in [
            ("*/obj*7.csv", "", 0),
            ("**7.csv", "", 0),
            ("p1*/obj*7.csv", "", 0),
            ("p0*/**é.txt", "", 0),
            ("*/obj*[0-4]7.csv", "", 1000),
            ("**%_.log", "q", 0),
            ("**[[]a].gz", "p0", 0),
            ("**x", "p13/", 0),
            ("*/*.json", "", 2000),
            ("**y.csv", "", 0),  # no key ends so
            ("**.bin", "", 0),  # most keys end so: the range is scanned
        ]:
            found = [m.key for m in index.find("b", glob=glob, prefix=prefix, min_size=min_size)]
            assert found == _reference_find(model, glob, prefix, min_size), (glob, prefix)
    assert taken.count(True) >= 6 and False in taken, taken  # both ways were exercised


def test_an_index_of_schema_1_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path, isolation_level=None)
    old.executescript(
        """
        CREATE TABLE entries (
            bucket TEXT NOT NULL, key TEXT NOT NULL, size INTEGER NOT NULL, etag TEXT NOT NULL,
            modified REAL NOT NULL, content_type TEXT, metadata TEXT, version TEXT NOT NULL,
            PRIMARY KEY (bucket, key)) WITHOUT ROWID;
        CREATE TABLE aggregates (
            bucket TEXT NOT NULL, prefix TEXT NOT NULL,
            objects INTEGER NOT NULL, bytes INTEGER NOT NULL,
            PRIMARY KEY (bucket, prefix)) WITHOUT ROWID;
        CREATE TABLE dirty (
            bucket TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (bucket, key)) WITHOUT ROWID;
        CREATE TABLE checkpoints (
            bucket TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL,
            PRIMARY KEY (bucket, name)) WITHOUT ROWID;
        INSERT INTO entries VALUES ('b', 'd/a.csv', 3, 'e', 0.0, NULL, NULL, 'v');
        INSERT INTO entries VALUES ('b', 'd/b.txt', 4, 'e', 0.0, NULL, NULL, 'v');
        INSERT INTO aggregates VALUES ('b', '', 2, 7), ('b', 'd/', 2, 7);
        PRAGMA application_id = 1835759209;
        PRAGMA user_version = 1;
        """
    )
    old.close()
    with SQLiteIndex(path) as index:
        index.record("b", Meta("d/c.csv", 5, "e", 0.0))
        assert [m.key for m in index.find("b", glob="**.csv")] == ["d/a.csv", "d/c.csv"]
        assert index.du("b", "d") == Usage(3, 12)
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA user_version").fetchone()[0] == 2
    assert (
        check.execute("SELECT rkey FROM entries WHERE key = 'd/a.csv'").fetchone()[0] == "vsc.a/d"
    )
    check.close()


@pytest.mark.parametrize("own_objects", [False, True])
def test_du_of_a_narrow_prefix_in_a_wide_directory(tmp_path: Path, own_objects: bool) -> None:
    """Too many subdirectories to check them all: du seeks around the few it covers."""
    model = {f"big/d{i:03}/f{j}": i + j for i in range(300) for j in range(3)}
    if own_objects:
        model.update({f"big/d{i:03}": 1000 + i for i in range(0, 300, 7)})
    with SQLiteIndex(tmp_path / "i.db") as index:
        index.record_many("b", [Meta(k, s, "e", 0.0) for k, s in model.items()])
        for prefix in ["big/d00", "big/d1", "big/d29", "big/d3", "big/"]:
            sizes = [s for k, s in model.items() if k.startswith(prefix)]
            assert index.du("b", prefix) == Usage(len(sizes), sum(sizes)), prefix


def test_a_kept_suffix_plan_changes_speed_never_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = _suffix_paths(monkeypatch)
    with SQLiteIndex(tmp_path / "i.db") as index:
        index.record_many("b", [Meta(f"d/k{i:04}.bin", 1, "e", 0.0) for i in range(800)])
        index.record_many("b", [Meta(f"d/k{i:04}.csv", 1, "e", 0.0) for i in range(5)])
        assert len(list(index.find("b", glob="d/*.csv"))) == 5
        # Now most keys end so: the kept plan still reads through the suffix index, exactly.
        index.record_many("b", [Meta(f"d/m{i:04}.csv", 1, "e", 0.0) for i in range(900)])
        assert len(list(index.find("b", glob="d/*.csv"))) == 905
        assert taken == [True, True]
        index._suffix_plans.clear()  # as when the plan has expired
        assert len(list(index.find("b", glob="d/*.csv"))) == 905
        assert taken == [True, True, False]
