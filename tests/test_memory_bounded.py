"""MemoryStore(max_bytes=...): least recently used keys evicted past the bound."""

from __future__ import annotations

import pytest

from mirrorkv import MemoryStore
from mirrorkv.errors import InvalidValue
from mirrorkv.stores._memory_bounded import BoundedMemoryStore


def test_max_bytes_gives_a_bounded_store() -> None:
    store = MemoryStore(max_bytes=10)
    assert isinstance(store, BoundedMemoryStore) and isinstance(store, MemoryStore)
    assert type(MemoryStore()) is MemoryStore
    with pytest.raises(InvalidValue):
        MemoryStore(max_bytes=0)
    with pytest.raises(InvalidValue):
        store.put("big", b"x" * 11)


def test_least_recently_used_go_first() -> None:
    store = MemoryStore(max_bytes=10)
    store.put("a", b"1234")
    store.put("b", b"1234")
    assert store.get("a") == b"1234"  # a is now more recent than b
    store.put("c", b"1234")  # 12 bytes: b goes
    assert sorted(store.keys()) == ["a", "c"]
    store.head("a")
    store.incr("n", 100)  # 3 bytes: 11 > 10, c goes
    assert sorted(store.keys()) == ["a", "n"] and store.evictions == 2
    store.put_many({"x": b"12345", "y": b"12345"})
    assert sorted(store.keys()) == ["x", "y"] and store.held_bytes == 10
    store.put("x", b"1")  # replacing shrinks the total
    assert store.held_bytes == 6
    store.delete("x")
    assert store.held_bytes == 5 and "MemoryStore(<1 keys, 5 of 10 bytes" in repr(store)
    store.clear()
    assert store.held_bytes == 0 and list(store.keys()) == []
