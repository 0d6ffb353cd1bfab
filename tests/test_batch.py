"""put_many's argument handling (mirrorkv.store.checked_batch), shared by every store."""

import pytest

from mirrorkv import InvalidKey, InvalidValue, MemoryStore
from mirrorkv.store import checked_batch


def test_dicts_lists_and_generators_split_alike() -> None:
    expected = (["a", "b"], [b"1", b"2"])
    assert checked_batch({"a": b"1", "b": b"2"}) == expected
    assert checked_batch([("a", b"1"), ("b", b"2")]) == expected
    assert checked_batch(pair for pair in [("a", b"1"), ("b", bytearray(b"2"))]) == expected
    assert checked_batch([["a", b"1"], ["b", memoryview(b"2")]]) == expected


def test_bad_items_raise_before_anything_is_written() -> None:
    store = MemoryStore()
    with pytest.raises(InvalidKey):
        store.put_many([("a", b"1"), ("", b"2")])
    with pytest.raises(InvalidValue):
        store.put_many([("a", b"1"), ("b", "text")])  # type: ignore[list-item]
    assert list(store) == []


def test_the_size_limit_applies_to_every_value() -> None:
    with pytest.raises(InvalidValue, match="at most 4 bytes"):
        checked_batch({"a": b"1234", "b": b"12345"}, max_value_size=4)
    assert checked_batch({"a": b"1234"}, max_value_size=4) == (["a"], [b"1234"])


def test_an_empty_batch_writes_nothing() -> None:
    assert MemoryStore().put_many({}) == []
