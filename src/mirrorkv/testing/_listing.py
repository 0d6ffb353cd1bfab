"""The conformance tests of key rules and listings."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from ..errors import InvalidKey, InvalidValue, KeyNotFound, MirrorKVError
from ..meta import Meta
from ..store import Store
from ._support import key_calls
from .keysets import ESCAPING_KEYS, INVALID_KEYS, ORDER_KEYS, utf8_sorted

__all__ = ["ListingContract"]


class ListingContract:
    """The conformance tests of key rules and listings.

    Mixed into :class:`~mirrorkv.testing.conformance.StoreConformance`, which
    provides the ``store`` fixture.
    """

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
        size = store.max_key_bytes  # 1024, less under a layer that adds to every key

        def fill(unit: str, room: int) -> str:
            key = unit * (room // len(unit.encode()))
            return key + "a" * (room - len(key.encode()))

        longest = [
            fill("x", size),
            fill("ab/", size),
            fill("é", size),
            fill("\u4e2d", size),
            fill("\U0001f600", size),
            "d/" + fill("é", size - 2),
        ]
        for key in longest:
            assert len(key.encode()) == size
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
            for name, call in key_calls(store, bad):
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
