"""RedisStore beyond the conformance suite: what only a real Redis server shows.

Key layout as an operator sees it, namespaces, native expiry, batches in one
round trip, a server that goes away and comes back, writers in two
processes, credentials, URLs, TLS to a real server, and a small cluster.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

redis = pytest.importorskip("redis")

import mirrorkv  # noqa: E402
from mirrorkv import open as open_store  # noqa: E402
from mirrorkv.errors import (  # noqa: E402
    AccessDenied,
    InvalidURL,
    InvalidValue,
    KeyNotFound,
    PreconditionFailed,
    StoreUnavailable,
)
from mirrorkv.meta import etag_of  # noqa: E402
from mirrorkv.stores.redis import RedisStore  # noqa: E402
from mirrorkv.urls import parse_url  # noqa: E402
from services import (  # noqa: E402
    ServerProcess,
    ServiceUnavailable,
    free_port,
    port_answers,
    skip_unavailable,
    unique_name,
    wait_until,
)
from services.redis import make_test_ca, start_redis, start_redis_tls  # noqa: E402


@pytest.fixture
def server_url(request: pytest.FixtureRequest) -> str:
    """The session's server, ``redis_url`` (skips with the reason where there is none)."""
    try:
        url: str = request.getfixturevalue("redis_url")
    except ServiceUnavailable as error:
        skip_unavailable(error)
        raise
    return url


def _with_namespace(url: str, namespace: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}namespace={namespace}"


@pytest.fixture
def store(server_url: str) -> Iterator[RedisStore]:
    """A store in a fresh namespace of the session's server, cleared afterwards."""
    opened = open_store(_with_namespace(server_url, unique_name("mkvr")))
    assert isinstance(opened, RedisStore)
    try:
        yield opened
    finally:
        opened.clear()
        opened.close()


@pytest.fixture
def raw(server_url: str) -> Iterator[Any]:
    """A plain redis-py client of the same server, to look at what the store wrote."""
    client = redis.Redis.from_url(server_url)
    try:
        yield client
    finally:
        client.close()


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


# -- layout ------------------------------------------------------------------


def test_key_names_are_readable(store: RedisStore, raw: Any, server_url: str) -> None:
    ns = store.namespace
    store.put("photos/cat.jpg", b"meow", content_type="image/jpeg", metadata={"by": "ann"})
    assert store.redis_keys("photos/cat.jpg") == (
        f"{ns}:photos/cat.jpg",
        f"{ns}#meta:photos/cat.jpg",
    )
    assert raw.get(f"{ns}:photos/cat.jpg") == b"meow"
    meta = json.loads(raw.get(f"{ns}#meta:photos/cat.jpg"))
    assert meta["size"] == 4 and meta["etag"] == etag_of(b"meow")
    assert meta["content_type"] == "image/jpeg" and meta["metadata"] == {"by": "ann"}
    assert raw.zrange(store.index_key, 0, -1) == [b"photos/cat.jpg"]
    assert store.index_key == f"{ns}#index"
    cli = shutil.which("redis-cli") or shutil.which("valkey-cli")
    if cli is not None:  # what an operator types
        shown = subprocess.run(
            [cli, "-u", server_url, "GET", f"{ns}:photos/cat.jpg"],
            capture_output=True,
            check=True,
            timeout=10,
        )
        assert shown.stdout.strip() == b"meow"


def test_namespaces_are_isolated(server_url: str) -> None:
    one = open_store(_with_namespace(server_url, unique_name("mkva")))
    two = open_store(_with_namespace(server_url, unique_name("mkvb")))
    try:
        one.put("k", b"one")
        one.put("only-one", b"1")
        two.put("k", b"two")
        assert one.get("k") == b"one" and two.get("k") == b"two"
        assert list(one) == ["k", "only-one"] and list(two) == ["k"]
        two.delete_many(["k", "only-one"])
        assert one.get("only-one") == b"1" and list(two) == []
        assert isinstance(one, RedisStore)
        one.clear()
        assert list(one) == []
    finally:
        for opened in (one, two):
            assert isinstance(opened, RedisStore)
            opened.clear()
            opened.close()


def test_namespace_rules() -> None:
    client = redis.Redis()
    try:
        for bad in ("", "a:b", "a#b", "{a}", "a b", "x" * 129):
            with pytest.raises(InvalidValue):
                RedisStore(client, namespace=bad)
        with pytest.raises(InvalidValue):
            RedisStore(redis.Redis(decode_responses=True))
    finally:
        client.close()


# -- ttl ---------------------------------------------------------------------


def test_ttl_expires_value_metadata_and_listing(store: RedisStore, raw: Any) -> None:
    store.put("short", b"v", ttl=0.3)
    store.put("long", b"v", ttl=60)
    store.put("plain", b"v")
    value_key, meta_key = store.redis_keys("short")
    assert 0 < raw.pttl(value_key) <= 300 and 0 < raw.pttl(meta_key) <= 300
    assert list(store) == ["long", "plain", "short"]
    deadline = time.monotonic() + 5
    while raw.exists(value_key) and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(KeyNotFound):
        store.get("short")
    with pytest.raises(KeyNotFound):
        store.head("short")
    assert "short" not in store
    assert raw.zscore(store.index_key, "short") is not None  # pruned lazily...
    assert list(store) == ["long", "plain"]
    assert [m.key for m in store.list()] == ["long", "plain"]
    assert raw.zscore(store.index_key, "short") is None  # ...by the listing
    # A later put without ttl makes the key permanent; incr keeps an expiry.
    store.put("long", b"v")
    assert raw.pttl(store.redis_keys("long")[0]) == -1
    assert raw.pttl(store.redis_keys("long")[1]) == -1
    store.put("n", b"1", ttl=60)
    assert store.incr("n") == 2
    assert raw.pttl(store.redis_keys("n")[1]) > 0
    for bad in (0, -1, "5", True, float("inf"), float("nan")):
        with pytest.raises(InvalidValue):
            store.put("k", b"v", ttl=bad)


# -- batches -----------------------------------------------------------------


def test_batches_take_one_round_trip(private_redis: tuple[ServerProcess, str]) -> None:
    _, url = private_redis
    client = redis.Redis.from_url(url)
    store = open_store(_with_namespace(url, "batch"))
    try:
        items = {f"k{i:05d}": b"%d" % i for i in range(12_000)}
        store.put("warm", b"up")
        client.config_resetstat()
        metas = store.put_many(items)
        assert [m.key for m in metas] == list(items)
        stats = client.info("commandstats")
        assert stats["cmdstat_exec"]["calls"] == 1  # one transaction...
        assert stats["cmdstat_mset"]["calls"] == 2 * 3  # ...of 3 chunks of 5,000 keys
        client.config_resetstat()
        assert store.get_many([*items, "absent"]) == items
        assert client.info("commandstats")["cmdstat_exec"]["calls"] == 1
        client.config_resetstat()
        few = store.get_many(["k00001", "absent", "k00002"])
        assert few == {"k00001": b"1", "k00002": b"2"}
        assert client.info("commandstats")["cmdstat_mget"]["calls"] == 1
        assert list(store.keys("k0000")) == [f"k0000{i}" for i in range(10)]
        client.config_resetstat()
        store.delete_many(list(items))
        assert client.info("commandstats")["cmdstat_exec"]["calls"] == 1
        assert list(store) == ["warm"]
        assert client.zcard("batch#index") == 1
    finally:
        store.close()
        client.close()


# -- counters ------------------------------------------------------------------


def test_incr_is_native_and_reads_back(store: RedisStore, raw: Any) -> None:
    assert store.incr("n", 5) == 5
    assert store.incr("n") == 6
    value_key, meta_key = store.redis_keys("n")
    assert raw.get(value_key) == b"6"  # a plain Redis integer string
    assert store.incr("n", 10) == 16
    assert store.get("n") == b"16"
    meta = store.head("n")
    assert (meta.size, meta.etag) == (2, etag_of(b"16"))
    assert "etag" not in json.loads(raw.get(meta_key))  # computed from the value when asked
    assert [m.key for m in store.list()] == ["n"]
    assert next(store.list()).etag == etag_of(b"16")
    # A conditional write over a counter (no stored etag) compares the value's MD5.
    store.incr("n")
    with pytest.raises(PreconditionFailed):
        store.put("n", b"0", if_match=etag_of(b"16"))
    store.put("n", b"0", if_match=etag_of(b"17"))
    assert store.get("n") == b"0"
    # Leading zeros and numbers past 64 bits: the generic path, same result.
    store.put("z", b"007")
    assert store.incr("z") == 8
    store.put("big", b"%d" % (2**70))
    assert store.incr("big", 2**65) == 2**70 + 2**65
    assert store.get("big") == b"%d" % (2**70 + 2**65)
    assert store.incr("fresh", 2**64, initial=1) == 2**64 + 1
    assert "metadata" not in json.loads(raw.get(meta_key))


def test_copy_inside_redis(store: RedisStore) -> None:
    store.put("src", b"data", content_type="text/plain", metadata={"a": "ü"})
    copied = store.copy("src", "dst")
    assert store.get("dst") == b"data"
    assert (copied.content_type, dict(copied.metadata)) == ("text/plain", {"a": "ü"})
    assert copied.etag == etag_of(b"data") and copied == store.head("dst")
    store.incr("n")
    assert store.copy("n", "m").etag == etag_of(b"1")


# -- a server that goes away -----------------------------------------------------


def test_server_stopped_mid_operation_then_back(private_redis: tuple[ServerProcess, str]) -> None:
    process, url = private_redis
    store = open_store(url + "?namespace=outage&timeout=5&connect_timeout=2")
    failures: list[BaseException] = []
    stop = threading.Event()

    def write() -> None:
        i = 0
        while not stop.is_set():
            try:
                store.put(f"k{i % 50}", b"v" * 1000)
                store.get(f"k{i % 50}")
            except StoreUnavailable as error:
                failures.append(error)
                return
            i += 1

    try:
        worker = threading.Thread(target=write)
        worker.start()
        time.sleep(0.3)
        process.stop(grace=0)
        worker.join(30)
        stop.set()
        assert not worker.is_alive()
        assert failures and isinstance(failures[0], StoreUnavailable)
        assert failures[0].retryable
        with pytest.raises(StoreUnavailable):
            store.get("k0")
        process.start()
        port = parse_url(url).port
        assert port is not None
        wait_until(lambda: port_answers("127.0.0.1", port), timeout=20, what="restart")
        store.put("after", b"back")  # persistence is off: only what is written now
        assert store.get("after") == b"back"
        assert list(store) == ["after"]
    finally:
        stop.set()
        store.close()


def test_idle_connection_closed_by_server_is_replaced(
    private_redis: tuple[ServerProcess, str],
) -> None:
    _, url = private_redis
    store = open_store(url + "?namespace=idle")
    client = redis.Redis.from_url(url)
    try:
        store.put("k", b"v")
        client.client_kill_filter(_type="normal", skipme=True)
        time.sleep(1.1)  # past the idle check
        store.put("k", b"w")  # not a StoreUnavailable: the dead connection is noticed first
        assert store.get("k") == b"w"
        client.client_kill_filter(_type="normal", skipme=True)
        assert store.get("k") == b"w"  # a read is sent once more on a new connection
    finally:
        store.close()
        client.close()


# -- two processes ---------------------------------------------------------------


def _cas_worker(url: str, rounds: int, barrier: Any) -> None:
    with mirrorkv.open(url) as store:
        barrier.wait(60)
        for i in range(rounds):
            key = f"acct/{i % 3}"
            while True:
                try:
                    data, meta = store._get_with_meta(key)
                except KeyNotFound:
                    try:
                        store.put(key, b"1", if_none_match="*")
                        break
                    except PreconditionFailed:
                        continue
                try:
                    store.put(key, b"%d" % (int(data) + 1), if_match=meta.etag)
                    break
                except PreconditionFailed:
                    continue


@pytest.mark.slow
def test_two_processes_conditional_writes_lose_nothing(store: RedisStore, server_url: str) -> None:
    url = _with_namespace(server_url, store.namespace)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    workers = [context.Process(target=_cas_worker, args=(url, 150, barrier)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [worker.exitcode for worker in workers] == [0, 0]
    assert sum(int(store.get(f"acct/{i}")) for i in range(3)) == 300


# -- credentials and URLs ----------------------------------------------------------


def test_wrong_password_is_a_clear_error_without_the_secret(tmp_path: Path) -> None:
    secret = "s3cr3t-Pa55"
    try:
        process, url = start_redis(tmp_path, "--requirepass", secret)
    except ServiceUnavailable as error:
        skip_unavailable(error)
        raise
    try:
        port = parse_url(url).port
        wrong = f"redis://:n0t-{secret}@127.0.0.1:{port}/0"
        store = open_store(wrong)
        assert secret not in repr(store) and "***" in repr(store)
        with pytest.raises(AccessDenied) as caught:
            store.put("k", b"v")
        error = caught.value
        assert not isinstance(error, StoreUnavailable) and not error.retryable
        assert "credentials" in str(error) and secret not in str(error)
        assert secret not in repr(error) and secret not in str(error.__cause__)
        store.close()
        anonymous = open_store(url)
        with pytest.raises(AccessDenied, match="credentials"):
            anonymous.get("k")
        anonymous.close()
        right = open_store(f"redis://:{secret}@127.0.0.1:{port}/0?namespace=auth")
        right.put("k", b"v")
        assert right.get("k") == b"v" and secret not in repr(right)
        right.close()
    finally:
        process.stop()


def test_from_url_options(server_url: str) -> None:
    base = parse_url(server_url)
    url = f"redis://{base.host}:{base.port}/3?namespace=opts&timeout=2.5&connect_timeout=1"
    with open_store(url + "&retries=2&max_connections=8") as store:
        assert isinstance(store, RedisStore)
        kwargs = store.client.connection_pool.connection_kwargs
        assert (kwargs["db"], kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (
            3,
            2.5,
            1.0,
        )
        assert store.client.connection_pool.max_connections == 8
        assert store.namespace == "opts"
        assert repr(store) == f"RedisStore('redis://{base.host}:{base.port}/3', namespace='opts')"
    with open_store(f"redis://{base.host}:{base.port}") as default:
        assert isinstance(default, RedisStore) and default.namespace == "mirrorkv"
    with open_store(f"redis://{base.host}:{base.port}/0", namespace="kw") as keyword:
        assert isinstance(keyword, RedisStore) and keyword.namespace == "kw"
    bad_urls = [
        f"{server_url}?colour=blue",
        f"{server_url}?timeout=soon",
        f"{server_url}?timeout=0",
        f"{server_url}?retries=-1",
        f"redis://{base.host}:{base.port}/zero",
        f"{server_url}?ssl=true",
        f"{server_url}?ssl_verify=false",
        f"redis+cluster://{base.host}:{base.port}/2",
    ]
    for bad in bad_urls:
        with pytest.raises(InvalidURL):
            open_store(bad)
    with pytest.raises(InvalidURL, match="colour"):
        open_store(f"{server_url}?colour=blue")
    with pytest.raises(InvalidValue):
        open_store(f"{server_url}?namespace=a:b")


def test_rediss_url_makes_a_tls_client() -> None:
    url = "rediss://ann:t0ps3cret@cache.example:6380/2?namespace=tls&ssl_verify=false"
    with open_store(url) as store:
        assert isinstance(store, RedisStore)
        pool = store.client.connection_pool
        assert pool.connection_class is redis.SSLConnection
        kwargs = pool.connection_kwargs
        assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("cache.example", 6380, 2)
        assert (kwargs["username"], kwargs["ssl_cert_reqs"]) == ("ann", "none")
        assert "t0ps3cret" not in repr(store)
        assert repr(store) == "RedisStore('rediss://ann:***@cache.example:6380/2', namespace='tls')"
    with open_store("rediss://localhost?ssl_ca_certs=/etc/ssl/ca.pem") as verified:
        assert isinstance(verified, RedisStore)
        kwargs = verified.client.connection_pool.connection_kwargs
        assert (kwargs["ssl_cert_reqs"], kwargs["ssl_ca_certs"]) == ("required", "/etc/ssl/ca.pem")


def test_tls_round_trip_and_an_untrusted_certificate(tmp_path: Path) -> None:
    """A server that speaks only TLS: trusted through ssl_ca_certs it works, otherwise a
    clear, non-retryable mirrorkv error that names no secret."""
    secret = "tl5-Pa55word"
    try:
        process, url, ca = start_redis_tls(tmp_path, "--requirepass", secret)
    except ServiceUnavailable as error:
        skip_unavailable(error)
        raise
    try:
        port = parse_url(url).port
        assert port is not None
        base = f"rediss://:{secret}@127.0.0.1:{port}/0?namespace=tls&connect_timeout=5"
        trusted = f"{base}&ssl_ca_certs={urllib.parse.quote(str(ca.ca_cert))}"
        with open_store(trusted) as store:
            assert isinstance(store, RedisStore)
            assert store.client.connection_pool.connection_class is redis.SSLConnection
            store.put("a/1", b"one")
            store.put_many({"a/2": b"two", "b": b"\x00\xff"})
            assert store.get("a/1") == b"one" and store.get("b") == b"\x00\xff"
            assert list(store.keys()) == ["a/1", "a/2", "b"]
            assert list(store.keys(prefix="a/")) == ["a/1", "a/2"]
            assert [(meta.key, meta.size) for meta in store.list()] == [
                ("a/1", 3),
                ("a/2", 3),
                ("b", 2),
            ]
            store.delete("a/1")
            assert list(store.keys()) == ["a/2", "b"]
            assert secret not in repr(store)
            store.clear()

        # Trusting another CA (or only the system's) must fail the handshake, as ours.
        stranger = make_test_ca(tmp_path / "stranger", name="not the server's CA")
        untrusted = [f"{base}&ssl_ca_certs={urllib.parse.quote(str(stranger.ca_cert))}", base]
        for url_text in untrusted:
            with open_store(url_text) as store:
                for attempt in (lambda: store.get("a/2"), lambda: store.put("c", b"3")):
                    with pytest.raises(AccessDenied) as caught:
                        attempt()
                    error = caught.value
                    assert not isinstance(error, StoreUnavailable) and not error.retryable
                    message = str(error)
                    assert "certificate" in message and "ssl_ca_certs" in message
                    assert f"127.0.0.1:{port}" in message
                    assert secret not in message and secret not in repr(error)
                    assert secret not in str(error.__cause__)
        # A client that skips TLS gets nothing either (the plain port is off).
        plain = open_store(f"redis://127.0.0.1:{port}/0?connect_timeout=5")
        with plain, pytest.raises(StoreUnavailable):
            plain.get("a/2")
    finally:
        process.stop()
    assert "unknown ca" in process.log_tail(40).lower()  # the server saw the refused handshakes


def test_unreachable_server_is_unavailable() -> None:
    store = open_store(f"redis://127.0.0.1:{free_port()}/0?connect_timeout=1")
    with pytest.raises(StoreUnavailable) as caught:
        store.get("k")
    assert "127.0.0.1" in str(caught.value)
    store.close()


# -- cluster -----------------------------------------------------------------------


@pytest.fixture
def redis_cluster(request: pytest.FixtureRequest) -> str:
    """The session's cluster, ``redis_cluster_url`` (skips with the reason where there is none)."""
    try:
        url: str = request.getfixturevalue("redis_cluster_url")
    except ServiceUnavailable as error:
        skip_unavailable(error)
        raise
    return url


def test_cluster_keeps_a_store_in_one_slot(redis_cluster: str) -> None:
    with open_store(redis_cluster + "?namespace=clu") as store:
        assert isinstance(store, RedisStore)
        assert store.redis_keys("a/b") == ("{clu}:a/b", "{clu}#meta:a/b")
        keys = [f"dir{i % 4}/k{i:03d}" for i in range(300)]
        store.put_many({key: key.encode() for key in keys})
        assert list(store) == sorted(keys)
        assert store.get_many(keys[:50]) == {key: key.encode() for key in keys[:50]}
        assert store.ls().prefixes == ["dir0/", "dir1/", "dir2/", "dir3/"]
        first = store.put("x", b"1", if_none_match="*")
        with pytest.raises(PreconditionFailed):
            store.put("x", b"2", if_none_match="*")
        store.put("x", b"3", if_match=first.etag)
        assert store.incr("n", 5) == 5 and store.get("n") == b"5"
        assert store.copy("x", "y").etag == etag_of(b"3")
        store.put("t", b"v", ttl=0.2)
        time.sleep(0.4)
        assert "t" not in store and "t" not in list(store)
        store.delete_many(keys)
        store.delete("x")
        assert list(store) == ["n", "y"]
        other = open_store(redis_cluster + "?namespace=other")
        assert list(other) == []
        other.close()
        store.clear()
        assert list(store) == []
