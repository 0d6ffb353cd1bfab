"""The metadata index conformance suite: the contract of `MetadataIndex`, for any backend.

Subclass :class:`IndexConformance` and provide an ``index_factory`` fixture
returning an :class:`IndexFactory` over a new, empty index::

    class TestMyIndex(IndexConformance):
        @pytest.fixture
        def index_factory(self, tmp_path):
            path = tmp_path / "index.db"
            return IndexFactory("sqlite", lambda: SQLiteIndex(path),
                                url=f"sqlite://{path}", multi_process=True)

An ``index`` fixture opening it is provided here. Tests with processes are
marked ``slow``; they skip unless the factory is ``multi_process`` with a ``url``.
"""

from __future__ import annotations

import itertools
import multiprocessing
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..errors import InvalidKey, InvalidValue, MirrorKVError, NotSupported
from ..meta import Details, Meta
from ..mirror.index import MetadataIndex, Usage, entry_state, open_index, parent_prefixes
from .keysets import ORDER_KEYS, utf8_sorted

__all__ = ["IndexConformance", "IndexFactory", "count_with_swaps", "record_and_forget"]

BUCKET = "s3://conformance"


@dataclass(frozen=True)
class IndexFactory:
    """How the suite opens the index under test; every call sees the same data."""

    #: A short name, shown in test ids.
    name: str
    #: Opens the index under test.
    open: Callable[[], MetadataIndex]
    #: A URL another process can open the same index with (``None``: one process only).
    url: str | None = None
    #: Several processes may write it at once (needs ``url``).
    multi_process: bool = False


def meta(key: str, size: int = 1, **fields: object) -> Meta:
    """A record with plausible defaults for the fields not given."""
    values: dict[str, object] = {
        "etag": f"{size:032x}",
        "modified": 1_700_000_000.25,
        "content_type": "application/octet-stream",
        "metadata": {},
        "version": "v1",
    }
    values.update(fields)
    return Meta(key, size, **values)  # type: ignore[arg-type]


def model_du(model: dict[str, int], prefix: str) -> Usage:
    """The usage a dict model of key -> size gives for ``prefix``."""
    sizes = [size for key, size in model.items() if key.startswith(prefix)]
    return Usage(len(sizes), sum(sizes))


def record_and_forget(url: str, worker: int, rounds: int, barrier: object) -> None:
    """A child process: record and forget overlapping keys at random through its own index."""
    rng = random.Random(worker)
    barrier.wait()  # type: ignore[attr-defined]
    with open_index(url) as index:
        for i in range(rounds):
            key = f"p{rng.randrange(3)}/q{rng.randrange(3)}/k{rng.randrange(8)}"
            if rng.random() < 0.3:
                index.forget(BUCKET, key)
            elif rng.random() < 0.2:
                batch = [meta(f"batch/{worker}/{i}/{j}", rng.randrange(100)) for j in range(5)]
                index.record_many(BUCKET, batch)
            else:
                index.record(BUCKET, meta(key, rng.randrange(1000)))


def count_with_swaps(url: str, worker: int, rounds: int, barrier: object) -> None:
    """A child process: add 1 to the size of shared keys by compare-and-set loops."""
    rng = random.Random(worker)
    barrier.wait()  # type: ignore[attr-defined]
    with open_index(url) as index:
        for i in range(rounds):
            key = f"c/k{rng.randrange(3)}"
            while True:
                old = index.get(BUCKET, key)
                size = 1 if old is None else old.size + 1
                new = meta(key, size, version=f"{worker}-{i}")
                if index.compare_and_set(BUCKET, key, entry_state(old), new):
                    break


def _swaps_or_skip(index: MetadataIndex, name: str) -> None:
    try:
        index.compare_and_set(BUCKET, "probe", ("x", "y"), None)
    except NotSupported:
        pytest.skip(f"{name} has no compare_and_set")


class IndexConformance:
    """Tests every metadata index must pass. Needs an ``index_factory`` fixture."""

    @pytest.fixture
    def index(self, index_factory: IndexFactory) -> Iterator[MetadataIndex]:
        """The index under test, closed afterwards."""
        opened = index_factory.open()
        yield opened
        opened.close()

    # -- single entries ---------------------------------------------------------

    def test_record_get_round_trip(self, index: MetadataIndex) -> None:
        record = meta(
            "a/b.txt",
            12,
            content_type="text/plain",
            metadata={"owner": "ü", "x": "1"},
            version="abc",
            modified=datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
        )
        index.record(BUCKET, record)
        got = index.get(BUCKET, "a/b.txt")
        assert got == record
        assert got is not None
        assert abs((got.modified - record.modified).total_seconds()) < 1e-5
        assert index.get(BUCKET, "a/b") is None
        assert index.get("other", "a/b.txt") is None

    def test_get_many(self, index: MetadataIndex) -> None:
        records = [meta(f"g/{i:04}", i) for i in range(1200)]
        index.record_many(BUCKET, records)
        wanted = [m.key for m in records[::2]] + ["g/absent", records[0].key]
        found = index.get_many(BUCKET, wanted)
        assert found == {m.key: m for m in records[::2]}
        assert index.get_many(BUCKET, []) == {}
        with pytest.raises(InvalidKey):
            index.get_many(BUCKET, ["ok", ""])

    def test_record_replaces(self, index: MetadataIndex) -> None:
        index.record(BUCKET, meta("k", 5))
        index.record(BUCKET, meta("k", 7, version="v2"))
        assert index.get(BUCKET, "k") == meta("k", 7, version="v2")
        assert index.du(BUCKET) == Usage(1, 7)

    def test_forget_is_idempotent(self, index: MetadataIndex) -> None:
        index.record(BUCKET, meta("a/k", 5))
        index.forget(BUCKET, "a/k")
        index.forget(BUCKET, "a/k")
        index.forget_many(BUCKET, ["a/k", "never"])
        assert index.get(BUCKET, "a/k") is None
        assert index.du(BUCKET) == Usage(0, 0)
        assert index.du(BUCKET, "a/") == Usage(0, 0)
        assert index.du_children(BUCKET) == {}

    def test_record_many_and_forget_many(self, index: MetadataIndex) -> None:
        index.record_many(BUCKET, (meta(f"d/{i:03}", i) for i in range(200)))
        index.record_many(BUCKET, [meta("d/000", 10), meta("d/000", 20)])  # last one wins
        assert index.du(BUCKET, "d/") == Usage(200, sum(range(200)) + 20)
        assert index.get(BUCKET, "d/000") == meta("d/000", 20)
        index.forget_many(BUCKET, (f"d/{i:03}" for i in range(0, 200, 2)))
        assert index.du(BUCKET, "d/") == Usage(100, sum(range(1, 200, 2)))
        index.record_many(BUCKET, [])

    def test_invalid_arguments(self, index: MetadataIndex) -> None:
        for bucket in ("", None, 5):
            with pytest.raises(InvalidValue):
                index.get(bucket, "k")  # type: ignore[arg-type]
        for key in ("", "a\x00b", "x" * 1025, 5):
            with pytest.raises((InvalidKey, InvalidValue)):
                index.record(BUCKET, meta(key))  # type: ignore[arg-type]
            with pytest.raises((InvalidKey, InvalidValue)):
                index.get(BUCKET, key)  # type: ignore[arg-type]
        assert index.du(BUCKET) == Usage(0, 0)

    def test_failed_batch_records_nothing(self, index: MetadataIndex) -> None:
        index.record(BUCKET, meta("a/keep", 3))

        def broken() -> Meta:
            raise OSError("the HEAD request failed")

        deferred = Details(broken)
        bad_batches: list[list[Meta]] = [
            [meta("a/1", 1), meta("a\x00", 1)],
            [meta("a/2", 1), meta("a/3", -1)],
            [meta("a/4", 1), Meta("a/5", 1, "e", 0.0, deferred, deferred, deferred)],
        ]
        for batch in bad_batches:
            with pytest.raises((InvalidKey, InvalidValue, OSError)):
                index.record_many(BUCKET, batch)
            with pytest.raises((InvalidKey, InvalidValue, OSError)):
                index.replace_range(BUCKET, "a/", batch)
        assert list(index.keys(BUCKET)) == ["a/keep"]
        assert index.du(BUCKET, "a/") == Usage(1, 3)

    def test_closed_index_refuses(self, index_factory: IndexFactory) -> None:
        index = index_factory.open()
        index.close()
        index.close()
        with pytest.raises(MirrorKVError):
            index.get(BUCKET, "k")

    def test_context_manager_closes(self, index_factory: IndexFactory) -> None:
        with index_factory.open() as index:
            index.record(BUCKET, meta("k"))
        with pytest.raises(MirrorKVError):
            index.get(BUCKET, "k")
        with index_factory.open() as again:
            assert again.get(BUCKET, "k") == meta("k")

    # -- listing ----------------------------------------------------------------

    def test_list_in_utf8_order(self, index: MetadataIndex) -> None:
        index.record_many(BUCKET, [meta(k) for k in reversed(ORDER_KEYS)])
        expected = utf8_sorted(ORDER_KEYS)
        assert list(index.keys(BUCKET)) == expected
        assert [m.key for m in index.list(BUCKET)] == expected

    def test_list_prefix_and_start_after(self, index: MetadataIndex) -> None:
        index.record_many(BUCKET, [meta(k) for k in ORDER_KEYS])
        every = utf8_sorted(ORDER_KEYS)
        for prefix in ("", "a", "a/", "e", "\U0001f600", "nothing"):
            under = [k for k in every if k.startswith(prefix)]
            assert list(index.keys(BUCKET, prefix)) == under
            for after in ("a", "a/b", "b", "é", "\U0010ffff"):
                assert list(index.keys(BUCKET, prefix, start_after=after)) == [
                    k for k in under if k.encode() > after.encode()
                ]

    def test_list_pages_lazily(self, index: MetadataIndex) -> None:
        keys = [f"many/{i:05}" for i in range(5000)]
        index.record_many(BUCKET, [meta(k) for k in keys])
        assert list(index.keys(BUCKET, "many/")) == keys
        assert [m.key for m in index.list(BUCKET, start_after="many/04000")] == keys[4001:]
        iterator = index.keys(BUCKET)
        assert next(iterator) == keys[0]
        index.forget(BUCKET, keys[-1])  # a write between pages does not break the iterator
        assert len(list(iterator)) >= len(keys) - 2

    def test_ls(self, index: MetadataIndex) -> None:
        keys = ["a", "a/", "a/b", "a/b/c", "a/c", "a//d", "b/x", "b/y/z", "c", "é/1"]
        index.record_many(BUCKET, [meta(k) for k in keys])
        top = index.ls(BUCKET)
        assert [m.key for m in top.objects] == ["a", "c"]
        assert top.prefixes == ["a/", "b/", "é/"]
        under = index.ls(BUCKET, "a/")
        assert [m.key for m in under.objects] == ["a/", "a/b", "a/c"]
        assert under.prefixes == ["a//", "a/b/"]
        dashed = index.ls(BUCKET, "", delimiter="b")
        assert dashed.prefixes == ["a/b", "b"]
        assert [m.key for m in index.ls(BUCKET, "a/b").objects] == ["a/b"]
        assert index.ls(BUCKET, "a/b").prefixes == ["a/b/"]

    def test_listed_records_carry_the_details_given(self, index: MetadataIndex) -> None:
        listed_keys = [f"d/{i:04}" for i in range(0, 1500, 3)]
        records = [meta(f"d/{i:04}", i) for i in range(1500)]
        records = [
            Meta(m.key, m.size, m.etag, 1.0, version="") if m.key in listed_keys else m
            for m in records
        ]
        index.record_many(BUCKET, [*records, meta("d/sub/x"), meta("e")])
        details = Details.shared(lambda key: meta(key))
        listed_set = set(listed_keys)

        def check(found: list[Meta], keys: list[str]) -> None:
            assert [m.key for m in found] == keys
            for m in found:
                if m.key in listed_set:
                    assert m[4] is details and m[5] is details and m[6] is details
                    assert m[:4] == index.get(BUCKET, m.key)[:4]  # type: ignore[index]
                else:
                    assert m == index.get(BUCKET, m.key)

        everything = [m.key for m in index.list(BUCKET, "d/")]
        pages = list(index.list_pages(BUCKET, "d/", listed=details))
        assert all(pages) and len(pages) > 1
        check([m for page in pages for m in page], everything)
        plain = [m for page in index.list_pages(BUCKET, "d/", "d/0100") for m in page]
        assert plain == list(index.list(BUCKET, "d/", "d/0100"))
        assert all(m.version == "" for m in plain if m.key in listed_set)
        leaf = index.ls_listed(BUCKET, "d/sub/", listed=details)
        assert [m.key for m in leaf.objects] == ["d/sub/x"] and leaf.prefixes == []
        level = index.ls_listed(BUCKET, "d/", listed=details)
        assert level.prefixes == ["d/sub/"]
        check(level.objects, [key for key in everything if "/" not in key[2:]])
        assert index.ls_listed(BUCKET, "d/") == index.ls(BUCKET, "d/")
        found = list(index.find(BUCKET, glob="d/*7", min_size=100, listed=details))
        check(found, [m.key for m in records if m.key.endswith("7") and m.size >= 100])

    # -- usage ------------------------------------------------------------------

    def test_du(self, index: MetadataIndex) -> None:
        index.record_many(
            BUCKET, [meta("a/b/c", 1), meta("a/b/d", 2), meta("a/e", 4), meta("ab", 8)]
        )
        assert index.du(BUCKET) == Usage(4, 15)
        assert index.du(BUCKET, "a/") == Usage(3, 7)
        assert index.du(BUCKET, "a/b/") == Usage(2, 3)
        assert index.du(BUCKET, "a") == Usage(4, 15)
        assert index.du(BUCKET, "a/b") == Usage(2, 3)
        assert index.du(BUCKET, "z/") == Usage(0, 0)
        assert Usage(1, 2) + Usage(3, 4) == Usage(4, 6)

    def test_du_of_partial_prefixes(self, index: MetadataIndex) -> None:
        keys = [
            f"logs/{name}"
            for name in (
                "2024",
                "2024-01/a",
                "2024-01/b/c",
                "2024-02",
                "2024-02/x",
                "2024-1",
                "2025/a",
            )
        ]
        keys += ["logs/2024-01/b", "logs/2024-0", "logs/2024-0/", "logs/2024-0z", "logs2/x", "l"]
        model = {key: len(key) for key in keys}
        index.record_many(BUCKET, [meta(k, s) for k, s in model.items()])
        for prefix in (
            "l",
            "logs",
            "logs/2",
            "logs/2024",
            "logs/2024-",
            "logs/2024-0",
            "logs/2024-01",
            "logs/2024-01/b",
            "logs/2024-01/b/",
            "logs/2024-0/",
            "x",
        ):
            assert index.du(BUCKET, prefix) == model_du(model, prefix), prefix

    def test_du_children(self, index: MetadataIndex) -> None:
        index.record_many(
            BUCKET,
            [meta("a/b/c", 1), meta("a/b/d", 2), meta("a/e", 4), meta("ab", 8), meta("x/y/z", 16)],
        )
        assert index.du_children(BUCKET) == {
            "": Usage(1, 8),
            "a/": Usage(3, 7),
            "x/": Usage(1, 16),
        }
        assert list(index.du_children(BUCKET, "a/")) == ["", "a/b/"]
        assert index.du_children(BUCKET, "a/") == {"": Usage(1, 4), "a/b/": Usage(2, 3)}
        assert index.du_children(BUCKET, "x/") == {"x/y/": Usage(1, 16)}
        assert index.du_children(BUCKET, "nothing/") == {}
        with pytest.raises(InvalidValue):
            index.du_children(BUCKET, "a")

    @given(
        operations=st.lists(
            st.tuples(
                st.sampled_from(["a", "a/b", "a/b/c", "a/c/", "a//x", "b/é/\U0001f600", "é", "z"]),
                st.one_of(st.none(), st.integers(0, 1 << 40)),
            ),
            max_size=40,
        )
    )
    @settings(
        max_examples=40,
        deadline=None,
        # Every backend's test class inherits this method: several executors by design.
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.differing_executors,
        ],
    )
    def test_du_exact_after_random_writes(
        self, index: MetadataIndex, operations: list[tuple[str, int | None]]
    ) -> None:
        bucket = f"s3://du-{next(_examples)}"
        model: dict[str, int] = {}
        for key, size in operations:
            if size is None:
                index.forget(bucket, key)
                model.pop(key, None)
            else:
                index.record(bucket, meta(key, size))
                model[key] = size
        prefixes = {p for key in model for p in parent_prefixes(key)} | {"", "a/", "a/b/", "b/"}
        for prefix in prefixes | {"a", "a/b", "a/c", "a//", "b", "b/é", "é", "z", "a/b/c"}:
            assert index.du(bucket, prefix) == model_du(model, prefix), prefix
        for prefix in prefixes:
            children = index.du_children(bucket, prefix)
            total = Usage()
            for usage in children.values():
                total = total + usage
            assert total == model_du(model, prefix)
            for child, usage in children.items():
                if child:
                    assert usage == model_du(model, child)
        assert list(index.keys(bucket)) == utf8_sorted(list(model))

    # -- find -------------------------------------------------------------------

    def test_find_filters(self, index: MetadataIndex) -> None:
        base = datetime(2024, 1, 1, tzinfo=UTC)
        records = [
            meta("logs/2024/a.txt", 10, modified=base, content_type="text/plain"),
            meta("logs/2024/b.json", 200, modified=base + timedelta(days=1)),
            meta("logs/2024/sub/c.txt", 3000, modified=base + timedelta(days=2)),
            meta("logs/2025/d.txt", 40, modified=base + timedelta(days=3)),
            meta("img/e.png", 5, content_type="image/png"),
        ]
        index.record_many(BUCKET, records)

        def found(**filters: object) -> list[str]:
            return [m.key for m in index.find(BUCKET, **filters)]  # type: ignore[arg-type]

        assert found() == utf8_sorted(m.key for m in records)
        assert found(prefix="logs/2024/") == [
            "logs/2024/a.txt",
            "logs/2024/b.json",
            "logs/2024/sub/c.txt",
        ]
        assert found(glob="logs/*/*.txt") == ["logs/2024/a.txt", "logs/2025/d.txt"]
        assert found(glob="logs/**.txt") == [
            "logs/2024/a.txt",
            "logs/2024/sub/c.txt",
            "logs/2025/d.txt",
        ]
        assert found(glob="logs/202?/[ab].*") == ["logs/2024/a.txt", "logs/2024/b.json"]
        assert found(glob="logs/2024/[!a]*") == ["logs/2024/b.json"]
        assert found(glob="img/*", prefix="logs/") == []
        assert found(glob="*.png") == []  # * does not cross "/"
        assert found(glob="**.png") == ["img/e.png"]
        assert found(regex=r"\.txt$") == [
            "logs/2024/a.txt",
            "logs/2024/sub/c.txt",
            "logs/2025/d.txt",
        ]
        assert found(regex=r"^logs/2025/") == ["logs/2025/d.txt"]
        assert found(regex=r"^logs/202(4|5)/[ad]") == ["logs/2024/a.txt", "logs/2025/d.txt"]
        assert found(min_size=40, max_size=200) == ["logs/2024/b.json", "logs/2025/d.txt"]
        assert found(modified_after=base, modified_before=base + timedelta(days=3)) == [
            "logs/2024/b.json",
            "logs/2024/sub/c.txt",
        ]
        assert found(modified_after=(base + timedelta(days=2)).timestamp()) == ["logs/2025/d.txt"]
        assert found(content_type="text/plain") == ["logs/2024/a.txt"]
        assert found(content_type="application/octet-stream", prefix="logs/2024/") == [
            "logs/2024/b.json",
            "logs/2024/sub/c.txt",
        ]
        assert found(glob="logs/**", min_size=100, regex="json") == ["logs/2024/b.json"]
        with pytest.raises(InvalidValue):
            found(regex="(")

    def test_find_globs_with_sql_special_characters(self, index: MetadataIndex) -> None:
        # Keys a SQL GLOB or LIKE prefilter could mistake for wildcards or escapes.
        keys = [
            "50%_off.txt",
            "50x_off.txt",
            "a_b",
            "axb",
            "[x].txt",
            "x.txt",
            "back\\slash",
            "star*",
            "stars",
            "q?",
            "qq",
            "é/ü*.t",
            "dir/50%/f",
        ]
        index.record_many(BUCKET, [meta(key, 1) for key in keys])
        for glob, expected in (
            ("50%*", ["50%_off.txt"]),
            ("*%_*", ["50%_off.txt"]),
            ("a_b", ["a_b"]),
            ("*_b", ["a_b"]),
            ("[[]x].txt", ["[x].txt"]),
            ("*]*", ["[x].txt"]),
            ("back\\*", ["back\\slash"]),
            ("*\\*", ["back\\slash"]),
            ("star[*]", ["star*"]),
            ("*[*]", ["star*"]),
            ("q[?]", ["q?"]),
            ("?[?]", ["q?"]),
            ("é/*[*].?", ["é/ü*.t"]),
            ("**/50%/*", ["dir/50%/f"]),
            ("[!s]*[*]", []),
        ):
            assert [m.key for m in index.find(BUCKET, glob=glob)] == expected, glob

    def test_find_pages_through_many(self, index: MetadataIndex) -> None:
        index.record_many(BUCKET, [meta(f"f/{i:04}/{i % 7}", i) for i in range(3000)])
        hits = [m.key for m in index.find(BUCKET, glob="f/*/3", min_size=1000)]
        assert hits == [f"f/{i:04}/3" for i in range(1000, 3000) if i % 7 == 3]

    # -- journal, checkpoints, buckets ------------------------------------------

    def test_dirty_journal(self, index: MetadataIndex) -> None:
        assert index.dirty(BUCKET) == []
        index.mark_dirty(BUCKET, ["b", "a", "é", "a"])
        index.mark_dirty("other", ["x"])
        assert index.dirty(BUCKET) == ["a", "b", "é"]
        index.clear_dirty(BUCKET, ["a", "zz"])
        assert index.dirty(BUCKET) == ["b", "é"]
        assert index.dirty("other") == ["x"]

    def test_checkpoints(self, index: MetadataIndex) -> None:
        assert index.checkpoint(BUCKET, "sync") is None
        index.set_checkpoint(BUCKET, "sync", "a/b")
        index.set_checkpoint(BUCKET, "sync", "a/c")
        index.set_checkpoint("other", "sync", "x")
        assert index.checkpoint(BUCKET, "sync") == "a/c"
        index.set_checkpoint(BUCKET, "sync", None)
        index.set_checkpoint(BUCKET, "sync", None)
        assert index.checkpoint(BUCKET, "sync") is None
        assert index.checkpoint("other", "sync") == "x"

    def test_buckets_are_isolated(self, index: MetadataIndex) -> None:
        assert index.buckets() == []
        index.record("s3://one", meta("k/1", 1))
        index.record("s3://one/sub", meta("k/1", 2))
        index.record("gs://two", meta("k/2", 4))
        assert index.buckets() == ["gs://two", "s3://one", "s3://one/sub"]
        assert list(index.keys("s3://one")) == ["k/1"]
        assert index.du("s3://one") == Usage(1, 1)
        assert index.du("s3://one/sub", "k/") == Usage(1, 2)
        index.forget("s3://one", "k/1")
        assert index.get("s3://one/sub", "k/1") == meta("k/1", 2)
        assert index.buckets() == ["gs://two", "s3://one/sub"]

    # -- replace_range ----------------------------------------------------------

    def test_replace_range(self, index: MetadataIndex) -> None:
        index.record_many(
            BUCKET, [meta("p/a", 1), meta("p/b", 2), meta("p/c", 3), meta("p/d", 4), meta("q", 5)]
        )
        counts = index.replace_range(
            BUCKET,
            "p/",
            [meta("p/b", 2), meta("p/bb", 6), meta("p/c", 30)],
            start_after="p/a",
            until="p/c",
        )
        assert counts == (1, 1, 0)
        assert list(index.keys(BUCKET)) == ["p/a", "p/b", "p/bb", "p/c", "p/d", "q"]
        assert index.replace_range(BUCKET, "p/", [meta("p/d", 4)], start_after="p/c") == (0, 0, 0)
        assert index.replace_range(BUCKET, "p/", []) == (0, 0, 5)
        assert list(index.keys(BUCKET)) == ["q"]
        assert index.du(BUCKET) == Usage(1, 5)
        assert index.du_children(BUCKET) == {"": Usage(1, 5)}
        with pytest.raises(InvalidValue):
            index.replace_range(BUCKET, "p/", [meta("q", 1)])
        with pytest.raises(InvalidValue):
            index.replace_range(BUCKET, "p/", [meta("p/z", 1)], until="p/m")

    # -- concurrency ------------------------------------------------------------

    def test_threads_keep_du_exact(self, index: MetadataIndex) -> None:
        failures: list[BaseException] = []

        def work(worker: int) -> None:
            rng = random.Random(worker)
            try:
                for _ in range(150):
                    key = f"t/{rng.randrange(4)}/{rng.randrange(10)}"
                    if rng.random() < 0.3:
                        index.forget(BUCKET, key)
                    else:
                        index.record(BUCKET, meta(key, rng.randrange(100)))
            except BaseException as error:
                failures.append(error)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures
        _assert_consistent(index, BUCKET)

    def test_compare_and_set(self, index: MetadataIndex, index_factory: IndexFactory) -> None:
        _swaps_or_skip(index, index_factory.name)
        first = meta("a/k", 10, version="v1")
        assert index.compare_and_set(BUCKET, "a/k", None, first)
        assert not index.compare_and_set(BUCKET, "a/k", None, meta("a/k", 99))
        assert index.get(BUCKET, "a/k") == first and index.du(BUCKET, "a/") == Usage(1, 10)
        second = meta("a/k", 4, version="v2")
        assert not index.compare_and_set(BUCKET, "a/k", (first.etag, "v0"), second)
        assert not index.compare_and_set(BUCKET, "a/k", ("other", "v1"), second)
        assert index.compare_and_set(BUCKET, "a/k", entry_state(first), second)
        assert index.du(BUCKET) == Usage(1, 4) and index.get(BUCKET, "a/k") == second
        assert not index.compare_and_set(BUCKET, "a/k", entry_state(first), None)
        assert index.compare_and_set(BUCKET, "a/k", entry_state(second), None)
        assert index.get(BUCKET, "a/k") is None and index.du(BUCKET) == Usage()
        assert index.compare_and_set(BUCKET, "a/k", None, None)  # absent stays absent
        listed = meta("a/l", 3, version="")  # a record a listing made
        assert index.compare_and_set(BUCKET, "a/l", None, listed)
        assert index.compare_and_set(BUCKET, "a/l", (listed.etag, ""), meta("a/l", 5))
        with pytest.raises(InvalidValue):
            index.compare_and_set(BUCKET, "a/k", None, meta("a/other", 1))
        with pytest.raises(InvalidKey):
            index.compare_and_set(BUCKET, "", None, None)

    def test_compare_and_set_many(self, index: MetadataIndex, index_factory: IndexFactory) -> None:
        _swaps_or_skip(index, index_factory.name)
        a, b = meta("d/a", 10, version="v1"), meta("d/b", 20, version="v1")
        index.record_many(BUCKET, [a, b])
        lost = index.compare_and_set_many(
            BUCKET,
            [
                ("d/a", entry_state(a), meta("d/a", 1, version="v2")),  # wins
                ("d/b", ("stale", "v0"), None),  # loses: left as it is
                ("d/c", None, meta("d/c", 300)),  # wins: was absent
                ("d/gone", None, None),  # absent stays absent
            ],
        )
        assert lost == ["d/b"]
        assert index.get(BUCKET, "d/a") == meta("d/a", 1, version="v2")
        assert index.get(BUCKET, "d/b") == b
        assert index.du(BUCKET, "d/") == Usage(3, 321) and index.du(BUCKET) == Usage(3, 321)
        assert index.compare_and_set_many(BUCKET, [("d/b", entry_state(b), None)]) == []
        assert index.du(BUCKET, "d/") == Usage(2, 301)
        assert index.compare_and_set_many(BUCKET, []) == []

    @pytest.mark.slow
    def test_processes_swap_exactly(
        self, index: MetadataIndex, index_factory: IndexFactory
    ) -> None:
        if not index_factory.multi_process or index_factory.url is None:
            pytest.skip(f"{index_factory.name} is not shared between processes")
        _swaps_or_skip(index, index_factory.name)
        _run_three(count_with_swaps, index_factory.url, 200)
        assert sum(m.size for m in index.list(BUCKET, "c/")) == 600  # no increment lost
        _assert_consistent(index, BUCKET)

    @pytest.mark.slow
    def test_processes_keep_du_exact(
        self, index: MetadataIndex, index_factory: IndexFactory
    ) -> None:
        if not index_factory.multi_process or index_factory.url is None:
            pytest.skip(f"{index_factory.name} is not shared between processes")
        _run_three(record_and_forget, index_factory.url, 1500)
        _assert_consistent(index, BUCKET)


def _run_three(work: Callable[..., None], url: str, rounds: int) -> None:
    """``work(url, i, rounds, barrier)`` in three spawned processes at once; all must succeed."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(3)
    workers = [context.Process(target=work, args=(url, i, rounds, barrier)) for i in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [worker.exitcode for worker in workers] == [0, 0, 0]


_examples = itertools.count()


def _assert_consistent(index: MetadataIndex, bucket: str) -> None:
    """Every aggregate the index reports equals the sum over its listed entries."""
    model = {m.key: m.size for m in index.list(bucket)}
    assert model, "the writers recorded nothing"
    for prefix in {p for key in model for p in parent_prefixes(key)}:
        assert index.du(bucket, prefix) == model_du(model, prefix), prefix
        total = Usage()
        for usage in index.du_children(bucket, prefix).values():
            total = total + usage
        assert total == model_du(model, prefix), prefix
