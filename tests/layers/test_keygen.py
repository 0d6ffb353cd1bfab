"""KeyGen beyond the conformance suite: every scheme and template, idempotent hash adds."""

from __future__ import annotations

import hashlib
import re
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mirrorkv import MemoryStore
from mirrorkv.errors import InvalidValue, NotSupported, PreconditionFailed
from mirrorkv.layers.keygen import KeyGen
from mirrorkv.store import Store
from mirrorkv.stores.sqlite import SQLiteStore

HEX64 = re.compile(r"[0-9a-f]{64}")


@pytest.fixture(params=["memory", "sqlite"])
def inner(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "memory":
        return MemoryStore()
    return SQLiteStore(tmp_path / "inner.db")


def test_uuid_keys_are_fresh_hex(inner: Store) -> None:
    store = KeyGen(inner)
    assert (store.scheme, store.template) == ("uuid", "{uuid}")
    keys = [store.add(b"same") for _ in range(50)]
    assert len(set(keys)) == 50
    assert all(re.fullmatch(r"[0-9a-f]{32}", key) for key in keys)
    assert all(inner.get(key) == b"same" for key in keys)


def test_ulid_keys_sort_by_time(inner: Store) -> None:
    store = KeyGen(inner, scheme="ulid", template="{ulid:10}/{ulid}")
    keys = []
    for _ in range(3):
        keys.append(store.add(b"v", content_type="text/plain"))
        time.sleep(0.002)  # a new millisecond: ULIDs order by time across milliseconds
    assert keys == sorted(keys) == list(store.keys())
    for key in keys:
        folder, ulid = key.split("/")
        assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{26}", ulid) and ulid.startswith(folder)
        assert store.head(key).content_type == "text/plain"


def test_missing_ulid_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ulid", None)  # makes `import ulid` fail
    with pytest.raises(NotSupported, match=r"mirrorkv\[ulid\]"):
        KeyGen(MemoryStore(), scheme="ulid")
    KeyGen(MemoryStore(), scheme="uuid")  # the other schemes need nothing


@pytest.mark.parametrize(
    ("scheme", "digest"),
    [
        ("sha256", lambda data: hashlib.sha256(data).hexdigest()),
        ("blake2b", lambda data: hashlib.blake2b(data, digest_size=32).hexdigest()),
    ],
)
def test_hash_keys_and_templates(inner: Store, scheme: str, digest: object) -> None:
    assert callable(digest)
    store = KeyGen(inner, scheme=scheme, template="blobs/{hash:2}/{hash:4}/{hash}.bin")
    hexdigest = digest(b"payload")
    key = store.add(bytearray(b"payload"))
    assert key == f"blobs/{hexdigest[:2]}/{hexdigest[:4]}/{hexdigest}.bin"
    assert key == store.key_for(b"payload")
    assert inner.get(key) == b"payload"
    assert HEX64.fullmatch(KeyGen(inner, scheme=scheme).add(b"payload"))


def test_hash_adds_are_idempotent_and_never_rewrite(inner: Store) -> None:
    store = KeyGen(inner, scheme="sha256", template="{hash:2}/{hash}")
    key = store.add(b"data", content_type="text/plain", metadata={"first": "1"})
    first = store.head(key)
    again = store.add(memoryview(b"data"), content_type="image/png", metadata={"second": "2"})
    assert again == key
    held = store.head(key)
    assert held.version == first.version  # not written again
    assert (held.content_type, dict(held.metadata)) == ("text/plain", {"first": "1"})
    assert store.add(b"other") != key
    assert len(list(store.keys())) == 2


def test_hash_key_holding_another_value_is_refused(inner: Store) -> None:
    store = KeyGen(inner, scheme="sha256")
    key = store.key_for(b"genuine")
    inner.put(key, b"tampered")
    with pytest.raises(PreconditionFailed, match="another value"):
        store.add(b"genuine")
    assert inner.get(key) == b"tampered"


@pytest.mark.parametrize(
    ("scheme", "template"),
    [
        ("uuid", "{hash}"),  # another scheme's placeholder
        ("sha256", "{uuid}"),
        ("sha256", "{hash:2}"),  # never the whole identifier
        ("sha256", "prefix/"),
        ("sha256", "{hash:0}/{hash}"),  # N out of range
        ("sha256", "{hash:65}/{hash}"),
        ("uuid", "{uuid:33}{uuid}"),
        ("sha256", "{{hash}}"),  # stray braces
        ("sha256", "{hash}}"),
        ("sha256", "{ hash }"),
        ("sha256", "{HASH}"),
        ("sha256", "{hash:x}"),
        ("sha256", "a\x00{hash}"),  # renders an invalid key
        ("sha256", "x" * 1000 + "{hash}"),  # too long once rendered
        ("sha256", 5),
        ("md5", "{hash}"),  # unknown scheme
        (None, "{hash}"),
    ],
)
def test_bad_templates_and_schemes_are_refused(scheme: object, template: object) -> None:
    with pytest.raises(InvalidValue):
        KeyGen(MemoryStore(), scheme, template)  # type: ignore[arg-type]


def test_good_templates() -> None:
    inner = MemoryStore()
    for template, shape in [
        ("{uuid}", r"[0-9a-f]{32}"),
        ("u/{uuid:1}/{uuid:32}", r"u/([0-9a-f])/\1[0-9a-f]{31}"),
        ("{uuid}.json", r"[0-9a-f]{32}\.json"),
        ("é {uuid} {uuid:3}", r"é ([0-9a-f]{3})[0-9a-f]{29} \1"),
    ]:
        assert re.fullmatch(shape, KeyGen(inner, "uuid", template).add(b"v")), template


def test_every_store_method_passes_through(inner: Store) -> None:
    store = KeyGen(inner)
    store.put("plain", b"1", metadata={"a": "b"})
    assert inner.head("plain") == store.head("plain")
    assert store.copy("plain", "copy").etag == inner.head("copy").etag
    assert store.incr("n", 3) == 3 and inner.get("n") == b"3"
    assert store.get_many(["plain", "n"]) == {"plain": b"1", "n": b"3"}
    store.delete_many(["copy"])
    assert list(store.keys()) == list(inner.keys()) == ["n", "plain"]
    assert store.capabilities == inner.capabilities
    assert repr(store).startswith("KeyGen(")


def test_values_must_be_bytes() -> None:
    store = KeyGen(MemoryStore(), "sha256")
    with pytest.raises(InvalidValue):
        store.add("text")  # type: ignore[arg-type]
    assert list(store.keys()) == []


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.binary(max_size=64), max_size=12))
def test_hash_keys_are_a_function_of_the_value(values: list[bytes]) -> None:
    store = KeyGen(MemoryStore(), "blake2b", "{hash:3}/{hash}")
    keys = [store.add(value) for value in values]
    again = [store.add(value) for value in reversed(values)]
    assert again == list(reversed(keys))
    assert len(set(keys)) == len(set(values))
    assert sorted(store.keys()) == sorted(set(keys))
    for key, value in zip(keys, values, strict=True):
        assert store.get(key) == value
