"""RedisIndex: the index conformance suite, and what only a real Redis server shows.

The layout as an operator reads it, URLs and options, namespaces, a server
that is not there, and partial-prefix ``du`` against a model.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

redis = pytest.importorskip("redis")

from mirrorkv.errors import InvalidURL, InvalidValue, MirrorKVError, StoreUnavailable  # noqa: E402
from mirrorkv.meta import Meta  # noqa: E402
from mirrorkv.mirror.index import Usage, open_index  # noqa: E402
from mirrorkv.mirror.redis_index import RedisIndex  # noqa: E402
from mirrorkv.testing.index_conformance import IndexConformance, IndexFactory  # noqa: E402
from mirrorkv.urls import parse_url  # noqa: E402
from services import (  # noqa: E402
    ServerProcess,
    ServiceUnavailable,
    free_port,
    skip_unavailable,
    unique_name,
)
from services.redis import start_redis  # noqa: E402


@pytest.fixture
def server_url(request: pytest.FixtureRequest) -> str:
    """The session's server, ``redis_url`` (skips with the reason where there is none)."""
    try:
        url: str = request.getfixturevalue("redis_url")
    except ServiceUnavailable as error:
        skip_unavailable(error)
        raise
    return url


def _drop_namespace(server: str, namespace: str) -> None:
    """Delete every Redis key of ``namespace`` (they all start with ``{<namespace>``)."""
    client = redis.Redis.from_url(server)
    try:
        names = list(client.scan_iter(match="{" + namespace + "*", count=1000))
        for at in range(0, len(names), 500):
            client.delete(*names[at : at + 500])
    finally:
        client.close()


@pytest.fixture
def namespace_url(server_url: str) -> Iterator[tuple[str, str]]:
    """A URL of the session's server with a namespace of this test's own, dropped afterwards."""
    namespace = unique_name("mkvi")
    separator = "&" if "?" in server_url else "?"
    yield f"{server_url}{separator}namespace={namespace}", namespace
    _drop_namespace(server_url, namespace)


class TestRedisIndex(IndexConformance):
    @pytest.fixture
    def index_factory(self, namespace_url: tuple[str, str]) -> IndexFactory:
        url, _ = namespace_url
        return IndexFactory("redis", lambda: open_index(url), url=url, multi_process=True)


@pytest.fixture
def index(namespace_url: tuple[str, str]) -> Iterator[RedisIndex]:
    """An index in a namespace of this test's own."""
    opened = open_index(namespace_url[0])
    assert isinstance(opened, RedisIndex)
    with opened:
        yield opened


@pytest.fixture
def raw(server_url: str) -> Iterator[Any]:
    """A plain redis-py client of the same server, decoding replies, to read what was written."""
    client = redis.Redis.from_url(server_url, decode_responses=True)
    try:
        yield client
    finally:
        client.close()


def test_layout_is_readable(index: RedisIndex, raw: Any) -> None:
    ns = index.namespace
    index.record(
        "s3://photos",
        Meta("2024/05/cat.jpg", 4, "e" * 32, 1_700_000_000.5, "image/jpeg", {"by": "ann"}, "v7"),
    )
    index.record("s3://photos", Meta("2024/06/dog.jpg", 6, "f" * 32, 1_700_000_001.0))
    names = index.redis_names("s3://photos")
    assert names.keys == "{" + ns + ":s3://photos}:keys"
    assert raw.zrange(names.keys, 0, -1) == ["2024/05/cat.jpg", "2024/06/dog.jpg"]
    assert raw.hgetall("{" + ns + ":s3://photos}:object:2024/05/cat.jpg") == {
        "Key": "2024/05/cat.jpg",
        "Size": "4",
        "ETag": "e" * 32,
        "LastModified": "1700000000.5",
        "ContentType": "image/jpeg",
        "Metadata": '{"by": "ann"}',
        "VersionId": "v7",
    }
    usage = raw.hgetall(names.usage)
    assert usage == {
        "objects:": "2",
        "bytes:": "10",
        "objects:2024/": "2",
        "bytes:2024/": "10",
        "objects:2024/05/": "1",
        "bytes:2024/05/": "4",
        "objects:2024/06/": "1",
        "bytes:2024/06/": "6",
    }
    assert raw.zrange(names.prefixes, 0, -1) == ["2024/", "2024/05/", "2024/06/"]
    assert raw.smembers(index.buckets_key) == {"s3://photos"}
    index.mark_dirty("s3://photos", ["x"])
    index.set_checkpoint("s3://photos", "sync", "2024/")
    assert raw.zrange(names.dirty, 0, -1) == ["x"]
    assert raw.hgetall(names.checkpoints) == {"sync": "2024/"}
    # Once empty, a bucket leaves no keys behind (but its name in the bucket set).
    index.forget_many("s3://photos", ["2024/05/cat.jpg", "2024/06/dog.jpg"])
    index.clear_dirty("s3://photos", ["x"])
    index.set_checkpoint("s3://photos", "sync", None)
    assert raw.keys("{" + ns + ":*") == []
    assert index.buckets() == []


def test_bucket_names_cannot_collide(index: RedisIndex) -> None:
    one = index.redis_names("a}:object:x")
    two = index.redis_names("a")
    assert one.keys != two.object("x}:keys")
    assert one.keys.count("}") == 1
    index.record("a}:object:x", Meta("k", 1, "e", 0.0))
    index.record("a", Meta("x}:keys", 2, "e", 0.0))
    assert list(index.keys("a}:object:x")) == ["k"]
    assert index.du("a") == Usage(1, 2)
    assert index.buckets() == ["a", "a}:object:x"]


def test_records_round_trip_exactly(index: RedisIndex) -> None:
    listed = Meta("k/only-listed", 3, "abc", 1.5)  # what a listing gives: version ""
    index.record("b", listed)
    got = index.get("b", "k/only-listed")
    assert got == listed and got is not None and got.version == ""
    odd = Meta("k/odd", 0, "", 0.1 + 0.2, "", {"": "", "é": "\n"}, "x" * 300)
    index.record("b", odd)
    got = index.get("b", "k/odd")
    assert got == odd and got is not None and got[3] == 0.1 + 0.2
    assert [m.key for m in index.find("b", content_type="")] == ["k/odd"]
    with pytest.raises(InvalidValue):
        index.record("b", Meta("big", 1 << 53, "e", 0.0))


def test_sums_past_what_a_double_holds_are_exact(index: RedisIndex) -> None:
    largest = (1 << 53) - 1
    index.record_many("b", [Meta(f"a{i}/x", largest, "e", 0.0) for i in range(3)])
    index.record("b", Meta("a9", largest, "e", 0.0))
    total = Usage(4, 4 * largest)
    assert index.du("b") == total and index.du("b", "a") == total
    assert index.du_children("b")["a1/"] == Usage(1, largest)
    assert index.du_children("b")[""] == Usage(1, largest)


def test_partial_prefix_du_against_a_model(index: RedisIndex) -> None:
    rng = random.Random(7)
    model: dict[str, int] = {}
    for _ in range(400):
        depth = rng.randrange(1, 4)
        key = "/".join(rng.choice(["a", "ab", "b", "a-", "é"]) for _ in range(depth))
        model[key] = rng.randrange(1000)
    index.record_many("m", [Meta(k, s, "e", 0.0) for k, s in model.items()])
    prefixes = {k[:cut] for k in model for cut in range(1, len(k) + 1)} | {"", "z", "a/a"}
    for prefix in sorted(prefixes):
        sizes = [s for k, s in model.items() if k.startswith(prefix)]
        assert index.du("m", prefix) == Usage(len(sizes), sum(sizes)), prefix


def test_record_many_in_chunks_and_ls_in_budgets(index: RedisIndex) -> None:
    keys = [f"d/{i:05}" for i in range(2500)] + [f"e{i:04}/x" for i in range(1500)]
    index.record_many("c", (Meta(k, 1, "e", 0.0) for k in keys))
    assert index.du("c") == Usage(4000, 4000)
    top = index.ls("c")
    assert top.objects == [] and top.prefixes == ["d/", *(f"e{i:04}/" for i in range(1500))]
    assert [m.key for m in index.ls("c", "d/").objects] == keys[:2500]
    assert len(index.du_children("c")) == 1501
    index.forget_many("c", keys)
    assert index.du("c") == Usage(0, 0) and index.buckets() == []


def test_urls_and_options(server_url: str) -> None:
    namespace = unique_name("mkvu")
    separator = "&" if "?" in server_url else "?"
    url = f"{server_url}{separator}namespace={namespace}&timeout=5&retries=1"
    try:
        with open_index(url) as index:
            assert isinstance(index, RedisIndex)
            assert index.namespace == namespace
            index.record("b", Meta("k", 1, "e", 0.0))
        with open_index(server_url, namespace=namespace) as again:
            assert again.du("b") == Usage(1, 1)
        with open_index(server_url) as default:
            assert isinstance(default, RedisIndex) and default.namespace == "mirrorkv:index"
    finally:
        _drop_namespace(server_url, namespace)
    with pytest.raises(InvalidURL):
        open_index(f"{server_url}{separator}colour=red")
    with pytest.raises(InvalidValue):
        open_index(server_url, namespace="a{b}")
    with pytest.raises(InvalidURL):
        open_index("redis://127.0.0.1:6379/zero")


def test_password_stays_out_of_repr_and_errors() -> None:
    port = free_port()
    index = open_index(f"redis://user:s3cret@127.0.0.1:{port}/0?connect_timeout=1")
    assert "s3cret" not in repr(index)
    with pytest.raises(StoreUnavailable) as caught:
        index.get("b", "k")
    assert "s3cret" not in str(caught.value) and "127.0.0.1" in str(caught.value)
    index.close()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[ServerProcess, str]]:
    """A server of this test's own (stopped at its end)."""
    try:
        process, url = start_redis(tmp_path)
    except ServiceUnavailable as error:
        skip_unavailable(error)
        raise
    try:
        yield process, url
    finally:
        process.stop()


def test_stopped_server_is_unavailable(private_redis: tuple[ServerProcess, str]) -> None:
    process, url = private_redis
    with open_index(url + "?connect_timeout=1&timeout=2") as index:
        index.record("b", Meta("k", 1, "e", 0.0))
        process.stop(grace=0)
        for call in (
            lambda: index.record("b", Meta("j", 1, "e", 0.0)),
            lambda: index.get("b", "k"),
            lambda: index.du("b"),
            lambda: list(index.list("b")),
        ):
            with pytest.raises(StoreUnavailable) as caught:
                call()
            assert caught.value.retryable
    with pytest.raises(MirrorKVError):
        index.du("b")


@pytest.fixture
def redis_cluster(request: pytest.FixtureRequest) -> str:
    """The session's cluster, ``redis_cluster_url`` (skips with the reason where there is none)."""
    try:
        url: str = request.getfixturevalue("redis_cluster_url")
    except ServiceUnavailable as error:
        skip_unavailable(error)
        raise
    return url


def test_cluster_keeps_a_bucket_in_one_slot(redis_cluster: str) -> None:
    namespace = unique_name("mkvc")
    url = parse_url(f"{redis_cluster}?namespace={namespace}")
    with RedisIndex.from_url(url, **url.query) as index:
        for bucket in ("s3://one", "s3://two", "gs://three"):
            index.record_many(bucket, [Meta(f"d{i % 3}/k{i:03}", i, "e", 0.0) for i in range(90)])
            assert index.du(bucket) == Usage(90, sum(range(90)))
            assert index.du(bucket, "d1") == Usage(30, sum(range(1, 90, 3)))
            assert list(index.du_children(bucket)) == ["d0/", "d1/", "d2/"]
            assert index.ls(bucket).prefixes == ["d0/", "d1/", "d2/"]
            assert len(list(index.find(bucket, glob="d2/*"))) == 30
            assert index.replace_range(bucket, "d0/", []) == (0, 0, 30)
            index.mark_dirty(bucket, ["d1/k001"])
            index.set_checkpoint(bucket, "sync", "d1/")
        assert index.buckets() == ["gs://three", "s3://one", "s3://two"]
        for bucket in index.buckets():
            index.forget_many(bucket, list(index.keys(bucket)))
            index.clear_dirty(bucket, index.dirty(bucket))
            index.set_checkpoint(bucket, "sync", None)
        assert index.buckets() == []
        client = index.client
        assert isinstance(client, redis.cluster.RedisCluster)
        client.delete(index.buckets_key)
