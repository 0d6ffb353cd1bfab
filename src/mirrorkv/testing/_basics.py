"""The conformance tests of single-key operations, Meta, batches, copy, errors and persistence."""

from __future__ import annotations

import io
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
from ._support import reopen_or_skip, same_value
from .keysets import utf8_sorted

__all__ = ["BasicContract", "etag_fits"]


def etag_fits(store: Store, etag: str, data: bytes) -> bool:
    """Whether ``etag`` may be the etag of a write of ``data`` to ``store``.

    The hex MD5 of ``data`` where the store has :attr:`~Store.content_etags`;
    otherwise any non-empty str (such etags only identify a write).
    """
    if store.content_etags:
        return etag == etag_of(data)
    return isinstance(etag, str) and bool(etag)


class BasicContract:
    """The conformance tests of single-key operations, Meta, batches, copy, errors and persistence.

    Mixed into :class:`~mirrorkv.testing.conformance.StoreConformance`, which
    provides the ``store`` fixture.
    """

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
        assert etag_fits(store, meta.etag, b"") and store.head("empty").etag == meta.etag
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
        before = datetime.now(UTC) - timedelta(seconds=30)
        meta = store.put("k", b"hello", content_type="text/plain", metadata={"owner": "ann"})
        after = datetime.now(UTC) + timedelta(seconds=30)
        for record in (meta, store.head("k"), next(store.list())):
            assert isinstance(record, Meta)
            assert record.key == "k"
            assert record.size == 5
            assert etag_fits(store, record.etag, b"hello") and record.etag == meta.etag
            assert record.content_type == "text/plain"
            assert dict(record.metadata) == {"owner": "ann"}
            assert isinstance(record.version, str) and record.version
            modified = record.modified
            assert modified.tzinfo is not None and modified.utcoffset() == timedelta(0)
            assert before <= modified <= after, f"modified {modified} is not the time of the put"
        assert same_value(meta, store.head("k"))
        assert same_value(meta, next(store.list()))

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
        assert other.etag != one.etag
        if not store.content_etags:  # etags of writes: stable until the next write
            for meta in (one, two, other):
                assert etag_fits(store, meta.etag, b"")
                assert store.head(meta.key).etag == meta.etag
            assert store.put("one", b"same content").etag not in (one.etag, two.etag)
            return
        assert one.etag == two.etag == etag_of(b"same content")
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
        store = reopen_or_skip(store_factory, store)
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

    # -- batches ------------------------------------------------------------

    def test_get_many(self, store: Store) -> None:
        store.put_many({"a": b"1", "b": b"2", "é": b"3"})
        assert store.get_many(["a", "absent", "é"]) == {"a": b"1", "é": b"3"}
        assert store.get_many(iter(["b", "b"])) == {"b": b"2"}
        assert store.get_many([]) == {}

    def test_put_many(self, store: Store) -> None:
        metas = store.put_many({"a": b"1", "b": b""})
        assert [(m.key, m.size) for m in metas] == [("a", 1), ("b", 0)]
        assert etag_fits(store, metas[0].etag, b"1") and etag_fits(store, metas[1].etag, b"")
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
        assert meta.size == source.size
        if store.content_etags:  # otherwise the copy is a write of its own, with its own etag
            assert meta.etag == source.etag
        assert same_value(copied, meta)
        assert same_value(store.head("src"), source)
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
        for bad in ({"method": "DELETE"}, {"method": None}, {"expires": 0}, {"expires": True}):
            with pytest.raises(InvalidValue):
                store.url_for("k", **bad)
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
        store = reopen_or_skip(store_factory, store)
        try:
            assert list(store.keys()) == utf8_sorted([*written, "counter"])
            for key, meta in written.items():
                assert same_value(store.head(key), meta)
            assert store.get("a/b/é") == b"deep" and store.get("empty") == b""
            assert store.incr("counter") == 8
        finally:
            store.close()
