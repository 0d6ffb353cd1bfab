"""ReadOnly: every read equals the wrapped store's; every write raises and changes nothing.

The writing conformance suite cannot run on it, so this file checks the
reading half of the contract against the store it wraps (memory, SQLite and
a file store, the last for ``url_for``).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mirrorkv import MemoryStore
from mirrorkv.errors import InvalidKey, KeyNotFound, NotSupported, ReadOnlyError
from mirrorkv.layers.readonly import ReadOnly
from mirrorkv.meta import Meta
from mirrorkv.store import Capability, Store
from mirrorkv.stores.file import FileStore
from mirrorkv.stores.sqlite import SQLiteStore
from mirrorkv.testing.keysets import ORDER_KEYS

CONTENT = {
    **{key: key.encode() for key in ORDER_KEYS},
    "dir/a": b"x" * 3000,
    "dir/sub/b": b"",
    "typed": b"<p/>",
    "counter": b"41",
}


@pytest.fixture(params=["memory", "sqlite", "file"])
def inner(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    store: Store
    if request.param == "memory":
        store = MemoryStore()
    elif request.param == "sqlite":
        store = SQLiteStore(tmp_path / "inner.db")
    else:
        store = FileStore(tmp_path / "files")
    for key, value in CONTENT.items():
        store.put(key, value)
    store.put("typed", CONTENT["typed"], content_type="text/html", metadata={"lang": "é"})
    return store


def snapshot(store: Store) -> dict[str, tuple[bytes, Meta]]:
    return {meta.key: (store.get(meta.key), meta) for meta in store.list()}


def test_every_read_equals_the_inner_stores(inner: Store, tmp_path: Path) -> None:
    view = ReadOnly(inner)
    assert list(view) == list(inner) == list(inner.keys())
    assert list(view.keys()) == list(inner.keys())
    assert list(view.list()) == list(inner.list())
    for prefix in ("", "a", "a/", "dir/", "nothing"):
        assert list(view.keys(prefix)) == list(inner.keys(prefix))
        assert list(view.list(prefix)) == list(inner.list(prefix))
        assert view.ls(prefix) == inner.ls(prefix)
        assert view.ls(prefix, delimiter="-") == inner.ls(prefix, delimiter="-")
    for bound in ("a", "a/", "dir/a", "\U0010ffff"):
        assert list(view.keys(start_after=bound)) == list(inner.keys(start_after=bound))
        assert list(view.list("dir/", start_after=bound)) == list(
            inner.list("dir/", start_after=bound)
        )
    for key in CONTENT:
        assert view.get(key) == inner.get(key)
        assert view.head(key) == inner.head(key)
        assert key in view
        with view.open(key) as stream:
            assert stream.read() == inner.get(key)
        target = io.BytesIO()
        assert view.get_file(key, target) == len(CONTENT[key])
        assert target.getvalue() == CONTENT[key]
    assert view.get_file("dir/a", tmp_path / "out") == 3000
    assert (tmp_path / "out").read_bytes() == CONTENT["dir/a"]
    wanted = [*CONTENT, "absent", "a"]
    assert view.get_many(wanted) == inner.get_many(wanted) == CONTENT
    assert dict(view.head("typed").metadata) == {"lang": "é"}
    assert "absent" not in view
    for read in (view.get, view.head, view.open):
        with pytest.raises(KeyNotFound):
            read("absent")


def test_url_for_get_passes_and_put_is_refused(inner: Store) -> None:
    view = ReadOnly(inner)
    if Capability.URLS in inner.capabilities:
        assert view.url_for("dir/a") == inner.url_for("dir/a")
        assert Capability.URLS in view.capabilities
    else:
        with pytest.raises(NotSupported):
            view.url_for("dir/a")
    with pytest.raises(ReadOnlyError):
        view.url_for("dir/a", method="PUT")
    with pytest.raises(ReadOnlyError):
        view.url_for("new", method="put", expires=5)


def writes(view: Store, tmp_path: Path) -> list[tuple[str, Callable[[], Any]]]:
    source = tmp_path / "source"
    source.write_bytes(b"file")
    return [
        ("put", lambda: view.put("new", b"v")),
        ("put over", lambda: view.put("a", b"v")),
        ("put create-only", lambda: view.put("new", b"v", if_none_match="*")),
        ("put_file path", lambda: view.put_file("new", source)),
        ("put_file stream", lambda: view.put_file("a", io.BytesIO(b"v"))),
        ("put_many", lambda: view.put_many({"new": b"v", "a": b"w"})),
        ("put_many empty", lambda: view.put_many({})),
        ("delete", lambda: view.delete("a")),
        ("delete absent", lambda: view.delete("absent")),
        ("delete if_match", lambda: view.delete("a", if_match=view.head("a").etag)),
        ("delete_many", lambda: view.delete_many(["a", "b"])),
        ("delete_many empty", lambda: view.delete_many([])),
        ("copy", lambda: view.copy("a", "b")),
        ("copy new", lambda: view.copy("a", "new")),
        ("incr", lambda: view.incr("counter")),
        ("incr absent", lambda: view.incr("new")),
        ("decr", lambda: view.decr("counter", 2)),
    ]


def test_every_write_raises_and_changes_nothing(inner: Store, tmp_path: Path) -> None:
    before = snapshot(inner)
    view = ReadOnly(inner)
    for name, call in writes(view, tmp_path):
        if name.endswith("empty"):
            assert not call()  # nothing to write, nothing refused
            continue
        with pytest.raises(ReadOnlyError):
            call()
        assert snapshot(inner) == before, name
    assert snapshot(inner) == before


def test_invalid_keys_are_still_invalid(inner: Store) -> None:
    view = ReadOnly(inner)
    for call in (
        lambda: view.put("", b"v"),
        lambda: view.delete("a\x00"),
        lambda: view.copy("a", ""),
        lambda: view.incr(""),
        lambda: view.delete_many(["a", ""]),
        lambda: view.put_many({"": b"v"}),
    ):
        with pytest.raises(InvalidKey):
            call()


def test_writes_to_the_inner_store_are_seen_and_capabilities_narrowed(inner: Store) -> None:
    view = ReadOnly(inner)
    inner.put("later", b"l")
    assert view.get("later") == b"l"
    inner.delete("later")
    assert "later" not in view
    writing = (
        Capability.CONDITIONAL_WRITES
        | Capability.NATIVE_COUNTERS
        | Capability.TRANSACTIONS
        | Capability.SERVER_SIDE_COPY
    )
    assert not view.capabilities & writing
    assert view.inner is inner


def test_closing_the_view_closes_the_inner_store(tmp_path: Path) -> None:
    inner = SQLiteStore(tmp_path / "c.db")
    inner.put("k", b"v")
    with ReadOnly(inner) as view:
        assert view.get("k") == b"v"
    with SQLiteStore(tmp_path / "c.db") as again:
        assert again.get("k") == b"v"
