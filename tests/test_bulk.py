"""bulk.copy_all and bulk.usage: whole-store copy and usage counts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mirrorkv import InvalidKey, InvalidValue, MemoryStore, Meta, Store
from mirrorkv.bulk import CopyReport, SupportsUsage, Usage, copy_all, usage


def _filled() -> MemoryStore:
    store = MemoryStore()
    store.put("photos/2025/a.jpg", b"a" * 10, content_type="image/jpeg", metadata={"by": "ann"})
    store.put("photos/2025/b.jpg", b"b" * 20)
    store.put("photos/2026/c.jpg", b"c" * 30)
    store.put("photos/index.html", b"<html>", content_type="text/html")
    store.put("photos.txt", b"notes")
    store.put("readme", b"")
    return store


def test_copy_all_copies_values_types_and_metadata_under_the_prefix() -> None:
    source, target = _filled(), MemoryStore()
    seen: list[Meta] = []
    report = copy_all(source, target, "photos/", progress=seen.append)
    assert report == CopyReport(objects=4, bytes=66, skipped=0)
    assert list(target) == [
        "photos/2025/a.jpg",
        "photos/2025/b.jpg",
        "photos/2026/c.jpg",
        "photos/index.html",
    ]
    for key in target:
        assert target.get(key) == source.get(key)
    copied = target.head("photos/2025/a.jpg")
    assert copied.content_type == "image/jpeg"
    assert dict(copied.metadata) == {"by": "ann"}
    assert target.head("photos/index.html").content_type == "text/html"
    assert [meta.key for meta in seen] == list(target)
    assert [meta.size for meta in seen] == [10, 20, 30, 6]


def test_copy_all_without_prefix_copies_everything_and_overwrites() -> None:
    source, target = _filled(), MemoryStore()
    target.put("readme", b"old", content_type="text/plain")
    target.put("elsewhere", b"kept")
    report = copy_all(source, target)
    assert (report.objects, report.bytes) == (6, 71)
    assert target.get("readme") == b""
    assert target.head("readme").content_type == "application/octet-stream"
    assert target.get("elsewhere") == b"kept"


def test_copy_all_of_an_empty_prefix_copies_nothing() -> None:
    assert copy_all(_filled(), MemoryStore(), "nothing/") == CopyReport(0, 0, 0)


def test_copy_all_rejects_an_invalid_prefix() -> None:
    with pytest.raises(InvalidKey):
        copy_all(MemoryStore(), MemoryStore(), "bad\x00prefix")


class _ListsAGhost(MemoryStore):
    """A store whose listing names a key deleted before it can be read (a race, made still)."""

    def _list(self, prefix: str, start_after: str | None) -> Iterator[Meta]:
        yield Meta("a-ghost", 3, "", 0.0)
        yield from super()._list(prefix, start_after)


def test_copy_all_skips_keys_deleted_after_the_listing() -> None:
    source = _ListsAGhost()
    source.put("real", b"value")
    target = MemoryStore()
    assert copy_all(source, target) == CopyReport(objects=1, bytes=5, skipped=1)
    assert list(target) == ["real"]


def test_copy_all_streams_between_sqlite_stores(tmp_path: Path) -> None:
    from mirrorkv.stores.sqlite import SQLiteStore

    payload = bytes(range(256)) * 8192  # 2 MiB, more than one streaming chunk
    with SQLiteStore(tmp_path / "a.db") as source, SQLiteStore(tmp_path / "b.db") as target:
        source.put("big/blob", payload, content_type="application/x-test", metadata={"k": "v"})
        report = copy_all(source, target, "big/")
        assert report == CopyReport(1, len(payload), 0)
        assert target.get("big/blob") == payload
        meta = target.head("big/blob")
        assert (meta.content_type, dict(meta.metadata)) == ("application/x-test", {"k": "v"})
        assert meta.etag == source.head("big/blob").etag


def test_usage_total() -> None:
    assert usage(_filled()) == Usage(objects=6, bytes=71)
    assert usage(_filled(), "photos/") == Usage(objects=4, bytes=66)
    assert usage(MemoryStore()) == Usage(0, 0)


def test_usage_prefix_matches_as_a_string() -> None:
    # As on S3: "photos" covers "photos/..." and "photos.txt".
    assert usage(_filled(), "photos") == Usage(objects=5, bytes=71)


def test_usage_depth_one_breaks_down_by_child_prefix() -> None:
    result = usage(_filled(), "photos/", depth=1)
    assert (result.objects, result.bytes) == (4, 66)
    assert list(result.children) == ["photos/2025/", "photos/2026/"]
    assert result.children["photos/2025/"] == Usage(2, 30)
    assert result.children["photos/2026/"] == Usage(1, 30)
    # photos/index.html sits directly at the level: in the total, in no child.
    assert sum(child.bytes for child in result.children.values()) == 60


def test_usage_depth_two_nests() -> None:
    result = usage(_filled(), depth=2)
    assert list(result.children) == ["photos/"]
    photos = result.children["photos/"]
    assert photos.objects == 4
    assert photos.children == {"photos/2025/": Usage(2, 30), "photos/2026/": Usage(1, 30)}
    assert result.as_dict()["children"]["photos/"]["children"]["photos/2026/"] == {
        "objects": 1,
        "bytes": 30,
        "children": {},
    }


def test_usage_depth_zero_has_no_children() -> None:
    assert usage(_filled(), depth=0).children == {}


@pytest.mark.parametrize("depth", [-1, 1.5, True, "1"])
def test_usage_rejects_a_bad_depth(depth: object) -> None:
    with pytest.raises(InvalidValue):
        usage(MemoryStore(), depth=depth)  # type: ignore[arg-type]


class _KnowsItsUsage(MemoryStore):
    """A store that answers usage itself, as a mirror does from its index."""

    def du(self, prefix: str = "", *, depth: int = 0) -> Usage:
        return Usage(objects=42, bytes=depth)


def test_usage_asks_a_store_that_knows() -> None:
    store: Store = _KnowsItsUsage()
    assert isinstance(store, SupportsUsage)
    assert not isinstance(MemoryStore(), SupportsUsage)
    assert usage(store, "x/", depth=3) == Usage(objects=42, bytes=3)


def test_usage_is_hashable_and_frozen() -> None:
    value = usage(_filled(), depth=1)
    assert isinstance(hash(value), int)
    with pytest.raises(AttributeError):
        value.objects = 1  # type: ignore[misc]


def test_copy_all_from_memory_to_files_and_usage_there(tmp_path: Path) -> None:
    from mirrorkv.stores.file import FileStore

    with FileStore(tmp_path / "blobs") as target:
        report = copy_all(_filled(), target, "photos")
        assert report == CopyReport(objects=5, bytes=71, skipped=0)
        assert target.head("photos/2025/a.jpg").metadata == {"by": "ann"}
        assert usage(target, depth=1) == usage(_filled(), "photos", depth=1)
