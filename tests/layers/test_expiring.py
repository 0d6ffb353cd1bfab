"""Expiring beyond the conformance suite: real clocks and small ttls, purge, races, Redis.

Sleeps are short (ttl 0.15 s, waits of 0.2 s): the whole file sleeps about 2 s.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mirrorkv import MemoryStore
from mirrorkv.errors import (
    InvalidValue,
    KeyNotFound,
    NotSupported,
    PreconditionFailed,
)
from mirrorkv.layers.expiring import EXPIRES, Expiring
from mirrorkv.meta import Meta
from mirrorkv.store import Capability, Store
from mirrorkv.stores.file import FileStore
from mirrorkv.stores.sqlite import SQLiteStore
from mirrorkv.testing import StoreFactory
from mirrorkv.testing.conformance import StoreConformance

TTL = 0.15
WAIT = 0.2


@pytest.fixture(params=["memory", "sqlite"])
def inner(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "memory":
        return MemoryStore()
    return SQLiteStore(tmp_path / "inner.db")


class TestConformanceWithDefaultTTL(StoreConformance):
    """The whole contract holds while every write carries a (long) expiry."""

    @pytest.fixture(params=["memory", "sqlite"])
    def store_factory(self, request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
        if request.param == "memory":
            shared = MemoryStore()
            return StoreFactory("expiring-ttl-memory", lambda: Expiring(shared, default_ttl=3600))
        path = tmp_path / "store.db"
        return StoreFactory(
            "expiring-ttl-sqlite",
            lambda: Expiring(SQLiteStore(path), default_ttl=3600),
            persistent=True,
        )


def test_an_expired_key_is_absent_everywhere(inner: Store, tmp_path: Path) -> None:
    store = Expiring(inner)
    store.put("dir/short", b"s", ttl=TTL, content_type="text/plain")
    store.put("dir/long", b"l", ttl=60)
    store.put("dir/never", b"n")
    store.put("counter", b"41", ttl=TTL)
    store.put("dir/sub/short", b"s", ttl=TTL)
    assert store.get("dir/short") == b"s" and "dir/short" in store
    assert store.head("dir/short").content_type == "text/plain"
    assert store.incr("counter") == 42  # live: counts on
    time.sleep(WAIT)
    gone = ["dir/short", "counter", "dir/sub/short"]
    for key in gone:
        assert key not in store
        for read in (store.get, store.head, store.open):
            with pytest.raises(KeyNotFound):
                read(key)
        with pytest.raises(KeyNotFound):
            store.get_file(key, io.BytesIO())
        with pytest.raises(KeyNotFound):
            store.copy(key, "elsewhere")
    assert "elsewhere" not in store
    assert list(store.keys()) == ["dir/long", "dir/never"]
    assert [m.key for m in store.list("dir/")] == ["dir/long", "dir/never"]
    listing = store.ls("dir/")
    assert [m.key for m in listing.objects] == ["dir/long", "dir/never"]
    assert listing.prefixes == []
    assert store.get_many(["dir/short", "dir/long"]) == {"dir/long": b"l"}
    assert store.incr("counter", 5, initial=100) == 105  # expired: counts from initial


def test_reads_remove_what_expired(inner: Store) -> None:
    store = Expiring(inner)
    for key in ("a", "b", "c"):
        store.put(key, b"v", ttl=TTL)
    time.sleep(WAIT)
    assert "a" in inner
    assert "a" not in store  # head
    assert list(store.keys()) == []  # listing
    assert list(inner.keys()) == []


def test_purge_removes_expired_keys_and_counts_them(inner: Store) -> None:
    store = Expiring(inner, default_ttl=TTL)
    store.put_many({f"batch/{i}": b"v" for i in range(5)})
    store.put("keep/ttl", b"v", ttl=60)
    inner.put("keep/plain", b"v")  # written without the layer: never expires
    store.put("other/x", b"v")
    assert store.purge() == 0
    time.sleep(WAIT)
    assert store.purge("batch/") == 5
    assert sorted(inner.keys()) == ["keep/plain", "keep/ttl", "other/x"]
    assert store.purge() == 1
    assert store.purge() == 0
    assert sorted(store.keys()) == ["keep/plain", "keep/ttl"]


class RacingStore(MemoryStore):
    """A real MemoryStore where another client writes right after a chosen read.

    ``after_read`` runs once, after the next value read or listed record;
    ``on_head`` holds one action (or None) per coming ``_head`` call, run
    after it answered.
    """

    def __init__(self) -> None:
        super().__init__()
        self.after_read: Callable[[], None] | None = None
        self.on_head: list[Callable[[], None] | None] = []

    def _head(self, key: str) -> Meta:
        found = super()._head(key)
        if self.on_head:
            action = self.on_head.pop(0)
            if action is not None:
                action()
        return found

    def _race(self) -> None:
        action, self.after_read = self.after_read, None
        if action is not None:
            action()

    def _get_with_meta(self, key: str) -> tuple[bytes, Meta]:
        found = super()._get_with_meta(key)
        self._race()
        return found

    def _list(self, prefix: str, start_after: str | None) -> Iterator[Meta]:
        for meta in super()._list(prefix, start_after):
            yield meta
            self._race()


def test_a_fresh_rewrite_is_never_removed_by_a_stale_read() -> None:
    inner = RacingStore()
    store = Expiring(inner)
    store.put("k", b"old", ttl=TTL)
    time.sleep(WAIT)
    # The read finds the expired value; before it removes it, another client rewrites it.
    inner.after_read = lambda: Expiring(inner).put("k", b"fresh", ttl=60)
    with pytest.raises(KeyNotFound):
        store.get("k")  # answers for the value it read...
    assert store.get("k") == b"fresh"  # ...and left the rewrite alone


def test_purge_leaves_a_key_rewritten_after_it_was_listed() -> None:
    inner = RacingStore()
    store = Expiring(inner)
    store.put("a", b"old", ttl=TTL)
    store.put("b", b"old", ttl=TTL)
    time.sleep(WAIT)
    inner.after_read = lambda: Expiring(inner).put("a", b"fresh")
    assert store.purge() == 1
    assert store.get("a") == b"fresh" and "b" not in inner


class PlainDeletes(RacingStore):
    """A RacingStore without conditional deletes (as a backend that has none yet)."""

    def _delete_if(self, key: str, etag: str) -> None:
        Store._delete_if(self, key, etag)  # NotSupported


@pytest.mark.parametrize("conditional", [True, False], ids=["conditional", "plain"])
def test_a_rewrite_between_the_check_and_the_delete(conditional: bool) -> None:
    """The removal's last check and its delete race a rewrite.

    Where the wrapped store has conditional deletes the removal is one: the
    fresh value survives. Without them it falls back to a plain delete, and
    a rewrite landing in that one round trip is lost (docs: Limits).
    """
    inner = RacingStore() if conditional else PlainDeletes()
    store = Expiring(inner)

    def rewrite() -> None:
        Expiring(inner).put("k", b"fresh", ttl=60)

    for removal in ("read", "purge"):
        store.put("k", b"old", ttl=TTL)
        time.sleep(WAIT)
        if removal == "read":
            inner.on_head = [None, rewrite]  # the read's head, then the removal's check
            assert "k" not in store  # answers for the value it read
        else:
            inner.on_head = [rewrite]  # the removal's check (the listing reads no head)
            assert store.purge() == (0 if conditional else 1)
        assert inner.on_head == []
        if conditional:
            assert store.get("k") == b"fresh"
        else:
            assert "k" not in inner


def test_conditional_delete_of_an_expiring_value(inner: Store) -> None:
    try:
        inner.delete("probe", if_match="0" * 32)
    except NotSupported:
        pytest.skip(f"{type(inner).__name__} has no conditional delete yet")
    except PreconditionFailed:
        pass
    store = Expiring(inner)
    live = store.put("live", b"v", ttl=60)
    stale = store.put("stale", b"v", ttl=TTL)
    with pytest.raises(PreconditionFailed):
        store.delete("live", if_match=stale.etag + "0")
    store.delete("live", if_match=live.etag)
    assert "live" not in inner
    time.sleep(WAIT)
    assert "stale" in inner
    with pytest.raises(PreconditionFailed):
        store.delete("stale", if_match=stale.etag)  # expired: absent, nothing matches
    assert "stale" not in inner  # and removed on the way


def test_without_conditional_deletes_the_answer_is_always_not_supported() -> None:
    inner = PlainDeletes()
    store = Expiring(inner)
    live = store.put("live", b"v", ttl=60)
    stale = store.put("stale", b"v", ttl=TTL)
    time.sleep(WAIT)
    for key in ("live", "stale", "absent"):
        with pytest.raises(NotSupported):
            store.delete(key, if_match=live.etag)
    assert "live" in store and "stale" in inner
    assert inner.head("stale").etag == stale.etag


def test_create_only_over_an_expired_value(inner: Store) -> None:
    store = Expiring(inner)
    stale = store.put("k", b"old", ttl=TTL)
    time.sleep(WAIT)
    with pytest.raises(PreconditionFailed):
        store.put("k", b"new", if_match=stale.etag)  # the value it names has expired
    with pytest.raises(PreconditionFailed):
        store.put_file("k", io.BytesIO(b"new"), if_match=stale.etag)
    winners: list[int] = []

    def create(i: int) -> None:
        try:
            store.put("k", b"%d" % i, if_none_match="*")
        except PreconditionFailed:
            return
        winners.append(i)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1
    assert store.get("k") == b"%d" % winners[0]
    with pytest.raises(PreconditionFailed):
        store.put("k", b"again", if_none_match="*")


def test_create_only_stream_over_an_expired_value(inner: Store) -> None:
    store = Expiring(inner)
    store.put("k", b"old", ttl=TTL)
    time.sleep(WAIT)
    store.put_file("k", io.BytesIO(b"streamed"), if_none_match="*", ttl=60)
    assert store.get("k") == b"streamed"


def test_expiry_is_kept_hidden_and_reserved(inner: Store, tmp_path: Path) -> None:
    store = Expiring(inner, default_ttl=60)
    written = store.put("k", b"v", metadata={"user": "1"})
    assert dict(written.metadata) == {"user": "1"}
    assert dict(store.head("k").metadata) == {"user": "1"}
    assert [dict(m.metadata) for m in store.list()] == [{"user": "1"}]
    assert dict(store.ls().objects[0].metadata) == {"user": "1"}
    raw = dict(inner.head("k").metadata)
    assert set(raw) == {"user", EXPIRES}
    assert 59 < float(raw[EXPIRES]) - time.time() <= 60.001  # kept to the millisecond
    source = tmp_path / "f"
    source.write_bytes(b"file")
    for name in (EXPIRES, "MKV-Expires"):
        with pytest.raises(InvalidValue, match="reserved"):
            store.put("x", b"v", metadata={name: "0"})
        with pytest.raises(InvalidValue, match="reserved"):
            store.put_file("x", source, metadata={name: "0"})
    assert "x" not in inner


@pytest.mark.parametrize("bad", [0, -1, True, "1", float("nan"), float("inf"), None])
def test_ttl_is_validated(bad: object) -> None:
    store = Expiring(MemoryStore())
    if bad is not None:
        with pytest.raises(InvalidValue):
            store.put("k", b"v", ttl=bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidValue):
            store.put_file("k", io.BytesIO(b"v"), ttl=bad)  # type: ignore[arg-type]
    if bad is not None:
        with pytest.raises(InvalidValue):
            Expiring(MemoryStore(), default_ttl=bad)  # type: ignore[arg-type]
    assert "k" not in store


def test_default_ttl_and_what_keeps_an_expiry(inner: Store, tmp_path: Path) -> None:
    store = Expiring(inner, default_ttl=TTL)
    assert Capability.TRANSACTIONS not in store.capabilities
    assert Capability.NATIVE_COUNTERS not in store.capabilities
    source = tmp_path / "f"
    source.write_bytes(b"file")
    store.put("put", b"v")
    store.put_file("file", source)
    store.put_many([("many", b"v")])
    assert store.incr("counter") == 1
    store.put("long", b"v", ttl=60)
    created = inner.head("counter").metadata[EXPIRES]
    assert store.incr("counter") == 2
    assert inner.head("counter").metadata[EXPIRES] == created  # kept, not extended
    store.copy("put", "copied")
    assert inner.head("copied").metadata[EXPIRES] == inner.head("put").metadata[EXPIRES]
    time.sleep(WAIT)
    assert list(store.keys()) == ["long"]
    assert store.incr("counter") == 1  # a new counter


def test_url_for_checks_expiry_and_refuses_put(tmp_path: Path) -> None:
    store = Expiring(FileStore(tmp_path / "files"))
    store.put("k", b"v", ttl=TTL)
    assert store.url_for("k").startswith("file://")
    with pytest.raises(NotSupported):
        store.url_for("k", method="PUT")
    time.sleep(WAIT)
    with pytest.raises(KeyNotFound):
        store.url_for("k")
    memory = Expiring(MemoryStore())
    memory.put("k", b"v")
    with pytest.raises(NotSupported):
        memory.url_for("k")


# -- Redis: the native expiry -------------------------------------------------------


@pytest.fixture
def redis_store(request: pytest.FixtureRequest) -> Iterator[Store]:
    from services import ServiceUnavailable, skip_unavailable, unique_name

    pytest.importorskip("redis")
    from mirrorkv import open as open_store

    try:
        url: str = request.getfixturevalue("redis_url")
    except ServiceUnavailable as error:
        skip_unavailable(error)
        raise
    joined = "&" if "?" in url else "?"
    opened = open_store(f"{url}{joined}namespace={unique_name('mkvexp')}")
    try:
        yield opened
    finally:
        opened.clear()  # type: ignore[attr-defined]
        opened.close()


def test_redis_expires_natively(redis_store: Store) -> None:
    from mirrorkv.stores.redis import RedisStore

    assert isinstance(redis_store, RedisStore)
    client = redis_store.client
    store = Expiring(redis_store, default_ttl=30)
    assert store.native and Capability.SERVER_SIDE_COPY not in store.capabilities
    store.put("short", b"s", ttl=TTL)
    store.put_file("file", io.BytesIO(b"f"), ttl=TTL)
    store.put("plain", b"p")
    assert store.incr("n") == 1
    store.copy("short", "copied")
    value_key = redis_store.redis_keys("short")[0]
    assert 0 < client.pttl(value_key) <= TTL * 1000
    assert 0 < client.pttl(redis_store.redis_keys("copied")[0]) <= TTL * 1000
    assert 29_000 < client.pttl(redis_store.redis_keys("plain")[0]) <= 30_000
    assert 29_000 < client.pttl(redis_store.redis_keys("n")[0]) <= 30_000
    assert dict(store.head("short").metadata) == {}
    time.sleep(WAIT)
    assert client.exists(value_key) == 0  # Redis removed it, nobody read it
    for key in ("short", "file", "copied"):
        assert key not in store
        with pytest.raises(KeyNotFound):
            store.get(key)
    assert list(store.keys()) == ["n", "plain"]
    assert store.incr("n") == 2
    assert store.purge() == 0  # nothing left for it: Redis did the work


def test_redis_reports_absence_by_the_metadata_too(redis_store: Store) -> None:
    # A value whose stamped expiry has passed while Redis still holds it (clock
    # skew, or written by an older client): absent all the same.
    redis_store.put("k", b"v", metadata={EXPIRES: f"{time.time() - 1:.3f}"})
    store = Expiring(redis_store)
    assert "k" not in store and list(store.keys()) == []
    assert store.put("k", b"new", if_none_match="*", ttl=60).size == 3
    assert store.get("k") == b"new"


def test_a_malformed_expiry_counts_as_none(inner: Store) -> None:
    inner.put("n", b"7", metadata={EXPIRES: "soon", "keep": "1"})
    store = Expiring(inner)
    assert store.incr("n") == 8
    assert dict(store.head("n").metadata) == {"keep": "1"}
    store.copy("n", "m")
    assert store.get("m") == b"8"
