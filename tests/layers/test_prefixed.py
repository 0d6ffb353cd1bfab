"""Prefixed beyond the conformance suite: key mapping and length, listings, native paths."""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mirrorkv import MemoryStore
from mirrorkv.errors import InvalidKey, KeyNotFound
from mirrorkv.layers.prefixed import Prefixed
from mirrorkv.meta import Listing, Meta
from mirrorkv.store import Store
from mirrorkv.stores.sqlite import SQLiteStore
from mirrorkv.testing.keysets import ESCAPING_KEYS, ORDER_KEYS, utf8_sorted


class CountingStore(MemoryStore):
    """A real MemoryStore that counts calls of its own derived methods."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def copy(self, source: str, target: str) -> Meta:
        self._count("copy")
        return super().copy(source, target)

    def incr(self, key: str, delta: int = 1, *, initial: int = 0) -> int:
        self._count("incr")
        return super().incr(key, delta, initial=initial)

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        self._count("get_many")
        return super().get_many(keys)

    def _put_many(self, keys: list[str], values: list[bytes]) -> list[Meta]:
        self._count("put_many")
        return super()._put_many(keys, values)

    def _delete_many(self, keys: list[str]) -> None:
        self._count("delete_many")
        super()._delete_many(keys)

    def ls(self, prefix: str = "", delimiter: str = "/") -> Listing:
        self._count("ls")
        return super().ls(prefix, delimiter)


@pytest.fixture(params=["memory", "sqlite"])
def inner(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "memory":
        return MemoryStore()
    return SQLiteStore(tmp_path / "inner.db")


def test_keys_live_under_the_prefix_and_outside_keys_are_untouched(inner: Store) -> None:
    inner.put("outside", b"o")
    inner.put("tenant-b/k", b"b")
    store = Prefixed(inner, "tenant-a/")
    store.put("k", b"a", content_type="text/plain", metadata={"m": "1"})
    assert inner.get("tenant-a/k") == b"a"
    assert store.get("k") == b"a"
    meta = store.head("k")
    assert (meta.key, meta.content_type, dict(meta.metadata)) == ("k", "text/plain", {"m": "1"})
    assert meta.etag == inner.head("tenant-a/k").etag
    assert list(store.keys()) == ["k"] and "outside" not in store
    store.delete_many(["k", "outside"])
    assert sorted(inner.keys()) == ["outside", "tenant-b/k"]


def test_escaping_keys_stay_under_the_prefix(inner: Store) -> None:
    inner.put("x", b"outside")
    store = Prefixed(inner, "t/")
    for key in ESCAPING_KEYS:
        store.put(key, key.encode())
    assert list(store.keys()) == utf8_sorted(set(ESCAPING_KEYS))
    assert sorted(inner.keys()) == sorted(["x", *(f"t/{k}" for k in set(ESCAPING_KEYS))])
    assert inner.get("x") == b"outside"
    assert store.get("../x") == b"../x"


def test_key_length_counts_the_prefix() -> None:
    inner = MemoryStore()
    store = Prefixed(inner, "é/")  # 3 bytes
    assert store.max_key_bytes == 1021
    for longest in ("x" * 1021, "é" * 510 + "a", "\U0001f600" * 255 + "a"):
        assert len(longest.encode()) == 1021
        store.put(longest, b"v")
        assert store.get(longest) == b"v"
        with pytest.raises(InvalidKey, match="at most 1021 bytes"):
            store.put(longest + "a", b"v")
    too_long = "y" * 1022
    calls = [
        lambda: store.get(too_long),
        lambda: store.head(too_long),
        lambda: store.put_many([("ok", b"v"), (too_long, b"v")]),
        lambda: store.copy("ok", too_long),
        lambda: store.incr(too_long),
        lambda: store.get_many(["ok", too_long]),
        lambda: store.delete_many(["ok", too_long]),
    ]
    for call in calls:
        with pytest.raises(InvalidKey):
            call()
    assert "ok" not in store  # the batch wrote nothing


@pytest.mark.parametrize("bad", ["", "a\x00", "x" * 1024, "\ud800", 5, None])
def test_the_prefix_is_validated(bad: object) -> None:
    with pytest.raises(InvalidKey):
        Prefixed(MemoryStore(), bad)  # type: ignore[arg-type]


def test_missing_key_names_the_callers_key() -> None:
    store = Prefixed(MemoryStore(), "p/")
    for call in (store.get, store.head, store.open, lambda k: store.copy(k, "t")):
        with pytest.raises(KeyNotFound) as caught:
            call("gone")
        assert caught.value.key == "gone"


def test_listing_with_start_after_and_prefix(inner: Store) -> None:
    inner.put("tenant-a", b"not mine")  # sorts just before every prefixed key
    inner.put("tenant-a0", b"not mine")  # and one just after
    store = Prefixed(inner, "tenant-a/")
    for key in ORDER_KEYS:
        store.put(key, b"v")
    expected = utf8_sorted(ORDER_KEYS)
    assert list(store.keys()) == expected
    assert [m.key for m in store.list()] == expected
    for i, bound in enumerate(expected):
        assert list(store.keys(start_after=bound)) == expected[i + 1 :]
    assert list(store.keys("a/")) == ["a/", "a/b"]
    assert list(store.keys("a/", start_after="a/")) == ["a/b"]
    assert list(store.keys("b", start_after="a")) == ["b"]
    assert list(store.keys(start_after="\U0010ffff" * 300)) == []  # a bound, not a key


def test_ls_rolls_up_below_the_prefix_only(inner: Store) -> None:
    store = Prefixed(inner, "x/y/")  # the prefix holds the delimiter itself
    for key in ["a", "b/c", "b/d/e", "c-d", "f/"]:
        store.put(key, b"v")
    listing = store.ls()
    assert [m.key for m in listing.objects] == ["a", "c-d"]
    assert listing.prefixes == ["b/", "f/"]
    below = store.ls("b/")
    assert [m.key for m in below.objects] == ["b/c"] and below.prefixes == ["b/d/"]
    dashed = store.ls("", delimiter="-")
    assert dashed.prefixes == ["c-"]
    assert [m.key for m in dashed.objects] == ["a", "b/c", "b/d/e", "f/"]


def test_native_paths_of_the_inner_store_are_used() -> None:
    inner = CountingStore()
    store = Prefixed(inner, "p/")
    store.put_many({"a": b"1", "b": b"2"})
    copied = store.copy("a", "c")
    assert copied.key == "c" and inner.get("p/c") == b"1"
    assert store.incr("n", 5) == 5 and store.decr("n") == 4
    assert store.get_many(["a", "b", "zz"]) == {"a": b"1", "b": b"2"}
    assert store.ls().objects[0].key == "a"
    store.delete_many(["a", "b"])
    assert inner.calls == {
        "put_many": 1,
        "copy": 1,
        "incr": 2,
        "get_many": 1,
        "ls": 1,
        "delete_many": 1,
    }
    assert list(store.keys()) == ["c", "n"]


def test_url_for_maps_the_key() -> None:
    class Addressed(MemoryStore):
        def _url_for(self, key: str, method: str, expires: float | None) -> str:
            return f"mem://{method}/{key}"

    store = Prefixed(Addressed(), "p/")
    assert store.url_for("k") == "mem://GET/p/k"
    assert store.url_for("k", method="put") == "mem://PUT/p/k"


def test_streams_go_to_the_inner_store(inner: Store, tmp_path: Path) -> None:
    store = Prefixed(inner, "p/")
    source = tmp_path / "src"
    source.write_bytes(b"s" * 100_000)
    meta = store.put_file("big", source, content_type="x/y")
    assert meta.key == "big" and inner.head("p/big").size == 100_000
    with store.open("big") as stream:
        assert stream.read() == b"s" * 100_000
    assert store.get_file("big", tmp_path / "out") == 100_000


def test_repr_and_prefix() -> None:
    store = Prefixed(MemoryStore(), "t/")
    assert store.prefix == "t/" and repr(store).endswith(", 't/')")


# -- property: a Prefixed store is a dict under its prefix -------------------------

_key = st.text(
    st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=8
) | st.sampled_from(["a", "a/", "a/b", "b", "é"])
_op = st.one_of(
    st.tuples(st.just("put"), _key, st.binary(max_size=4)),
    st.tuples(st.just("delete"), _key, st.none()),
    st.tuples(st.just("copy"), _key, _key),
    st.tuples(st.just("incr"), _key, st.none()),
)


@settings(max_examples=150, deadline=None)
@given(prefix=st.sampled_from(["p/", "p", "é/"]), ops=st.lists(_op, max_size=25), probe=_key)
def test_matches_a_dict_model(
    prefix: str, ops: builtins.list[tuple[str, str, object]], probe: str
) -> None:
    inner = MemoryStore()
    inner.put("p", b"neighbour")  # a key of inner beside (and, for "p", equal to) the prefix
    store = Prefixed(inner, prefix)
    model: dict[str, bytes] = {}
    for op, key, arg in ops:
        if op == "put":
            assert isinstance(arg, bytes)
            store.put(key, arg)
            model[key] = arg
        elif op == "delete":
            store.delete(key)
            model.pop(key, None)
        elif op == "copy":
            assert isinstance(arg, str)
            if key in model:
                store.copy(key, arg)
                model[arg] = model[key]
            else:
                with pytest.raises(KeyNotFound):
                    store.copy(key, arg)
        elif key not in model or model[key].isdigit():
            model[key] = b"%d" % store.incr(key)
    assert list(store.keys()) == utf8_sorted(model)
    assert {m.key: m.size for m in store.list()} == {k: len(v) for k, v in model.items()}
    assert store.get_many(list(model)) == model
    assert list(store.keys(probe[:1])) == utf8_sorted(k for k in model if k.startswith(probe[:1]))
    assert list(store.keys(start_after=probe)) == utf8_sorted(k for k in model if k > probe)
    listing = store.ls()
    assert [m.key for m in listing.objects] == utf8_sorted(k for k in model if "/" not in k)
    assert listing.prefixes == utf8_sorted({k[: k.index("/") + 1] for k in model if "/" in k})
    assert {k[len(prefix) :] for k in inner.keys(prefix) if k != prefix} == set(model)
    assert inner.get("p") == b"neighbour"
