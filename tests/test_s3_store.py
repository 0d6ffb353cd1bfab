"""What is specific to `S3Store`, against a real S3 server (moto's, as a separate process).

The conformance suite covers the Store contract; here: uploads in parts,
presigned URLs used by a plain HTTP client, a server that goes away and
comes back, conditional writes from two processes, bad credentials, a
prefix, batches of deletes, metadata encoding and URL options.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import random
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import mirrorkv
from mirrorkv import (
    AccessDenied,
    InvalidKey,
    InvalidURL,
    InvalidValue,
    KeyNotFound,
    MirrorKVError,
    PreconditionFailed,
    StoreUnavailable,
)
from services import ServiceUnavailable, skip_unavailable, unique_name, wait_until
from services.s3 import (
    REGION,
    admin_client,
    answers_s3,
    dummy_credentials,
    moto_server,
    new_bucket,
)

pytest.importorskip("boto3")

from botocore.exceptions import ClientError

from mirrorkv.stores._s3_errors import S3Errors
from mirrorkv.stores.s3 import S3Store

MIB = 1 << 20


@pytest.fixture
def bucket(request: pytest.FixtureRequest) -> tuple[str, str]:
    """The session's endpoint and a new bucket, removed afterwards."""
    return new_bucket(request)


@pytest.fixture
def store(bucket: tuple[str, str]) -> Iterator[S3Store]:
    endpoint, name = bucket
    with S3Store(name, endpoint_url=endpoint, region=REGION) as opened:
        yield opened


@pytest.fixture
def admin(bucket: tuple[str, str]) -> Iterator[Any]:
    client = admin_client(bucket[0])
    yield client
    client.close()


# -- values uploaded in parts ----------------------------------------------


def test_value_above_the_multipart_threshold(
    bucket: tuple[str, str], admin: Any, tmp_path: Path
) -> None:
    endpoint, name = bucket
    data = random.Random(7).randbytes(12 * MIB + 5)
    md5 = hashlib.md5(data).hexdigest()
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    with S3Store(
        name,
        endpoint_url=endpoint,
        region=REGION,
        multipart_threshold=5 * MIB,
        multipart_chunksize=5 * MIB,
        max_concurrency=4,
    ) as store:
        meta = store.put_file("big", source, content_type="video/mp4", metadata={"Take": "2"})
        raw = admin.head_object(Bucket=name, Key="big")
        # S3's own ETag is the multipart one; the store's etag stays the value's MD5.
        assert raw["ETag"].strip('"').endswith("-3")
        assert (meta.size, meta.etag) == (len(data), md5)
        head = store.head("big")
        assert (head.etag, head.size, head.content_type) == (md5, len(data), "video/mp4")
        assert dict(head.metadata) == {"Take": "2"}
        assert store.get("big") == data
        target = tmp_path / "out.bin"
        assert store.get_file("big", target) == len(data)
        assert target.read_bytes() == data
        # A file object above the threshold is spooled, then uploaded in parts too.
        streamed = store.put_file("streamed", io.BytesIO(data))
        assert streamed.etag == md5
        assert admin.head_object(Bucket=name, Key="streamed")["ETag"].strip('"').endswith("-3")
        # Copy keeps the value's MD5 as its etag.
        assert store.copy("big", "copied").etag == md5
        assert store.head("copied").etag == md5


def test_conditional_writes_over_a_value_uploaded_in_parts(
    bucket: tuple[str, str], tmp_path: Path
) -> None:
    endpoint, name = bucket
    data = random.Random(8).randbytes(11 * MIB)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    with S3Store(
        name,
        endpoint_url=endpoint,
        region=REGION,
        multipart_threshold=5 * MIB,
        multipart_chunksize=5 * MIB,
    ) as store:
        first = store.put_file("big", source, if_none_match="*")
        with pytest.raises(PreconditionFailed):
            store.put_file("big", source, if_none_match="*")
        # The etag (MD5) is not S3's ETag here: the store looks the latter up
        # and makes the write conditional on it.
        second = store.put("big", b"small now", if_match=first.etag)
        assert store.get("big") == b"small now"
        with pytest.raises(PreconditionFailed):
            store.put("big", b"again", if_match=first.etag)
        # Parts with If-Match on CompleteMultipartUpload: moto 5.2 does not
        # check it, so only the path is exercised here, with the right etag.
        third = store.put_file("big", source, if_match=second.etag)
        assert third.etag == hashlib.md5(data).hexdigest()
        assert store.get("big") == data


def test_conditional_delete_of_a_value_uploaded_in_parts(
    bucket: tuple[str, str], tmp_path: Path
) -> None:
    """The etag (MD5) is not S3's ETag for parts: the delete is conditioned on the latter."""
    endpoint, name = bucket
    source = tmp_path / "big.bin"
    source.write_bytes(random.Random(9).randbytes(6 * MIB))
    with S3Store(
        name,
        endpoint_url=endpoint,
        region=REGION,
        multipart_threshold=5 * MIB,
        multipart_chunksize=5 * MIB,
    ) as store:
        meta = store.put_file("big", source)
        with pytest.raises(PreconditionFailed):
            store.delete("big", if_match=hashlib.md5(b"other").hexdigest())
        store.delete("big", if_match=meta.etag)
        assert "big" not in store


def test_conditional_delete_refused_after_a_rewrite_since_its_read(
    store: S3Store, bucket: tuple[str, str], admin: Any
) -> None:
    """S3 checks the ETag the HEAD returned: a rewrite between HEAD and delete keeps the key."""
    _, name = bucket
    rewrites: list[bytes] = []

    def rewrite_after_head(**_: Any) -> None:
        if rewrites:
            admin.put_object(Bucket=name, Key="k", Body=rewrites.pop())

    store.client.meta.events.register("after-call.s3.HeadObject", rewrite_after_head)
    stale = store.put("k", b"stale")
    rewrites.append(b"fresh")
    with pytest.raises(PreconditionFailed):
        store.delete("k", if_match=stale.etag)
    assert store.get("k") == b"fresh"
    # Rewritten with the same value: the etag still holds, so the delete goes through.
    same = store.put("k", b"same")
    rewrites.append(b"same")
    store.delete("k", if_match=same.etag)
    assert "k" not in store and not rewrites


def test_server_checks_the_condition_of_a_delete(bucket: tuple[str, str], admin: Any) -> None:
    """S3 refuses DeleteObject with a stale If-Match (412) or on an absent key (404).

    S3Store's HEAD maps our etag to S3's ETag; the server closes the race
    between that HEAD and the delete.
    """
    _, name = bucket
    stale = admin.put_object(Bucket=name, Key="k", Body=b"first")["ETag"]
    admin.put_object(Bucket=name, Key="k", Body=b"second")
    with pytest.raises(ClientError) as refused:
        admin.delete_object(Bucket=name, Key="k", IfMatch=stale)
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert admin.get_object(Bucket=name, Key="k")["Body"].read() == b"second"
    with pytest.raises(ClientError) as absent:
        admin.delete_object(Bucket=name, Key="absent", IfMatch=stale)
    assert absent.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


# -- presigned URLs ----------------------------------------------------------


def test_presigned_get_and_put_with_a_plain_http_client(store: S3Store) -> None:
    store.put("docs/report é.txt", b"quarterly", content_type="text/plain")
    url = store.url_for("docs/report é.txt")
    assert "X-Amz-Signature=" in url  # SigV4, which every region accepts
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"quarterly"
    put_url = store.url_for("uploads/new", method="PUT", expires=60)
    # urllib's default content type for a body is a form, which moto's server
    # (Flask) consumes as form fields: name a binary type, as real uploaders do.
    request = urllib.request.Request(
        put_url,
        data=b"uploaded by curl",
        method="PUT",
        headers={"Content-Type": "application/octet-stream"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    assert store.get("uploads/new") == b"uploaded by curl"
    meta = store.head("uploads/new")
    assert meta.etag == hashlib.md5(b"uploaded by curl").hexdigest() and meta.version
    with pytest.raises(InvalidValue):
        store.url_for("k", method="DELETE")
    with pytest.raises(InvalidValue):
        store.url_for("k", expires=0)


# -- a server that goes away -------------------------------------------------


def test_server_stopped_mid_operation_then_back(tmp_path: Path) -> None:
    try:
        server, endpoint = moto_server(tmp_path / "moto.log")
    except ServiceUnavailable as error:
        skip_unavailable(error)
        raise
    try:
        admin = admin_client(endpoint)
        admin.create_bucket(Bucket="comes-back")
        store = S3Store(
            "comes-back",
            endpoint_url=endpoint,
            region=REGION,
            max_attempts=2,
            connect_timeout=1,
            read_timeout=5,
            **dummy_credentials(),
        )
        data = random.Random(9).randbytes(48 * MIB)
        store.put("k", b"v")
        store.put_file("big", io.BytesIO(data))
        stream = store.open("big")
        first = stream.read(64 * 1024)
        assert first == data[: 64 * 1024]
        server.stop()
        with pytest.raises(StoreUnavailable) as caught:
            while stream.read(1 * MIB):
                pass
        assert caught.value.retryable
        stream.close()
        for call in (lambda: store.get("k"), lambda: store.put("k", b"w"), lambda: list(store)):
            with pytest.raises(StoreUnavailable) as caught:
                call()
            assert "comes-back" in str(caught.value)
        server.start()  # same port; moto keeps nothing, so the bucket is made again
        wait_until(lambda: answers_s3(endpoint), timeout=30, what="moto again", process=server)
        admin = admin_client(endpoint)
        admin.create_bucket(Bucket="comes-back")
        store.put("k", b"back")
        assert store.get("k") == b"back"
        store.close()
    finally:
        server.stop()


# -- two processes -----------------------------------------------------------


def _claim_keys(url: str, worker: int, count: int, barrier: Any, results: Any) -> None:
    """Try to create each of ``count`` keys, then bump each with if_match; report wins."""
    with mirrorkv.open(url) as store:
        barrier.wait(60)
        won = 0
        for i in range(count):
            try:
                store.put(f"claim/{i}", b"%d" % worker, if_none_match="*")
                won += 1
            except PreconditionFailed:
                pass
        swaps = 0
        for i in range(count):
            while True:
                meta = store.head(f"cas/{i % 3}")
                value = int(store.get(f"cas/{i % 3}")) if meta.size else 0
                try:
                    store.put(f"cas/{i % 3}", b"%d" % (value + 1), if_match=meta.etag)
                except PreconditionFailed:
                    continue
                swaps += 1
                break
        results.put((worker, won, swaps))


def test_two_processes_with_conditional_writes(store: S3Store, bucket: tuple[str, str]) -> None:
    endpoint, name = bucket
    for i in range(3):
        store.put(f"cas/{i}", b"0")
    url = f"s3://{name}?endpoint_url={endpoint}&region={REGION}"
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results = context.Queue()
    workers = [
        context.Process(target=_claim_keys, args=(url, worker, 30, barrier, results))
        for worker in range(2)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(60)
    assert [worker.exitcode for worker in workers] == [0, 0]
    assert sum(won for _, won, _ in outcomes) == 30  # every key created exactly once
    assert sorted(store.keys("claim/")) == sorted(f"claim/{i}" for i in range(30))
    # Every compare-and-swap counted: no increment lost between the processes.
    assert sum(int(store.get(f"cas/{i}")) for i in range(3)) == 60
    assert sum(swaps for _, _, swaps in outcomes) == 60


# -- credentials -------------------------------------------------------------


def test_bad_credentials_give_a_clear_error_without_the_secret(tmp_path: Path) -> None:
    secret = "wJalrXUtnFEMI-not-a-real-secret-42"
    try:
        # moto checks signatures against its own IAM users once this count is used up.
        server, endpoint = moto_server(
            tmp_path / "moto.log", env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"}
        )
    except ServiceUnavailable as error:
        skip_unavailable(error)
        raise
    try:
        store = S3Store(
            "any-bucket",
            endpoint_url=endpoint,
            region=REGION,
            aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
            aws_secret_access_key=secret,
            max_attempts=1,
        )
        assert secret not in repr(store)
        for call in (lambda: store.get("k"), lambda: store.put("k", b"v"), lambda: list(store)):
            with pytest.raises(AccessDenied) as caught:
                call()
            message = str(caught.value)
            assert "access denied" in message and "credentials" in message
            assert secret not in message and secret not in repr(caught.value)
            assert not caught.value.retryable
        store.close()
    finally:
        server.stop()


def test_credentials_never_in_the_url(bucket: tuple[str, str]) -> None:
    endpoint, name = bucket
    for url in (
        f"s3://AKIAIOSFODNN7EXAMPLE:s3cr3t@{name}?endpoint_url={endpoint}",
        f"s3://{name}?endpoint_url={endpoint}&aws_secret_access_key=s3cr3t",
    ):
        with pytest.raises(InvalidURL) as caught:
            mirrorkv.open(url)
        assert "credentials" in str(caught.value) and "s3cr3t" not in str(caught.value)
    # As arguments they are fine (and moto takes any).
    with mirrorkv.open(
        f"s3://{name}?endpoint_url={endpoint}&region={REGION}",
        aws_access_key_id="testing",
        aws_secret_access_key="s3cr3t",
    ) as store:
        store.put("k", b"v")
        assert "s3cr3t" not in repr(store)


# -- prefix ------------------------------------------------------------------


def test_prefix_store(bucket: tuple[str, str], admin: Any) -> None:
    endpoint, name = bucket
    admin.put_object(Bucket=name, Key="outside", Body=b"x")
    admin.put_object(Bucket=name, Key="team/alpha", Body=b"x")  # beside the prefix, not in it
    with S3Store(name, "/team/a", endpoint_url=endpoint, region=REGION) as store:
        assert store.prefix == "team/a/"
        store.put_many({"x": b"1", "y/z": b"2", "é": b"3"})
        assert list(store) == ["x", "y/z", "é"]
        assert [m.key for m in store.list("y/")] == ["y/z"]
        assert list(store.keys(start_after="x")) == ["y/z", "é"]
        assert store.ls().prefixes == ["y/"]
        raw = sorted(item["Key"] for item in admin.list_objects_v2(Bucket=name)["Contents"])
        assert raw == ["outside", "team/a/x", "team/a/y/z", "team/a/é", "team/alpha"]
        longest = "k" * (1024 - len("team/a/"))
        store.put(longest, b"fits")
        assert store.get(longest) == b"fits"
        too_long = "k" * 1020
        with pytest.raises(InvalidKey) as caught:
            store.put(too_long, b"v")
        assert "prefix" in str(caught.value) and "1024" in str(caught.value)
        with pytest.raises(InvalidKey):
            store.put_many({"ok": b"1", too_long: b"2"})
        assert "ok" not in store
        store.delete_many(["x", "y/z"])
        assert list(store) == [longest, "é"]


# -- batches -----------------------------------------------------------------


def test_delete_many_in_batches(store: S3Store) -> None:
    keys = [f"k/{i:05d}" for i in range(2500)]
    store.put_many(dict.fromkeys(keys, b"v"))
    assert sum(1 for _ in store.keys("k/")) == 2500
    store.delete_many([*keys, "absent", keys[0]])
    assert list(store.keys()) == []


def test_get_many_and_put_many_in_parallel(store: S3Store) -> None:
    items = {f"p/{i}": b"%d" % i for i in range(200)}
    metas = store.put_many([*items.items(), ("p/0", b"last")])
    assert len(metas) == 201 and metas[0].size == 1 and metas[-1].size == 4
    items["p/0"] = b"last"
    assert store.get_many([*items, "absent"]) == items


# -- metadata ----------------------------------------------------------------


def test_metadata_round_trip_mixed_case_and_encoding(store: S3Store, admin: Any) -> None:
    metadata = {
        "owner": "ann",
        "Owner": "Bob",
        "CamelCase": "Value",
        "ünï": "ß ✓",
        " spaced ": " padded ",
        "empty": "",
        "mkv-v": "a user's own name that looks like ours",
        "line": "one\ntwo",
    }
    store.put("k", b"41", metadata=metadata, content_type="text/plain; charset=utf-8")
    for record in (store.head("k"), next(store.list())):
        assert dict(record.metadata) == metadata
        assert record.content_type == "text/plain; charset=utf-8"
    assert store.incr("k") == 42
    assert dict(store.head("k").metadata) == metadata
    raw = admin.head_object(Bucket=store.bucket, Key="k")["Metadata"]
    assert raw["owner"] == "ann"  # plain entries stay readable by other S3 tools
    assert "mkv-meta" in raw and "mkv-v" in raw
    store.put("plain", b"v", metadata={"a": "1"})
    assert admin.head_object(Bucket=store.bucket, Key="plain")["Metadata"]["a"] == "1"


# -- URLs and options --------------------------------------------------------


def test_from_url_options(bucket: tuple[str, str]) -> None:
    endpoint, name = bucket
    url = (
        f"s3://{name}/some/prefix?endpoint_url={endpoint}&region={REGION}"
        "&multipart_threshold=6MiB&multipart_chunksize=5MiB&max_concurrency=4"
        "&retry_mode=adaptive&max_attempts=3&connect_timeout=2&read_timeout=9"
        "&addressing_style=path&verify=false"
    )
    with mirrorkv.open(url) as store:
        assert isinstance(store, S3Store)
        assert (store.bucket, store.prefix) == (name, "some/prefix/")
        assert store._threshold == 6 * MIB and store._chunksize == 5 * MIB
        assert store._concurrency == 4
        config = store.client.meta.config
        assert config.retries == {"mode": "adaptive", "total_max_attempts": 3}
        assert (config.connect_timeout, config.read_timeout) == (2.0, 9.0)
        store.put("k", b"v")
        assert store.get("k") == b"v"
        assert repr(store) == f"S3Store({name!r}, prefix='some/prefix/', endpoint_url={endpoint!r})"
    bad = [
        f"s3://{name}?endpoint_url={endpoint}&colour=blue",
        f"s3://{name}:9000",
        "s3:///prefix-only",
        f"s3://{name}?max_attempts=zero",
        f"s3://{name}?multipart_chunksize=1MiB",
        f"s3://{name}?retry_mode=sometimes",
        f"s3://{name}?verify=maybe",
    ]
    for text in bad:
        with pytest.raises(InvalidURL):
            mirrorkv.open(text)


def test_missing_bucket_is_a_clear_error(bucket: tuple[str, str]) -> None:
    endpoint, _ = bucket
    with S3Store(unique_name("absent-").lower(), endpoint_url=endpoint, region=REGION) as store:
        with pytest.raises(MirrorKVError) as caught:
            store.put("k", b"v")
        assert "bucket does not exist" in str(caught.value)
        assert not isinstance(caught.value, KeyNotFound)


def test_error_translation_of_server_codes() -> None:
    from botocore.exceptions import ClientError

    def error(code: str, status: int) -> ClientError:
        return ClientError(
            {
                "Error": {"Code": code, "Message": "m"},
                "ResponseMetadata": {"HTTPStatusCode": status},
            },
            "PutObject",
        )

    translate = S3Errors("b", "k", "put").translate
    assert isinstance(translate(error("NoSuchKey", 404)), KeyNotFound)
    assert isinstance(translate(error("PreconditionFailed", 412)), PreconditionFailed)
    for code, status in (("SlowDown", 503), ("InternalError", 500), ("RequestTimeout", 400)):
        translated = translate(error(code, status))
        assert isinstance(translated, StoreUnavailable) and translated.retryable
    denied = translate(error("AccessDenied", 403))
    assert isinstance(denied, AccessDenied) and "access denied" in str(denied)
    assert not denied.retryable
    assert isinstance(translate(error("KeyTooLongError", 400)), InvalidKey)
    assert isinstance(translate(error("EntityTooLarge", 400)), InvalidValue)
