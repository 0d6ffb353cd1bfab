"""Mirror: what the layer adds over the conformance suite (which it also passes).

Zero remote requests for every question, writes recorded remote-first, the
dirty journal, force=, resumable sync, the value cache, stats, events, several
processes sharing one index, and an S3 remote on moto.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mirrorkv import MemoryStore
from mirrorkv.errors import InvalidValue, KeyNotFound, PreconditionFailed
from mirrorkv.meta import Meta
from mirrorkv.mirror import Mirror, SQLiteIndex, SyncReport, Usage
from mirrorkv.stores.sqlite import SQLiteStore


@pytest.fixture
def remote() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def mirror(remote: MemoryStore, tmp_path: Path) -> Iterator[Mirror]:
    with Mirror(remote, SQLiteIndex(tmp_path / "index.db"), bucket="b") as opened:
        yield opened


def fill(mirror: Mirror) -> dict[str, bytes]:
    values = {
        f"p{p}/k{k:02d}.{'txt' if k % 2 else 'bin'}": b"x" * (k + 1)
        for p in range(3)
        for k in range(12)
    }
    values["top"] = b"12345"
    mirror.put_many(values)
    return values


def test_questions_cost_no_remote_request(mirror: Mirror) -> None:
    values = fill(mirror)
    before = mirror.stats().remote
    assert [m.key for m in mirror.list()] == sorted(values)
    assert list(mirror.keys("p1/")) == sorted(k for k in values if k.startswith("p1/"))
    listing = mirror.ls()
    assert listing.prefixes == ["p0/", "p1/", "p2/"] and [m.key for m in listing.objects] == ["top"]
    assert mirror.head("p0/k03.txt").size == 4
    assert "p0/k03.txt" in mirror and "nope" not in mirror
    assert mirror.du() == Usage(len(values), sum(map(len, values.values())))
    breakdown = mirror.du(depth=2)
    assert breakdown.children["p1/"] == Usage(12, sum(range(1, 13)))
    assert breakdown.objects == len(values) and list(breakdown.children) == ["p0/", "p1/", "p2/"]
    assert mirror.du("p", depth=1).children["p2/"].objects == 12
    assert [m.key for m in mirror.find("p2/*.txt", min_size=10)] == ["p2/k09.txt", "p2/k11.txt"]
    stats = mirror.stats()
    assert stats.remote == before  # nothing asked of the remote
    assert stats.local["head"] == 3 and stats.saved["HEAD"] == 3
    assert stats.saved["LIST"] >= 6 and stats.saved_dollars > 0


def test_writes_are_recorded(mirror: Mirror, remote: MemoryStore) -> None:
    mirror.put("a", b"1", content_type="text/plain", metadata={"x": "y"})
    assert mirror.head("a") == remote.head("a")
    mirror.copy("a", "b")
    assert mirror.head("b").metadata == {"x": "y"}
    mirror.put_file("c", Path(__file__))
    assert mirror.head("c").size == Path(__file__).stat().st_size
    assert mirror.incr("n", 5) == 5 and mirror.head("n").size == 1
    mirror.delete("a")
    mirror.delete_many(["b", "c"])
    assert list(mirror.keys()) == ["n"] == list(remote.keys())


def test_a_failed_remote_write_leaves_the_index(mirror: Mirror) -> None:
    mirror.put("a", b"1")
    with pytest.raises(PreconditionFailed):
        mirror.put("a", b"2", if_none_match="*")
    assert mirror.head("a").size == 1 and mirror.dirty() == []
    with pytest.raises(InvalidValue):
        mirror.put_many({"b": "not bytes"})  # type: ignore[dict-item]
    assert "b" not in mirror


def test_a_failed_index_write_is_repaired(remote: MemoryStore, tmp_path: Path) -> None:
    path = tmp_path / "index.db"
    with Mirror(remote, SQLiteIndex(path, timeout=0.05), bucket="b") as mirror:
        mirror.put("kept", b"1")
        blocker = sqlite3.connect(path)
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the index
        try:
            meta = mirror.put("late", b"22")  # the remote write is acknowledged...
        finally:
            blocker.rollback()
            blocker.close()
        assert remote.head("late") == meta
        assert "late" not in mirror  # ...the index missed it, and says so:
        assert mirror.dirty() == ["late"]
        report = mirror.repair()
        assert (report.added, report.requests) == (1, 1)
        assert mirror.head("late") == meta and mirror.dirty() == []


def test_sync_finds_what_changed_behind_its_back(mirror: Mirror, remote: MemoryStore) -> None:
    fill(mirror)
    remote.put("p0/new", b"n")
    remote.put("p0/k00.bin", b"changed")
    remote.delete("p1/k05.txt")
    remote.delete("top")
    report = mirror.sync()
    assert (report.added, report.changed, report.removed) == (1, 1, 2)
    assert report.complete and report.requests == 1 and report.checked == 36
    assert [m.key for m in mirror.list()] == list(remote.keys())
    assert mirror.du() == Usage(36, sum(m.size for m in remote.list()))
    assert mirror.sync().added == mirror.sync().changed == 0


def test_sync_of_a_prefix_keeps_the_rest(mirror: Mirror, remote: MemoryStore) -> None:
    fill(mirror)
    remote.delete("p0/k01.txt")
    remote.delete("p1/k01.txt")
    assert mirror.sync("p0/").removed == 1
    assert "p1/k01.txt" in mirror
    assert mirror.sync("p1/", delete_missing=False).removed == 0
    assert "p1/k01.txt" in mirror


def test_an_interrupted_sync_resumes(mirror: Mirror, remote: MemoryStore) -> None:
    remote.put_many({f"k{i:05d}": b"v" for i in range(2500)})

    class Stop(Exception):
        pass

    def stop_after_first_page(report: SyncReport) -> None:
        raise Stop

    with pytest.raises(Stop):
        mirror.sync(progress=stop_after_first_page)
    assert mirror.du().objects == 1000
    pages: list[int] = []
    report = mirror.sync(progress=lambda r: pages.append(r.checked))
    assert report.resumed_after == "k00999" and pages == [1000, 1500]
    assert report.added == 1500 and mirror.du().objects == 2500
    assert mirror.sync().resumed_after is None  # a finished sync leaves no checkpoint


def test_sync_by_keys_heads_only_those(mirror: Mirror, remote: MemoryStore) -> None:
    fill(mirror)
    remote.put("p0/k00.bin", b"changed")
    remote.put("fresh", b"f")
    remote.delete("top")
    report = mirror.sync(keys=["p0/k00.bin", "fresh", "top", "never"])
    assert (report.added, report.changed, report.removed, report.requests) == (1, 1, 1, 4)
    assert mirror.head("p0/k00.bin").size == 7 and "top" not in mirror


def test_force_asks_the_remote_and_refreshes(mirror: Mirror, remote: MemoryStore) -> None:
    fill(mirror)
    remote.put("p0/k00.bin", b"changed")
    remote.put("p9/hidden", b"h")
    remote.delete("top")
    assert mirror.head("p0/k00.bin").size == 1
    assert mirror.head("p0/k00.bin", force=True).size == 7
    assert mirror.head("p0/k00.bin").size == 7
    with pytest.raises(KeyNotFound):
        mirror.head("top", force=True)
    assert "top" not in mirror
    assert [m.key for m in mirror.list("p9/", force=True)] == ["p9/hidden"]
    assert "p9/hidden" in mirror
    remote.delete("p9/hidden")
    remote.delete("p2/k03.txt")
    assert mirror.ls(force=True).prefixes == ["p0/", "p1/", "p2/"]
    assert "p9/hidden" not in mirror
    assert mirror.du("p2/", force=True).objects == 11
    assert mirror.get("p0/k01.txt", force=True) == b"xx"
    assert mirror.exists("p0/k01.txt", force=True)
    with pytest.raises(InvalidValue):
        mirror.du(depth=-1)


def test_value_cache_serves_while_the_etag_matches(remote: MemoryStore, tmp_path: Path) -> None:
    cache = MemoryStore()
    with Mirror(
        remote, SQLiteIndex(tmp_path / "i.db"), bucket="b", cache=cache, cache_bytes=10
    ) as mirror:
        mirror.put("a", b"12345")
        gets = mirror.stats().remote.get("GET", 0)
        assert mirror.get("a") == b"12345" and mirror.open("a").read() == b"12345"
        assert mirror.stats().remote.get("GET", 0) == gets  # served from the cache
        remote.put("a", b"other")  # behind its back: the index still says the old etag
        assert mirror.get("a") == b"12345"
        mirror.sync()
        assert mirror.get("a") == b"other"  # the etag moved on: read again, re-cached
        assert mirror.stats().remote["GET"] == gets + 1
        mirror.put("b", b"67890")  # 10 bytes: both fit
        mirror.put("c", b"x")  # evicts the least recently used
        assert sorted(cache.keys()) == ["b", "c"]
        mirror.put("big", b"y" * 11)  # larger than the bound: never cached
        assert "big" not in cache


def _event(
    key: str, kind: str, sequencer: str, size: int = 1, bucket: str = "bkt"
) -> dict[str, object]:
    name = "ObjectCreated:Put" if kind == "created" else "ObjectRemoved:Delete"
    obj: dict[str, object] = {"key": key, "sequencer": sequencer}
    if kind == "created":
        obj.update(size=size, eTag=f"{size:032x}")
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventTime": "2026-11-23T10:00:00.000Z",
        "eventName": name,
        "s3": {"bucket": {"name": bucket}, "object": obj},
    }


def test_events_apply_in_sequencer_order(tmp_path: Path) -> None:
    with Mirror(MemoryStore(), SQLiteIndex(tmp_path / "i.db"), bucket="bkt") as mirror:
        # Delivered out of order and twice: the removal (sequencer 3) is the latest.
        late = {"Records": [_event("a", "removed", "0000000003")]}
        early = {
            "Records": [_event("a", "created", "0000000001", 5), _event("b", "created", "02", 7)]
        }
        assert mirror.apply_events(late).removed == 1
        report = mirror.apply_events(early)
        assert (report.recorded, report.stale) == (1, 1)
        assert "a" not in mirror and mirror.head("b").size == 7
        assert mirror.apply_events(early).stale == 2  # a duplicate delivery changes nothing
        other = mirror.apply_events({"Records": [_event("x", "created", "09", bucket="other")]})
        assert other.skipped == 1 and "x" not in mirror


def _write_through_mirror(store: str, index: str, worker: int, barrier: Any) -> None:
    with Mirror(SQLiteStore(store), SQLiteIndex(index), bucket="shared") as mirror:
        barrier.wait()
        for i in range(300):
            key = f"shared/w{i % 2}/k{i % 3}"  # every key written by every process
            if i % 7 == 3:
                mirror.delete(key)
            else:
                mirror.put(key, b"v" * (worker + i))


def test_processes_sharing_an_index_keep_it_exact(tmp_path: Path) -> None:
    store, index = str(tmp_path / "s.db"), str(tmp_path / "i.db")
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    workers = [
        context.Process(target=_write_through_mirror, args=(store, index, w, barrier))
        for w in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    with Mirror(SQLiteStore(store), SQLiteIndex(index), bucket="shared") as mirror:
        remote = mirror.remote
        truth = {m.key: m.size for m in remote.list()}
        assert {m.key: m.size for m in mirror.list()} == truth
        assert mirror.du() == Usage(len(truth), sum(truth.values()))
        mine = [key for key in truth if key.startswith("shared/w1/")]
        assert mirror.du("shared/", depth=1).children["shared/w1/"].objects == len(mine)
        assert mirror.sync().added == mirror.sync().changed == 0


@pytest.mark.parametrize("late_write_wins", [True, False])
def test_concurrent_writers_of_one_key_leave_the_remote_state(
    tmp_path: Path, late_write_wins: bool
) -> None:
    """Two mirrors write one key; each records after its own remote write, in either order.

    The interleaving is made by hand: mirror A's put is split into its steps
    around a whole put by mirror B. Whatever the order, the index ends up
    holding what the remote holds.
    """
    remote = SQLiteStore(tmp_path / "s.db")
    a = Mirror(remote, SQLiteIndex(tmp_path / "i.db"), bucket="b")
    b = Mirror(remote, SQLiteIndex(tmp_path / "i.db"), bucket="b")
    a.put("k", b"0")
    seen = a._seen("k")  # A reads the entry, then writes the remote...
    if late_write_wins:
        b.put("k", b"from B")  # ...B writes and records in between...
        meta_a = remote.put("k", b"from A, last")
    else:
        meta_a = remote.put("k", b"from A")
        b.put("k", b"from B, last")
    a._settle("k", seen, meta_a, wrote=True)  # ...and A records last.
    assert a.head("k") == remote.head("k")
    assert a.dirty() == []


@pytest.mark.parametrize("late_write_wins", [True, False])
def test_a_batch_racing_a_writer_leaves_the_remote_state(
    tmp_path: Path, late_write_wins: bool
) -> None:
    """put_many and delete_many settle each key against what they saw, as single writes do."""
    remote = SQLiteStore(tmp_path / "s.db")
    a = Mirror(remote, SQLiteIndex(tmp_path / "i.db"), bucket="b")
    b = Mirror(remote, SQLiteIndex(tmp_path / "i.db"), bucket="b")
    a.put_many({"k": b"0", "calm": b"0", "gone": b"0"})
    seen = a._seen_many(["k", "calm", "gone"])  # A reads the entries, then writes the remote...
    if late_write_wins:
        b.put("k", b"from B")  # ...B writes and records in between...
        metas = remote.put_many({"k": b"from A, last", "calm": b"A"})
        remote.delete("gone")
    else:
        metas = remote.put_many({"k": b"from A", "calm": b"A"})
        remote.delete("gone")
        b.put("k", b"from B, last")
    results: dict[str, object] = {meta.key: meta for meta in metas}
    a._settle_many(seen, {**results, "gone": None})  # type: ignore[dict-item]
    for key in ("k", "calm"):
        assert a.head(key) == remote.head(key)
    assert "gone" not in a
    assert a.dirty() == []
    assert a.du() == Usage(2, remote.head("k").size + 1)


def test_a_reader_never_overwrites_a_newer_record(tmp_path: Path) -> None:
    remote = SQLiteStore(tmp_path / "s.db")
    a = Mirror(remote, SQLiteIndex(tmp_path / "i.db"), bucket="b")
    b = Mirror(remote, SQLiteIndex(tmp_path / "i.db"), bucket="b")
    a.put("k", b"old")
    seen = a._seen("k")
    stale = remote.head("k")  # A's HEAD answers...
    b.put("k", b"new")  # ...then B writes and records...
    a._settle("k", seen, stale, wrote=False)  # ...and A's late record of its read gives way.
    assert a.head("k").size == 3


def test_bucket_naming(tmp_path: Path) -> None:
    with pytest.raises(InvalidValue, match="bucket="):
        Mirror(MemoryStore(), SQLiteIndex(tmp_path / "i.db"))
    store = SQLiteStore(tmp_path / "s.db")
    with Mirror(store, SQLiteIndex(tmp_path / "i.db")) as mirror:
        assert mirror.bucket == store.url
    with pytest.raises(InvalidValue):
        Mirror("s3://b", str(tmp_path / "i.db"))  # type: ignore[arg-type]


def test_listed_records_fetch_their_details_once(tmp_path: Path, s3_endpoint: str) -> None:
    from mirrorkv.stores.s3 import S3Store
    from services import unique_name
    from services.s3 import admin_client, dummy_credentials

    bucket = unique_name("mirror")
    client = admin_client(s3_endpoint)
    client.create_bucket(Bucket=bucket)
    remote = S3Store(bucket, "data/", endpoint_url=s3_endpoint, **dummy_credentials())
    remote.put("a/x", b"hello", content_type="text/plain", metadata={"Who": "me"})
    remote.put("a/y", b"bye")
    client.put_object(Bucket=bucket, Key="outside", Body=b"not under the prefix")
    index = SQLiteIndex(tmp_path / "i.db")
    with Mirror(remote, index) as mirror:
        assert mirror.bucket == bucket
        report = mirror.sync()
        assert (report.added, report.requests) == (2, 1)
        assert index.get(bucket, "data/a/x") is not None  # as S3 names it
        assert mirror.stats().remote == {"LIST": 1}
        meta = mirror.head("a/x")
        assert meta.size == 5 and mirror.stats().remote == {"LIST": 1}
        assert meta.content_type == "text/plain" and meta.metadata == {"Who": "me"}
        assert mirror.stats().remote == {"LIST": 1, "HEAD": 1}
        assert mirror.head("a/x").content_type == "text/plain"  # recorded: no second HEAD
        assert mirror.stats().remote == {"LIST": 1, "HEAD": 1}
        assert [m.key for m in mirror.find("**")] == ["a/x", "a/y"]
        assert [m.key for m in mirror.find(regex="^a/y$")] == ["a/y"]
        listed = {m.key: m for m in mirror.list()}
        assert list(listed) == ["a/x", "a/y"]
        assert [m.key for m in mirror.ls("a/").objects] == ["a/x", "a/y"]
        assert listed["a/y"].version  # a listed record: one HEAD, of its own key
        assert mirror.stats().remote == {"LIST": 1, "HEAD": 2}
        mirror.put("b", b"new")
        assert client.head_object(Bucket=bucket, Key="data/b")["ContentLength"] == 3
        assert mirror.du() == Usage(3, 11)
        mirror.delete_many(list(mirror.keys()))
    client.delete_object(Bucket=bucket, Key="outside")
    client.delete_bucket(Bucket=bucket)


def test_meta_equality_after_round_trip(mirror: Mirror, remote: MemoryStore) -> None:
    meta = mirror.put("k", b"v", metadata={"a": "b"})
    assert isinstance(meta, Meta) and mirror.head("k") == remote.head("k") == meta


def test_list_requests_follow_the_remotes_pages() -> None:
    from mirrorkv.mirror.stats import list_requests, page_sizes
    from mirrorkv.stores.s3 import S3Store

    assert [list_requests(n) for n in (0, 1, 1000, 1001, 20_000)] == [1, 1, 1, 2, 20]
    assert [list_requests(n, 100, 1000) for n in (0, 100, 101, 1100, 1101)] == [1, 1, 2, 2, 3]
    assert page_sizes(MemoryStore()) == (1000, 1000)
    assert page_sizes(S3Store) == (100, 1000)  # a short first page


def test_sync_counts_the_requests_s3_is_sent(tmp_path: Path, s3_endpoint: str) -> None:
    from mirrorkv.stores.s3 import S3Store
    from services import unique_name
    from services.s3 import admin_client, dummy_credentials

    bucket = unique_name("pages")
    client = admin_client(s3_endpoint)
    client.create_bucket(Bucket=bucket)
    sent: list[str] = []
    remote = S3Store(bucket, endpoint_url=s3_endpoint, **dummy_credentials())
    remote.put_many({f"k{i:03}": b"x" for i in range(150)})
    remote._client.meta.events.register(
        "before-send.s3.ListObjectsV2", lambda **_: sent.append("LIST")
    )
    with Mirror(remote, SQLiteIndex(tmp_path / "i.db")) as mirror:
        report = mirror.sync()
        assert report.added == 150
        assert report.requests == len(sent) == 2  # 100 keys, then 50
        assert mirror.stats().remote == {"LIST": 2}
