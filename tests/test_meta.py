"""Meta, the metadata record."""

import hashlib
import pickle
from datetime import UTC, datetime

import pytest

from mirrorkv import Meta
from mirrorkv.meta import DEFAULT_CONTENT_TYPE, etag_of


def test_deferred_fields_are_computed_on_access() -> None:
    meta = Meta("k", 3, b"abc", 0.0)
    assert meta.etag == hashlib.md5(b"abc").hexdigest()
    assert meta.modified == datetime(1970, 1, 1, tzinfo=UTC)
    assert meta.content_type == DEFAULT_CONTENT_TYPE
    assert dict(meta.metadata) == {}
    assert meta.version == ""


def test_etag_may_come_from_a_function() -> None:
    meta = Meta("k", 3, lambda: "feed", 0.0, version=7)
    assert meta.etag == "feed"
    assert meta.version == "7"


def test_equality_is_by_public_fields() -> None:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    lazy = Meta("k", 3, b"abc", when.timestamp(), version="v1")
    eager = Meta("k", 3, etag_of(b"abc"), when, version="v1")
    assert lazy == eager
    assert hash(lazy) == hash(eager)
    assert lazy != eager.replace(version="v2")


def test_meta_is_immutable() -> None:
    meta = Meta("k", 1, "e", 0.0)
    with pytest.raises(AttributeError):
        meta.key = "other"  # type: ignore[misc]


def test_replace_and_as_dict() -> None:
    meta = Meta("k", 1, "e", 0.0, "text/plain", {"a": "b"}, "v")
    moved = meta.replace(key="j")
    assert moved.key == "j" and moved.metadata == {"a": "b"}
    assert meta.as_dict()["modified"] == datetime(1970, 1, 1, tzinfo=UTC)


def test_pickle_roundtrip() -> None:
    meta = Meta("k", 3, b"abc", 12.5, "text/plain", {"a": "b"}, 4)
    assert pickle.loads(pickle.dumps(meta)) == meta


def test_repr_shows_computed_fields() -> None:
    assert etag_of(b"abc") in repr(Meta("k", 3, b"abc", 0.0))


def test_default_metadata_cannot_be_changed_through_a_meta() -> None:
    from mirrorkv import MemoryStore

    store = MemoryStore()
    meta = store.put("k", b"v")
    with pytest.raises(TypeError):
        meta.metadata["owner"] = "mallory"  # type: ignore[index]
    assert dict(store.put("j", b"v").metadata) == {}


@pytest.mark.parametrize("metadata", ["owner=ann", [("owner", "ann")], {"owner": 1}, {2: "x"}])
def test_metadata_must_be_a_mapping_of_str(metadata: object) -> None:
    from mirrorkv import InvalidValue, MemoryStore

    with pytest.raises(InvalidValue):
        MemoryStore().put("k", b"v", metadata=metadata)  # type: ignore[arg-type]


def test_details_fetch_once_per_record_or_per_key_when_shared() -> None:
    from mirrorkv.meta import Details

    calls: list[str] = []

    def fetch_one() -> Meta:
        calls.append("one")
        return Meta("a", 1, "e", 0.0, "text/plain", {"m": "1"}, "v1")

    one = Details(fetch_one)
    listed = Meta("a", 1, "e", 0.0, one, one, one)
    assert (listed.content_type, dict(listed.metadata), listed.version) == (
        "text/plain",
        {"m": "1"},
        "v1",
    )
    assert calls == ["one"]

    def fetch(key: str) -> Meta:
        calls.append(key)
        return Meta(key, 1, "e", 0.0, f"type/{key}", {}, f"v-{key}")

    shared = Details.shared(fetch)
    a, b = (Meta(key, 1, "e", 0.0, shared, shared, shared) for key in "ab")
    assert (a.version, b.version, a.content_type, b.content_type) == (
        "v-a",
        "v-b",
        "type/a",
        "type/b",
    )
    assert calls == ["one", "a", "b"]  # each key fetched once, however many fields are read
    with pytest.raises(TypeError):
        shared.meta()
