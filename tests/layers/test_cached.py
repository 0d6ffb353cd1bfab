"""Cached: what the layer adds over the conformance suite (run over memory and SQLite)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mirrorkv import MemoryStore
from mirrorkv.errors import InvalidValue, KeyNotFound, MirrorKVError
from mirrorkv.layers.cached import Cached
from mirrorkv.stores.sqlite import SQLiteStore


@pytest.fixture
def inner(tmp_path: Path) -> SQLiteStore:
    return SQLiteStore(tmp_path / "store.db")


def test_repeated_reads_come_from_the_cache(inner: SQLiteStore) -> None:
    layer = Cached(inner, MemoryStore(max_bytes=1000))
    meta = layer.put("k", b"value", content_type="text/plain", metadata={"who": "me"})
    inner.put("k", b"changed behind its back")  # not seen: no max_age
    assert layer.get("k") == b"value" and layer.head("k") == meta
    assert layer.open("k").read() == b"value"
    assert layer.hits == 3 and layer.misses == 0
    layer.put("k", b"through the layer")
    assert layer.get("k") == b"through the layer"


def test_reads_fill_the_cache_and_writes_drop_it(inner: SQLiteStore) -> None:
    cache = MemoryStore(max_bytes=1000)
    layer = Cached(inner, cache)
    inner.put("a", b"1")
    inner.put("b", b"2")
    assert layer.get("a") == b"1" and layer.misses == 1
    assert layer.head("a") == inner.head("a") and layer.hits == 1
    assert "a" in cache
    layer.copy("a", "b")
    layer.incr("n", 2)
    assert layer.get("b") == b"1" and layer.get("n") == b"2"
    layer.delete("a")
    with pytest.raises(KeyNotFound):
        layer.get("a")
    layer.delete_many(["b", "n"])
    assert list(cache.keys()) == [] and list(layer.keys()) == []


def test_the_cache_is_bounded(inner: SQLiteStore) -> None:
    cache = MemoryStore(max_bytes=10)
    layer = Cached(inner, cache)
    layer.put_many({"a": b"12345", "b": b"12345", "c": b"12345"})
    for key in "abc":
        layer.get(key)
    assert sorted(cache.keys()) == ["b", "c"]  # a was used least recently
    layer.put("big", b"x" * 11)  # larger than the cache: stored, not cached
    assert layer.get("big") == b"x" * 11 and "big" not in cache


def test_max_age_revalidates_by_etag(inner: SQLiteStore) -> None:
    layer = Cached(inner, max_age=0.2)
    layer.put("k", b"one")
    inner.put("k", b"two")  # another writer
    assert layer.get("k") == b"one"  # still fresh
    time.sleep(0.25)
    assert layer.get("k") == b"two"  # revalidated: changed, read again
    assert layer.get("k") == b"two" and layer.hits == 2
    inner.delete("k")
    time.sleep(0.25)
    with pytest.raises(KeyNotFound):
        layer.get("k")
    with pytest.raises(InvalidValue):
        Cached(inner, max_age=-1)


def test_a_read_racing_a_write_never_caches_the_old_value(inner: SQLiteStore) -> None:
    layer = Cached(inner)
    inner.put("k", b"old")
    since = layer._last_write
    data, meta = inner._get_with_meta("k")  # a slow read began before...
    layer.put("k", b"new")  # ...this write through the layer
    layer._fill("k", data, meta, since)  # the read's late fill is refused
    assert layer.get("k") == b"new"


def test_close_closes_both(tmp_path: Path) -> None:
    inner, cache = SQLiteStore(tmp_path / "a.db"), SQLiteStore(tmp_path / "b.db")
    with Cached(inner, cache) as layer:
        layer.put("k", b"v")
        assert "hits=0" in repr(layer)
    with pytest.raises(MirrorKVError):
        inner.put("k", b"v")
    with pytest.raises(MirrorKVError):
        cache.put("k", b"v")
