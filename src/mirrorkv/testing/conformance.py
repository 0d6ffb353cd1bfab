"""The conformance suite: every line of the Store contract, for any store.

Subclass :class:`StoreConformance` and provide a ``store_factory`` fixture
(see :mod:`mirrorkv.testing`); a ``store`` fixture opening an empty store from
it is provided here. Tests that need a capability the factory does not declare
(``persistent``, ``multi_process``, ``bounded_streaming``) skip with the
reason. Tests marked ``slow`` (big values, processes) need the ``slow``
marker registered in the project's pytest configuration.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import random
import threading
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ..errors import (
    InvalidKey,
    InvalidValue,
    KeyNotFound,
    MirrorKVError,
    NotSupported,
    PreconditionFailed,
)
from ..meta import DEFAULT_CONTENT_TYPE, Meta, etag_of
from ..store import Capability, Store
from . import StoreFactory
from .crash import count_up, read_seq, write_values

__all__ = ["ESCAPING_KEYS", "INVALID_KEYS", "ORDER_KEYS", "StoreConformance", "utf8_sorted"]

#: Keys whose UTF-8 byte order differs from naive orders (UTF-16, locale, length).
ORDER_KEYS = (
    "a",
    "a/b",
    "a/",
    "a-",
    "a0",
    "A",
    "a b",
    "b",
    "z",
    "~",
    "é",
    "e\u0301",
    "\u4e2d",
    "\ue000",
    "\ufffd",
    "\U00010000",
    "\U0001f600",
)

#: Values that are not keys: empty, NUL, too long (ASCII and multi-byte), lone surrogates, not str.
INVALID_KEYS: tuple[object, ...] = (
    "",
    "\x00",
    "a\x00b",
    "x" * 1025,
    "é" * 512 + "a",
    "\U0001f600" * 256 + "a",
    "\ud800",
    "a\udfffb",
    5,
    None,
    b"a",
    ("a",),
)

#: Ordinary keys that a naive file or URL mapping would let escape, collide or vanish.
ESCAPING_KEYS = (
    "../x",
    "..",
    ".",
    "./a",
    "a/./b",
    "a/../b",
    "a//b",
    "//",
    "/",
    "a/",
    "/a",
    "a",
    "A",
    "CON",
    "con",
    "NUL",
    "COM1",
    "aux.txt",
    "x.",
    "x ",
    " x",
    "a\\b",
    "\\",
    "~",
    "$HOME",
    "%2e%2e",
    "a%2Fb",
    "a/b",
    "%",
    ".hidden",
    "é",
    "e\u0301",
    "s" * 300,
    "d/" + "s" * 300,
    "\n",
    "tab\there",
)

_MiB = 1 << 20
_BIG = 64 * _MiB
_READ = 64 * 1024
#: Peak traced memory allowed while a 64 MiB value streams through a bounded store.
STREAMING_PEAK_LIMIT = 16 * _MiB


def utf8_sorted(keys: Iterator[str] | list[str] | set[str] | tuple[str, ...]) -> list[str]:
    """``keys`` in the order every store lists in: ascending UTF-8 bytes."""
    return sorted(keys, key=lambda key: key.encode("utf-8"))


def _key_calls(store: Store, key: Any) -> list[tuple[str, Callable[[], object]]]:
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


def _same_value(a: Meta, b: Meta) -> bool:
    """Whether two records describe the same write (``modified`` may differ in precision)."""
    fields = ("key", "size", "etag", "content_type", "version")
    return all(getattr(a, f) == getattr(b, f) for f in fields) and dict(a.metadata) == dict(
        b.metadata
    )


def _reopen_or_skip(factory: StoreFactory, store: Store) -> Store:
    if not factory.persistent:
        pytest.skip(f"{factory.name} is not persistent")
    store.close()
    return factory.open()


class StoreConformance:
    """Tests every store must pass. Needs a ``store_factory`` fixture."""

    @pytest.fixture
    def store(self, store_factory: StoreFactory) -> Iterator[Store]:
        """The store under test, opened from the factory and closed afterwards."""
        opened = store_factory.open()
        yield opened
        opened.close()

    # -- basic operations ---------------------------------------------------

    def test_put_get_roundtrip(self, store: Store) -> None:
        meta = store.put("a", b"value")
        assert store.get("a") == b"value"
        assert (meta.key, meta.size) == ("a", 5)
        assert "a" in store

    def test_missing_key(self, store: Store) -> None:
        for call in (store.get, store.head, store.open, lambda key: store.copy(key, "b")):
            with pytest.raises(KeyNotFound):
                call("absent")
        assert "absent" not in store
        assert "b" not in store

    def test_overwrite_replaces_value(self, store: Store) -> None:
        store.put("k", b"first, longer value")
        store.put("k", b"second")
        assert store.get("k") == b"second"
        assert store.head("k").size == 6

    def test_delete_is_idempotent(self, store: Store) -> None:
        store.put("k", b"v")
        store.delete("k")
        store.delete("k")
        store.delete("never")
        assert "k" not in store
        with pytest.raises(KeyNotFound):
            store.get("k")
        assert list(store) == []

    def test_empty_value(self, store: Store, tmp_path: Path) -> None:
        meta = store.put("empty", b"")
        assert store.get("empty") == b""
        assert meta.size == 0 and store.head("empty").size == 0
        assert meta.etag == hashlib.md5(b"").hexdigest()
        assert "empty" in store
        with store.open("empty") as stream:
            assert stream.read() == b""
        target = tmp_path / "empty.out"
        assert store.get_file("empty", target) == 0
        assert target.read_bytes() == b""
        assert list(store.keys()) == ["empty"]

    def test_values_are_bytes_like(self, store: Store) -> None:
        store.put("ba", bytearray(b"xy"))
        store.put("mv", memoryview(b"0123456")[2:5])
        assert store.get("ba") == b"xy"
        assert store.get("mv") == b"234"
        bad_values: list[Any] = ["text", 5, None, [1, 2]]
        for value in bad_values:
            with pytest.raises(InvalidValue):
                store.put("bad", value)
            with pytest.raises(InvalidValue):
                store.put_many({"bad": value})
        assert "bad" not in store

    def test_iteration_and_contains(self, store: Store) -> None:
        for key in ("b", "a", "a/b"):
            store.put(key, key.encode())
        assert list(store) == ["a", "a/b", "b"]
        assert "a/b" in store and "a/" not in store

    # -- Meta ---------------------------------------------------------------

    def test_meta_fields(self, store: Store) -> None:
        before = datetime.now(UTC) - timedelta(seconds=2)
        meta = store.put("k", b"hello", content_type="text/plain", metadata={"owner": "ann"})
        after = datetime.now(UTC) + timedelta(seconds=2)
        for record in (meta, store.head("k"), next(store.list())):
            assert isinstance(record, Meta)
            assert record.key == "k"
            assert record.size == 5
            assert record.etag == hashlib.md5(b"hello").hexdigest()
            assert record.content_type == "text/plain"
            assert dict(record.metadata) == {"owner": "ann"}
            assert isinstance(record.version, str) and record.version
            modified = record.modified
            assert modified.tzinfo is not None and modified.utcoffset() == timedelta(0)
            assert before <= modified <= after, f"modified {modified} is not the time of the put"
        assert _same_value(meta, store.head("k"))
        assert _same_value(meta, next(store.list()))

    def test_meta_is_frozen(self, store: Store) -> None:
        metadata = {"a": "1"}
        meta = store.put("k", b"v", metadata=metadata)
        metadata["a"] = "changed"
        for record in (meta, store.head("k")):
            with pytest.raises(AttributeError):
                record.key = "other"  # type: ignore[misc]
            with pytest.raises(TypeError):
                record.metadata["a"] = "2"  # type: ignore[index]
            assert dict(record.metadata) == {"a": "1"}
            hash(record)
        assert dict(store.head("k").metadata) == {"a": "1"}

    def test_etag_is_md5_and_equal_for_equal_content(self, store: Store) -> None:
        one = store.put("one", b"same content")
        two = store.put("two", b"same content")
        other = store.put("three", b"other content")
        assert one.etag == two.etag == etag_of(b"same content")
        assert other.etag != one.etag
        assert store.head("one").etag == store.head("two").etag

    def test_version_changes_on_every_write(self, store: Store) -> None:
        seen = [store.put("k", b"v").version]
        seen.append(store.put("k", b"v").version)
        seen.append(store.put_many({"k": b"v"})[0].version)
        store.put("src", b"v")
        seen.append(store.copy("src", "k").version)
        store.put("k", b"1")
        seen.append(store.head("k").version)
        store.incr("k")
        seen.append(store.head("k").version)
        store.put_file("k", io.BytesIO(b"v"))
        seen.append(store.head("k").version)
        assert len(set(seen)) == len(seen), f"a version repeated: {seen}"
        assert store.head("k").version == store.head("k").version

    def test_version_changes_across_reopen(self, store: Store, store_factory: StoreFactory) -> None:
        first = store.put("k", b"v").version
        store = _reopen_or_skip(store_factory, store)
        try:
            assert store.head("k").version == first
            assert store.put("k", b"v").version != first
        finally:
            store.close()

    def test_content_type_default_and_replaced(self, store: Store) -> None:
        assert store.put("k", b"v").content_type == DEFAULT_CONTENT_TYPE
        store.put("k", b"v", content_type="text/plain; charset=utf-8", metadata={"a": "1"})
        assert store.head("k").content_type == "text/plain; charset=utf-8"
        meta = store.put("k", b"w")
        assert meta.content_type == DEFAULT_CONTENT_TYPE
        assert store.head("k").content_type == DEFAULT_CONTENT_TYPE
        assert dict(store.head("k").metadata) == {}

    def test_metadata_replaced_on_put(self, store: Store) -> None:
        store.put("k", b"v", metadata={"a": "1", "b": "2"})
        store.put("k", b"v", metadata={"c": "3"})
        assert dict(store.head("k").metadata) == {"c": "3"}
        store.put("k", b"v")
        assert dict(store.head("k").metadata) == {}
        store.put("k", b"v", metadata={"a": "1"})
        store.put_many({"k": b"w"})
        assert dict(store.head("k").metadata) == {}

    def test_metadata_roundtrips_any_text(self, store: Store) -> None:
        metadata = {"ünï": "cödé ✓", "empty": "", "x-amz-meta": "a=b; c,d", "long": "v" * 2000}
        store.put("k", b"v", metadata=metadata, content_type="image/jpeg")
        assert dict(store.head("k").metadata) == metadata
        assert dict(next(store.list()).metadata) == metadata

    def test_bad_options(self, store: Store) -> None:
        bad_metadata: list[Any] = [{"a": 1}, {1: "a"}]
        for metadata in bad_metadata:
            with pytest.raises(InvalidValue):
                store.put("k", b"v", metadata=metadata)
        bad_type: Any = 5
        with pytest.raises(InvalidValue):
            store.put("k", b"v", content_type=bad_type)
        with pytest.raises(InvalidValue):
            store.put("k", b"v", if_none_match="abc")
        assert "k" not in store

    # -- listing ------------------------------------------------------------

    def test_listing_in_utf8_byte_order(self, store: Store) -> None:
        for key in reversed(ORDER_KEYS):
            store.put(key, key.encode())
        expected = utf8_sorted(ORDER_KEYS)
        # UTF-16 order would put U+10000 (a surrogate pair) before U+E000 and U+FFFD.
        assert expected.index("\ufffd") < expected.index("\U00010000")
        assert list(store.keys()) == expected
        assert list(store) == expected
        assert [meta.key for meta in store.list()] == expected
        for meta in store.list():
            assert meta.size == len(meta.key.encode())

    def test_list_is_lazy_iterator(self, store: Store) -> None:
        store.put_many({f"k{i:03d}": b"v" for i in range(50)})
        listing = store.list()
        assert iter(listing) is listing
        assert next(listing).key == "k000"
        keys = store.keys()
        assert iter(keys) is keys
        assert next(keys) == "k000"

    def test_prefix_listing(self, store: Store) -> None:
        for key in ORDER_KEYS:
            store.put(key, b"v")
        assert list(store.keys("a")) == utf8_sorted([k for k in ORDER_KEYS if k.startswith("a")])
        assert list(store.keys("a/")) == ["a/", "a/b"]
        assert list(store.keys("a/b")) == ["a/b"]
        assert list(store.keys("a/b/")) == []
        assert list(store.keys("é")) == ["é"]
        assert list(store.keys("e")) == ["e\u0301"]
        assert [m.key for m in store.list("a/")] == ["a/", "a/b"]
        assert list(store.keys("nothing")) == []

    def test_start_after(self, store: Store) -> None:
        keys = ["a", "a/b", "a/c", "a/d/e", "a0", "b/x", "b/y", "é"]
        for key in keys:
            store.put(key, b"v")
        assert list(store.keys(start_after="a/b")) == ["a/c", "a/d/e", "a0", "b/x", "b/y", "é"]
        assert list(store.keys(start_after="a/bb")) == ["a/c", "a/d/e", "a0", "b/x", "b/y", "é"]
        assert list(store.keys(start_after="é")) == []
        assert list(store.keys(start_after="\U0010ffff")) == []
        # inside the prefix
        assert list(store.keys("a/", start_after="a/c")) == ["a/d/e"]
        assert [m.key for m in store.list("a/", start_after="a/b")] == ["a/c", "a/d/e"]
        # before the prefix: the whole prefix
        assert list(store.keys("b/", start_after="a")) == ["b/x", "b/y"]
        assert list(store.keys("b/", start_after="b")) == ["b/x", "b/y"]
        # after the prefix: nothing
        assert list(store.keys("a/", start_after="a0")) == []
        assert list(store.keys("a/", start_after="b")) == []
        assert list(store.keys("", start_after="")) == keys

    def test_ls_with_delimiter(self, store: Store) -> None:
        for key in ["a", "a/b", "a/c/d", "a/c/e/f", "a-", "a//x", "b/x", "b/y/z", "c", "é/1"]:
            store.put(key, b"v")
        top = store.ls()
        assert [m.key for m in top.objects] == ["a", "a-", "c"]
        assert top.prefixes == ["a/", "b/", "é/"]
        assert all(isinstance(m, Meta) for m in top.objects)
        level = store.ls("a/")
        assert [m.key for m in level.objects] == ["a/b"]
        assert level.prefixes == ["a//", "a/c/"]
        nested = store.ls("a/c/")
        assert [m.key for m in nested.objects] == ["a/c/d"]
        assert nested.prefixes == ["a/c/e/"]
        partial = store.ls("a")
        assert [m.key for m in partial.objects] == ["a", "a-"]
        assert partial.prefixes == ["a/"]
        assert store.ls("a//").prefixes == [] and [m.key for m in store.ls("a//").objects] == [
            "a//x"
        ]
        dashed = store.ls("", delimiter="-")
        assert dashed.prefixes == ["a-"]
        assert "a" in [m.key for m in dashed.objects]
        assert store.ls("zzz").objects == [] and store.ls("zzz").prefixes == []
        with pytest.raises(InvalidValue):
            store.ls("", delimiter="")

    def test_key_next_to_its_children(self, store: Store) -> None:
        keys = ["a", "a/", "a/b", "a/b/c", "a/b/c/d"]
        for key in keys:
            store.put(key, key.encode())
        for key in keys:
            assert store.get(key) == key.encode()
        store.delete("a/b")
        assert store.get("a/b/c") == b"a/b/c" and store.get("a") == b"a"
        store.delete("a/b/c/d")
        store.delete("a/b/c")
        store.put("a/b", b"back")
        assert list(store.keys()) == ["a", "a/", "a/b"]
        store.delete("a")
        store.delete("a/")
        assert list(store.keys()) == ["a/b"]

    # -- keys ---------------------------------------------------------------

    def test_longest_keys(self, store: Store) -> None:
        longest = [
            "x" * 1024,
            "ab/" * 341 + "a",
            "é" * 512,
            "\u4e2d" * 341 + "a",
            "\U0001f600" * 256,
            "d/" + "é" * 511,
        ]
        for key in longest:
            assert len(key.encode()) == 1024
            store.put(key, key.encode()[:16])
        for key in longest:
            assert store.get(key) == key.encode()[:16]
            assert store.head(key).key == key
        assert list(store.keys()) == utf8_sorted(longest)
        for key in longest:
            with pytest.raises(InvalidKey):
                store.put(key + "a", b"v")

    def test_invalid_keys_rejected_everywhere(self, store: Store) -> None:
        store.put("valid", b"v")
        for bad in INVALID_KEYS:
            for name, call in _key_calls(store, bad):
                if name in ("keys", "list", "ls") and bad == "":
                    continue  # the empty prefix means everything
                with pytest.raises(InvalidKey) as caught:
                    call()
                assert isinstance(caught.value, ValueError), name
                assert isinstance(caught.value, MirrorKVError), name
        assert list(store.keys()) == ["valid"]
        assert store.get("valid") == b"v"

    def test_escaping_keys_are_ordinary(self, store: Store) -> None:
        probe = f"mirrorkv-escape-{uuid.uuid4().hex}"
        absolute = f"/tmp/{probe}"
        relative = "../" * 40 + f"tmp/{probe}-rel"
        # Reads first: a store that maps keys to paths naively would find these files.
        for key in ("/etc/passwd", "../" * 20 + "etc/passwd", "/etc/hostname"):
            assert key not in store
            with pytest.raises(KeyNotFound):
                store.get(key)
        for key in (absolute, relative):
            store.put(key, b"probe")
            assert store.get(key) == b"probe"
        assert not Path(absolute).exists(), f"the key {absolute!r} escaped the store"
        assert not Path(f"/tmp/{probe}-rel").exists(), "a ../ key escaped the store"
        keys = [*ESCAPING_KEYS, "/etc/passwd", absolute, relative]
        for key in keys:
            store.put(key, b"value of " + key.encode())
        for key in keys:
            assert store.get(key) == b"value of " + key.encode(), key
            assert store.head(key).key == key
        assert list(store.keys()) == utf8_sorted(set(keys))
        assert b"root:" not in store.get("/etc/passwd")
        store.delete_many(keys)
        assert list(store.keys()) == []

    def test_keys_differing_only_in_case_or_normalization(self, store: Store) -> None:
        groups = [("a", "A"), ("con", "CON", "Con"), ("é", "e\u0301", "E\u0301"), ("ß", "ss")]
        for group in groups:
            for key in group:
                store.put(key, key.encode())
        for group in groups:
            for key in group:
                assert store.get(key) == key.encode()

    # -- conditional writes -------------------------------------------------

    def test_create_only(self, store: Store) -> None:
        first = store.put("k", b"1", if_none_match="*")
        with pytest.raises(PreconditionFailed):
            store.put("k", b"2", if_none_match="*")
        with pytest.raises(PreconditionFailed):
            store.put_file("k", io.BytesIO(b"3"), if_none_match="*")
        assert store.get("k") == b"1"
        assert _same_value(store.head("k"), first)

    def test_compare_and_swap(self, store: Store) -> None:
        first = store.put("k", b"1", metadata={"a": "1"})
        second = store.put("k", b"2", if_match=first.etag)
        assert store.get("k") == b"2"
        with pytest.raises(PreconditionFailed):
            store.put("k", b"3", if_match=first.etag)
        with pytest.raises(PreconditionFailed):
            store.put("k", b"3", if_match="0" * 32)
        with pytest.raises(PreconditionFailed):
            store.put_file("k", io.BytesIO(b"3"), if_match=first.etag)
        assert store.get("k") == b"2"
        assert _same_value(store.head("k"), second)
        third = store.put_file("k", io.BytesIO(b"3"), if_match=second.etag)
        assert store.get("k") == b"3" and third.etag == etag_of(b"3")

    def test_if_match_on_absent_key(self, store: Store) -> None:
        with pytest.raises(PreconditionFailed):
            store.put("k", b"v", if_match=etag_of(b"v"))
        assert "k" not in store
        assert list(store.keys()) == []

    def test_create_only_race_has_one_winner(self, store: Store) -> None:
        wins: list[tuple[str, int]] = []
        lock = threading.Lock()
        barrier = threading.Barrier(8)

        def contend(worker: int) -> None:
            barrier.wait()
            for i in range(20):
                try:
                    store.put(f"k{i}", b"%d" % worker, if_none_match="*")
                except PreconditionFailed:
                    continue
                with lock:
                    wins.append((f"k{i}", worker))

        _run_threads(contend, 8)
        assert sorted(key for key, _ in wins) == sorted(f"k{i}" for i in range(20))
        for key, worker in wins:
            assert store.get(key) == b"%d" % worker

    # -- counters -----------------------------------------------------------

    def test_incr_and_decr(self, store: Store) -> None:
        assert store.incr("n") == 1
        assert store.get("n") == b"1"
        assert store.incr("m", 5, initial=10) == 15
        assert store.decr("m") == 14
        assert store.decr("m", 20) == -6
        assert store.get("m") == b"-6"
        assert store.incr("m", -1) == -7
        assert store.incr("m", 0) == -7
        assert store.decr("d", initial=3) == 2
        store.put("big", b"9007199254740993")
        assert store.incr("big") == 9007199254740994
        assert store.head("m").etag == etag_of(b"-7")

    def test_incr_keeps_content_type_and_metadata(self, store: Store) -> None:
        store.put("c", b"41", content_type="text/plain", metadata={"a": "1"})
        assert store.incr("c") == 42
        meta = store.head("c")
        assert (meta.content_type, dict(meta.metadata), meta.size) == ("text/plain", {"a": "1"}, 2)

    def test_incr_rejects_non_counters(self, store: Store) -> None:
        for value in (b"abc", b"1.5", b"\xff", b"1e3"):
            store.put("s", value)
            with pytest.raises(InvalidValue):
                store.incr("s")
            assert store.get("s") == value
        bad_numbers: list[Any] = [True, False, 1.5, "1", None]
        for bad in bad_numbers:
            with pytest.raises(InvalidValue):
                store.incr("n", bad)
            with pytest.raises(InvalidValue):
                store.incr("n", 1, initial=bad)
            with pytest.raises(InvalidValue):
                store.decr("n", bad)
        assert "n" not in store

    def test_incr_from_threads(self, store: Store) -> None:
        def count(_: int) -> None:
            for _ in range(200):
                store.incr("hits")

        _run_threads(count, 8)
        assert store.get("hits") == b"1600"

    @pytest.mark.slow
    def test_incr_from_processes(self, store: Store, store_factory: StoreFactory) -> None:
        if not store_factory.multi_process or store_factory.url is None:
            pytest.skip(f"{store_factory.name} is not shared between processes")
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(4)
        workers = [
            context.Process(target=count_up, args=(store_factory.url, "hits", 100, barrier))
            for _ in range(4)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(120)
        assert [worker.exitcode for worker in workers] == [0] * 4
        assert store.get("hits") == b"400"

    @pytest.mark.slow
    def test_processes_write_whole_values(self, store: Store, store_factory: StoreFactory) -> None:
        if not store_factory.multi_process or store_factory.url is None:
            pytest.skip(f"{store_factory.name} is not shared between processes")
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(3)
        workers = [
            context.Process(target=write_values, args=(store_factory.url, i, 60, barrier))
            for i in range(3)
        ]
        for worker in workers:
            worker.start()
        while any(worker.is_alive() for worker in workers):
            for key in store.keys("shared/"):
                with store.open(key) as stream:
                    read_seq(key, stream)  # raises CorruptValue on a torn value
        for worker in workers:
            worker.join(120)
        assert [worker.exitcode for worker in workers] == [0] * 3
        for key in store.keys("shared/"):
            with store.open(key) as stream:
                assert read_seq(key, stream) % 1_000_000 >= 56, "a later write was lost"
        assert list(store.keys("shared/")) == [f"shared/{i}" for i in range(4)]

    # -- batches ------------------------------------------------------------

    def test_get_many(self, store: Store) -> None:
        store.put_many({"a": b"1", "b": b"2", "é": b"3"})
        assert store.get_many(["a", "absent", "é"]) == {"a": b"1", "é": b"3"}
        assert store.get_many(iter(["b", "b"])) == {"b": b"2"}
        assert store.get_many([]) == {}

    def test_put_many(self, store: Store) -> None:
        metas = store.put_many({"a": b"1", "b": b""})
        assert [(m.key, m.size, m.etag) for m in metas] == [
            ("a", 1, etag_of(b"1")),
            ("b", 0, etag_of(b"")),
        ]
        bytes_like: Any = [("c", b"3"), ("d", bytearray(b"4"))]
        store.put_many(bytes_like)
        store.put_many(pair for pair in [("e", b"5")])
        store.put_many([("dup", b"first"), ("dup", b"last")])
        assert store.get_many(["a", "b", "c", "d", "e", "dup"]) == {
            "a": b"1",
            "b": b"",
            "c": b"3",
            "d": b"4",
            "e": b"5",
            "dup": b"last",
        }
        assert store.put_many({}) == []

    def test_put_many_checks_everything_first(self, store: Store) -> None:
        store.put("a", b"old")
        for bad in ([("a", b"new"), ("", b"x")], [("a", b"new"), ("b", "text")]):
            batch: Any = bad
            with pytest.raises((InvalidKey, InvalidValue)):
                store.put_many(batch)
        assert store.get("a") == b"old"
        assert list(store.keys()) == ["a"]

    def test_delete_many(self, store: Store) -> None:
        store.put_many({"a": b"1", "b": b"2", "c": b"3"})
        store.delete_many(["a", "absent", "c"])
        assert list(store.keys()) == ["b"]
        with pytest.raises(InvalidKey):
            store.delete_many(["b", "x\x00"])
        assert list(store.keys()) == ["b"]
        store.delete_many(iter(["b"]))
        store.delete_many([])
        assert list(store.keys()) == []

    # -- copy ---------------------------------------------------------------

    def test_copy_keeps_metadata(self, store: Store) -> None:
        source = store.put("src", b"payload", content_type="image/png", metadata={"a": "1"})
        copied = store.copy("src", "dst")
        assert store.get("dst") == b"payload"
        meta = store.head("dst")
        assert (meta.content_type, dict(meta.metadata)) == ("image/png", {"a": "1"})
        assert (meta.size, meta.etag) == (source.size, source.etag)
        assert _same_value(copied, meta)
        assert _same_value(store.head("src"), source)
        assert store.get("src") == b"payload"

    def test_copy_replaces_target(self, store: Store) -> None:
        store.put("src", b"new")
        old = store.put("dst", b"old", content_type="text/plain", metadata={"x": "y"})
        meta = store.copy("src", "dst")
        assert store.get("dst") == b"new"
        assert meta.version != old.version
        assert dict(store.head("dst").metadata) == {}
        assert store.head("dst").content_type == DEFAULT_CONTENT_TYPE

    def test_copy_missing_source(self, store: Store) -> None:
        with pytest.raises(KeyNotFound):
            store.copy("absent", "dst")
        assert "dst" not in store

    # -- streaming ----------------------------------------------------------

    def test_open_streams(self, store: Store) -> None:
        data = random.Random(1).randbytes(3 * _MiB + 17)
        store.put("k", data)
        with store.open("k") as stream:
            parts = [stream.read(10)]
            while chunk := stream.read(_READ):
                assert len(chunk) <= _READ
                parts.append(chunk)
            assert stream.read(1) == b""
        assert b"".join(parts) == data
        with store.open("k") as stream:
            assert stream.read() == data

    def test_put_file_and_get_file(self, store: Store, tmp_path: Path) -> None:
        data = random.Random(2).randbytes(2 * _MiB + 3)
        source = tmp_path / "source.bin"
        source.write_bytes(data)
        sources: list[Any] = [str(source), source, io.BytesIO(data)]
        for i, given in enumerate(sources):
            meta = store.put_file(f"f{i}", given, content_type="text/csv", metadata={"i": str(i)})
            assert (meta.size, meta.etag) == (len(data), etag_of(data))
            assert store.get(f"f{i}") == data
            assert store.head(f"f{i}").content_type == "text/csv"
        with open(source, "rb") as handle:
            store.put_file("f3", handle)
        assert store.get("f3") == data
        targets: list[Any] = [str(tmp_path / "out0"), tmp_path / "out1"]
        for target in targets:
            Path(target).write_bytes(b"previous, longer content than nothing" * 1000)
            assert store.get_file("f0", target) == len(data)
            assert Path(target).read_bytes() == data
        buffer = io.BytesIO()
        assert store.get_file("f0", buffer) == len(data)
        assert buffer.getvalue() == data

    def test_get_file_never_leaves_a_partial_file(self, store: Store, tmp_path: Path) -> None:
        folder = tmp_path / "out"
        folder.mkdir()
        existing = folder / "existing"
        existing.write_bytes(b"keep me")
        with pytest.raises(KeyNotFound):
            store.get_file("absent", existing)
        with pytest.raises(KeyNotFound):
            store.get_file("absent", folder / "new")
        assert existing.read_bytes() == b"keep me"
        assert sorted(p.name for p in folder.iterdir()) == ["existing"]
        store.put("k", b"value")
        store.get_file("k", folder / "new")
        assert sorted(p.name for p in folder.iterdir()) == ["existing", "new"]

    @pytest.mark.slow
    def test_64mib_value_streams(
        self, store: Store, store_factory: StoreFactory, tmp_path: Path
    ) -> None:
        limit = store.max_value_size
        if limit is not None and limit < _BIG:
            pytest.skip(f"{store_factory.name} holds values of at most {limit} bytes")
        source = tmp_path / "big.bin"
        md5, sha = _write_random_file(source, _BIG)
        bounded = store_factory.bounded_streaming
        if bounded:
            tracemalloc.start()
        try:
            meta = store.put_file("big", source)
            peak_in = tracemalloc.get_traced_memory()[1] if bounded else 0
            if bounded:
                tracemalloc.reset_peak()
            digest, size = hashlib.sha256(), 0
            with store.open("big") as stream:
                while chunk := stream.read(_READ):
                    assert len(chunk) <= _READ
                    digest.update(chunk)
                    size += len(chunk)
            peak_out = tracemalloc.get_traced_memory()[1] if bounded else 0
        finally:
            if bounded:
                tracemalloc.stop()
        assert (meta.size, meta.etag) == (_BIG, md5)
        assert store.head("big").etag == md5
        assert (size, digest.hexdigest()) == (_BIG, sha)
        if bounded:
            for name, peak in (("put_file", peak_in), ("open/read", peak_out)):
                assert peak < STREAMING_PEAK_LIMIT, (
                    f"{name} of a {_BIG >> 20} MiB value peaked at {peak / _MiB:.1f} MiB traced"
                )

    # -- errors, lifecycle, persistence ---------------------------------------

    def test_error_classes(self, store: Store) -> None:
        with pytest.raises(KeyNotFound) as missing:
            store.get("some/key é")
        error = missing.value
        assert isinstance(error, KeyError) and isinstance(error, MirrorKVError)
        assert error.key == "some/key é"
        assert "some/key é" in str(error) and not str(error).startswith(("'", '"'))
        assert issubclass(InvalidKey, ValueError) and issubclass(InvalidValue, ValueError)
        for kind in (InvalidKey, InvalidValue, PreconditionFailed, NotSupported, KeyNotFound):
            assert issubclass(kind, MirrorKVError)

    def test_url_for(self, store: Store) -> None:
        store.put("k", b"v")
        if Capability.URLS in store.capabilities:
            url = store.url_for("k")
            assert isinstance(url, str) and ":" in url
        else:
            with pytest.raises(NotSupported):
                store.url_for("k")

    def test_context_manager_and_double_close(self, store_factory: StoreFactory) -> None:
        with store_factory.open() as store:
            assert isinstance(store, Store)
            store.put("k", b"v")
        store.close()
        store.close()
        if store_factory.persistent:
            with store_factory.open() as again:
                assert again.get("k") == b"v"

    def test_persistence(self, store: Store, store_factory: StoreFactory) -> None:
        written = {
            "plain": store.put("plain", b"1"),
            "typed": store.put("typed", b"2", content_type="text/x", metadata={"ü": "ß"}),
            "empty": store.put("empty", b""),
            "a/b/é": store.put("a/b/é", b"deep"),
            "gone": store.put("gone", b"x"),
        }
        store.incr("counter", 7)
        store.delete("gone")
        del written["gone"]
        store = _reopen_or_skip(store_factory, store)
        try:
            assert list(store.keys()) == utf8_sorted([*written, "counter"])
            for key, meta in written.items():
                assert _same_value(store.head(key), meta)
            assert store.get("a/b/é") == b"deep" and store.get("empty") == b""
            assert store.incr("counter") == 8
        finally:
            store.close()

    def test_readers_never_see_torn_values(self, store: Store) -> None:
        values = (b"a" * (256 * 1024), b"b" * (300 * 1024 + 1))
        store.put("k", values[0])
        seen: set[bytes] = set()

        def work(worker: int) -> None:
            for i in range(40):
                if worker == 0:
                    store.put("k", values[i % 2])
                else:
                    value = store.get("k")
                    assert value in values, f"torn read of {len(value)} bytes"
                    seen.add(value[:1])

        _run_threads(work, 3)
        assert seen


def _run_threads(work: Callable[[int], None], count: int) -> None:
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


def _write_random_file(path: Path, size: int) -> tuple[str, str]:
    """Fill ``path`` with ``size`` random bytes; return their MD5 and SHA-256 hex digests."""
    rng = random.Random(64)
    md5, sha = hashlib.md5(), hashlib.sha256()
    with open(path, "wb") as out:
        for _ in range(size // _MiB):
            block = rng.randbytes(_MiB)
            md5.update(block)
            sha.update(block)
            out.write(block)
    return md5.hexdigest(), sha.hexdigest()
