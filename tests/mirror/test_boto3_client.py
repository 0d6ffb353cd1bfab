"""The boto3 drop-in: the same calls through a wrapped and a plain client, on one moto server.

Each test runs one sequence of calls against a plain boto3 client on one
bucket and against a wrapped client (same server) on another, and compares
the responses field by field. Left out of the comparison, and why:

* ``ResponseMetadata`` (request ids, headers, dates the server makes up);
* ``NextContinuationToken`` and a ``NextToken`` resuming inside a page: ours
  are opaque tokens of our own (each client follows its own);
* ``LastModified``/``CreationDate`` may differ by up to a second: the index
  keeps the server's ``date`` header of the write, moto its own clock;
* ``ChecksumAlgorithm``/``ChecksumType`` of listed objects: the index does not
  hold them (see docs/mirror-boto3.md);
* where moto differs from S3 and we follow S3: moto leaves out an empty
  ``Prefix`` of ListObjects (S3 sends it empty) and never echoes its
  ``Marker`` (S3 always does, empty where none was given), its ``NextMarker``
  is a token of its own (S3's is the last key or common prefix listed: each
  client follows its own), with a delimiter it counts only keys against
  ``MaxKeys`` (S3 counts keys and common prefixes), and it does not echo
  ``ContinuationToken`` nor ``StartAfter`` on a continued ListObjectsV2; with
  ``EncodingType="url"`` moto encodes a space as ``%20``, S3 as ``+`` (the
  encoded fields are compared decoded).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import pytest

from mirrorkv.mirror.boto3_client import MirroredS3Client, wrap
from services import ServiceUnavailable, skip_unavailable, unique_name
from services.s3 import REGION, admin_client, dummy_credentials, empty_bucket

pytest.importorskip("boto3")
from botocore.exceptions import ClientError

_DROPPED = {"ResponseMetadata", "NextContinuationToken", "ChecksumAlgorithm", "ChecksumType"}


class Pair:
    """A plain client on one bucket and a wrapped client on another, same server."""

    def __init__(self, endpoint: str, index_url: str) -> None:
        self.plain = admin_client(endpoint)
        self.wrapped: MirroredS3Client = wrap(admin_client(endpoint), index=index_url)
        self.plain_bucket = unique_name("mkv-p-").lower()
        self.wrapped_bucket = unique_name("mkv-w-").lower()
        self.plain.create_bucket(Bucket=self.plain_bucket)
        self.wrapped.create_bucket(Bucket=self.wrapped_bucket)
        self.requests = 0
        self.wrapped.client.meta.events.register("before-send.s3", self._count)

    def _count(self, **_: Any) -> None:
        self.requests += 1

    def both(self, method: str, **params: Any) -> tuple[Any, Any]:
        """Call ``method`` on both clients (``Bucket`` set to each one's bucket)."""
        return (
            _call(self.plain, method, Bucket=self.plain_bucket, **params),
            _call(self.wrapped, method, Bucket=self.wrapped_bucket, **params),
        )

    def same(self, method: str, **params: Any) -> Any:
        """Call ``method`` on both and check the answers agree; return the wrapped one's."""
        plain, wrapped = self.both(method, **params)
        compare(plain, wrapped, self, method, params)
        return wrapped

    def close(self) -> None:
        for client, bucket in (
            (self.plain, self.plain_bucket),
            (self.wrapped, self.wrapped_bucket),
        ):
            try:
                empty_bucket(client.client if client is self.wrapped else client, bucket)
                client.delete_bucket(Bucket=bucket)
            finally:
                client.close()


def _call(client: Any, method: str, **params: Any) -> Any:
    try:
        return getattr(client, method)(**params)
    except ClientError as error:
        return error


def _normal(value: Any, pair: Pair, method: str, params: dict[str, Any]) -> Any:
    if isinstance(value, ClientError):
        return (
            "error",
            value.operation_name,
            value.response["Error"],
            value.response["ResponseMetadata"]["HTTPStatusCode"],
        )
    if isinstance(value, dict):
        out = {k: _normal(v, pair, method, params) for k, v in value.items() if k not in _DROPPED}
        if method == "list_objects":
            out.pop("Marker", None)
            out.pop("NextMarker", None)
            if out.get("Prefix") == "":
                del out["Prefix"]
        if "ContinuationToken" in params:
            out.pop("ContinuationToken", None)
            out.pop("StartAfter", None)
        return out
    if isinstance(value, list):
        return [_normal(v, pair, method, params) for v in value]
    if isinstance(value, str):
        if "EncodingType" in params:  # moto encodes a space as %20, S3 (and we) as +
            value = unquote_plus(value)
        return value.replace(pair.plain_bucket, "BUCKET").replace(pair.wrapped_bucket, "BUCKET")
    return value


def _same(plain: Any, wrapped: Any, where: str) -> None:
    if isinstance(plain, datetime) and isinstance(wrapped, datetime):
        assert abs(plain.timestamp() - wrapped.timestamp()) <= 1.0, where
    elif isinstance(plain, dict) and isinstance(wrapped, dict):
        assert sorted(plain) == sorted(wrapped), f"{where}: fields differ"
        for name in plain:
            _same(plain[name], wrapped[name], f"{where}.{name}")
    elif isinstance(plain, list | tuple) and isinstance(wrapped, list | tuple):
        assert len(plain) == len(wrapped), f"{where}: {plain!r} != {wrapped!r}"
        for at, (a, b) in enumerate(zip(plain, wrapped, strict=True)):
            _same(a, b, f"{where}[{at}]")
    else:
        assert plain == wrapped, f"{where}: {plain!r} != {wrapped!r}"


def compare(plain: Any, wrapped: Any, pair: Pair, method: str, params: dict[str, Any]) -> None:
    """Assert two answers agree, minus what the module docstring leaves out."""
    _same(
        _normal(plain, pair, method, params),
        _normal(wrapped, pair, method, params),
        f"{method}({params})",
    )


@pytest.fixture
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Pair]:
    try:
        endpoint: str = request.getfixturevalue("s3_endpoint")
    except ServiceUnavailable as error:
        skip_unavailable(error)
        raise
    made = Pair(endpoint, f"sqlite:///{tmp_path / 'index.db'}")
    yield made
    made.close()


KEYS = [
    *(f"logs/{i:02d}" for i in range(10)),
    "a/1",
    "a/2",
    "a/b/3",
    "a/b/c/4",
    "b/5",
    "c",
    "d/e/f",
    "é/x",
    "100%.txt",
    "z z",
]


def _fill(pair: Pair) -> None:
    for at, key in enumerate(KEYS):
        extra: dict[str, Any] = {}
        if at % 3 == 1:
            extra["ContentType"] = "text/plain"
        if at % 4 == 2:
            extra["Metadata"] = {"Mixed-Case": f"v{at}", "plain": "x"}
        pair.same("put_object", Key=key, Body=key.encode() * (at + 1), **extra)


def test_writes_heads_and_listings_match_s3(pair: Pair) -> None:
    _fill(pair)
    before = pair.requests
    for key in ("a/1", "logs/02", "b/5", "é/x", "z z"):
        pair.same("head_object", Key=key)
    pair.same("head_object", Key="missing")
    pair.same("list_objects_v2")
    pair.same("list_objects_v2", Prefix="logs/")
    pair.same("list_objects_v2", Delimiter="/")
    pair.same("list_objects_v2", Prefix="a/", Delimiter="/")
    pair.same("list_objects_v2", Prefix="a/b/", Delimiter="/")
    pair.same("list_objects_v2", StartAfter="logs/05")
    pair.same("list_objects_v2", StartAfter="a/1", Delimiter="/")
    pair.same("list_objects_v2", Prefix="nothing/")
    pair.same("list_objects_v2", Delimiter="/", EncodingType="url")
    pair.same("list_objects_v2", Prefix="10", EncodingType="url")
    pair.same("list_objects_v2", MaxKeys=1000, Delimiter="e")
    pair.same("list_objects", Prefix="a/")
    pair.same("list_objects", Delimiter="/")
    pair.same("list_objects", Marker="b/5")
    pair.same("list_objects_v2", Prefix="logs/", FetchOwner=True)
    # Only the owner of v1 listings / FetchOwner is learnt from S3, once.
    assert pair.requests - before <= 1

    # Continued listings: each client follows its own tokens.
    for params in (
        {"MaxKeys": 3},
        {"MaxKeys": 2, "Delimiter": "/"},
        {"MaxKeys": 1, "Prefix": "a/"},
    ):
        plain, wrapped = pair.both("list_objects_v2", **params)
        compare(plain, wrapped, pair, "list_objects_v2", params)
        while plain.get("IsTruncated"):
            assert wrapped["IsTruncated"]
            plain_next = {**params, "ContinuationToken": plain["NextContinuationToken"]}
            wrapped_next = {**params, "ContinuationToken": wrapped["NextContinuationToken"]}
            plain = pair.plain.list_objects_v2(Bucket=pair.plain_bucket, **plain_next)
            wrapped = pair.wrapped.list_objects_v2(Bucket=pair.wrapped_bucket, **wrapped_next)
            compare(plain, wrapped, pair, "list_objects_v2", plain_next)
        assert not wrapped["IsTruncated"]
    # ListObjects pages of keys and prefixes (moto counts only keys against MaxKeys
    # with a delimiter, S3 both): the pages together must list what one page lists.
    whole = pair.same("list_objects", Delimiter="/")
    keys, prefixes, params = [], [], {"MaxKeys": 2, "Delimiter": "/"}
    while True:
        page = pair.wrapped.list_objects(Bucket=pair.wrapped_bucket, **params)
        assert len(page.get("Contents", ())) + len(page.get("CommonPrefixes", ())) <= 2
        keys += page.get("Contents", ())
        prefixes += page.get("CommonPrefixes", ())
        if not page["IsTruncated"]:
            break
        params["Marker"] = page["NextMarker"]
    assert keys == whole["Contents"]
    assert prefixes == whole["CommonPrefixes"]
    pair.same("list_objects_v2", MaxKeys=0)
    pair.same("list_objects_v2", MaxKeys=0, Delimiter="/")
    assert pair.requests - before <= 1


def test_paginators_match_s3(pair: Pair) -> None:
    _fill(pair)
    before = pair.requests
    for name, params in (
        ("list_objects_v2", {"PaginationConfig": {"PageSize": 4}}),
        ("list_objects_v2", {"Delimiter": "/", "PaginationConfig": {"PageSize": 2}}),
        ("list_objects", {"Prefix": "logs/", "PaginationConfig": {"PageSize": 3}}),
    ):
        plain = list(pair.plain.get_paginator(name).paginate(Bucket=pair.plain_bucket, **params))
        wrapped = list(
            pair.wrapped.get_paginator(name).paginate(Bucket=pair.wrapped_bucket, **params)
        )
        assert len(plain) == len(wrapped) > 1
        for a, b in zip(plain, wrapped, strict=True):
            compare(a, b, pair, name, {"ContinuationToken": "any"} if a is not plain[0] else {})
    # MaxItems and resuming with StartingToken.
    config = {"MaxItems": 5, "PageSize": 3}
    plain = pair.plain.get_paginator("list_objects_v2").paginate(
        Bucket=pair.plain_bucket, PaginationConfig=config
    )
    wrapped = pair.wrapped.get_paginator("list_objects_v2").paginate(
        Bucket=pair.wrapped_bucket, PaginationConfig=config
    )
    plain_full, wrapped_full = plain.build_full_result(), wrapped.build_full_result()
    assert [i["Key"] for i in plain_full["Contents"]] == [
        i["Key"] for i in wrapped_full["Contents"]
    ]
    resumed = pair.wrapped.get_paginator("list_objects_v2").paginate(
        Bucket=pair.wrapped_bucket,
        PaginationConfig={"StartingToken": wrapped_full["NextToken"], "PageSize": 4},
    )
    rest = [item["Key"] for page in resumed for item in page.get("Contents", ())]
    assert [i["Key"] for i in wrapped_full["Contents"]] + rest == sorted(
        KEYS, key=lambda k: k.encode()
    )
    assert pair.requests == before + 1  # the owner of ListObjects' keys, learnt once


def test_copies_deletes_uploads_and_buckets_match_s3(pair: Pair, tmp_path: Path) -> None:
    _fill(pair)
    pair.plain.copy_object(
        Bucket=pair.plain_bucket,
        Key="copy1",
        CopySource={"Bucket": pair.plain_bucket, "Key": "a/2"},
    )
    pair.wrapped.copy_object(
        Bucket=pair.wrapped_bucket,
        Key="copy1",
        CopySource={"Bucket": pair.wrapped_bucket, "Key": "a/2"},
    )
    for client, bucket in ((pair.plain, pair.plain_bucket), (pair.wrapped, pair.wrapped_bucket)):
        client.copy_object(
            Bucket=bucket,
            Key="copy2",
            CopySource=f"{bucket}/logs/01",
            MetadataDirective="REPLACE",
            ContentType="application/json",
            Metadata={"k": "v"},
        )
        client.upload_fileobj(io.BytesIO(b"fileobj" * 100), bucket, "up/fileobj")
        path = tmp_path / "upload.bin"
        path.write_bytes(b"file" * 1000)
        client.upload_file(str(path), bucket, "up/file")
        upload = client.create_multipart_upload(Bucket=bucket, Key="up/multi")
        part = client.upload_part(
            Bucket=bucket,
            Key="up/multi",
            UploadId=upload["UploadId"],
            PartNumber=1,
            Body=b"m" * 100,
        )
        client.complete_multipart_upload(
            Bucket=bucket,
            Key="up/multi",
            UploadId=upload["UploadId"],
            MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
        )
        client.put_object(Bucket=bucket, Key="cached", Body=b"x", CacheControl="no-cache")
        client.put_object(Bucket=bucket, Key="stream", Body=io.BytesIO(b"s" * 10))
        client.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": "d/e/f"}, {"Key": "no"}], "Quiet": True}
        )
    pair.same("delete_object", Key="c")
    pair.same(
        "delete_objects",
        Delete={"Objects": [{"Key": "logs/03"}, {"Key": "never"}, {"Key": "b/5"}]},
    )
    before = pair.requests
    for key in ("copy1", "copy2", "up/fileobj", "up/file", "up/multi", "c", "b/5", "stream"):
        pair.same("head_object", Key=key)
    pair.same("list_objects_v2")
    pair.same("list_objects_v2", Prefix="up/", Delimiter="/")
    assert pair.requests == before
    # An object with fields the index cannot hold is answered by S3, every time.
    pair.same("head_object", Key="cached")
    assert pair.requests == before + 1

    plain = pair.plain.list_buckets()
    wrapped = pair.wrapped.list_buckets()
    assert [b["Name"] for b in wrapped["Buckets"]] == [pair.wrapped_bucket]
    plain["Buckets"] = [b for b in plain["Buckets"] if b["Name"] == pair.plain_bucket]
    compare(plain, wrapped, pair, "list_buckets", {})
    requests = pair.requests
    compare(plain, pair.wrapped.list_buckets(), pair, "list_buckets", {})
    assert pair.requests == requests


def test_force_asks_s3_and_refreshes_the_index(pair: Pair) -> None:
    _fill(pair)
    # Changes made behind the wrapper's back: one new key, one deleted, one rewritten.
    inner = pair.wrapped.client
    inner.put_object(Bucket=pair.wrapped_bucket, Key="logs/99", Body=b"new")
    inner.delete_object(Bucket=pair.wrapped_bucket, Key="logs/00")
    inner.put_object(Bucket=pair.wrapped_bucket, Key="a/1", Body=b"rewritten")
    for client, bucket in ((pair.plain, pair.plain_bucket),):
        client.put_object(Bucket=bucket, Key="logs/99", Body=b"new")
        client.delete_object(Bucket=bucket, Key="logs/00")
        client.put_object(Bucket=bucket, Key="a/1", Body=b"rewritten")
    stale = pair.wrapped.list_objects_v2(Bucket=pair.wrapped_bucket, Prefix="logs/")
    assert "logs/00" in [i["Key"] for i in stale["Contents"]]
    forced = pair.wrapped.list_objects_v2(Bucket=pair.wrapped_bucket, Prefix="logs/", Force=True)
    compare(
        pair.plain.list_objects_v2(Bucket=pair.plain_bucket, Prefix="logs/"),
        forced,
        pair,
        "list_objects_v2",
        {},
    )
    pair.same("list_objects_v2", Prefix="logs/")
    before = pair.requests
    plain = pair.plain.head_object(Bucket=pair.plain_bucket, Key="a/1")
    compare(
        plain,
        pair.wrapped.head_object(Bucket=pair.wrapped_bucket, Key="a/1", Force=True),
        pair,
        "head_object",
        {},
    )
    assert pair.requests == before + 1
    # logs/99 was recorded from the listing only: its first HEAD asks S3 once.
    pair.same("head_object", Key="logs/99")
    pair.same("head_object", Key="logs/99")
    assert pair.requests == before + 2
    assert pair.wrapped.head_object(Bucket=pair.wrapped_bucket, Key="a/1")["ContentLength"] == 9
    # A token of ours continues at S3 under Force=True; an S3 token continues at S3.
    first = pair.wrapped.list_objects_v2(Bucket=pair.wrapped_bucket, MaxKeys=3, StartAfter="a")
    params = {"MaxKeys": 3, "StartAfter": "a", "ContinuationToken": first["NextContinuationToken"]}
    second = pair.wrapped.list_objects_v2(Bucket=pair.wrapped_bucket, Force=True, **params)
    assert second["ContinuationToken"] == params["ContinuationToken"]
    assert second["StartAfter"] == "a"
    plain_first = pair.plain.list_objects_v2(Bucket=pair.plain_bucket, MaxKeys=3, StartAfter="a")
    plain_next = {**params, "ContinuationToken": plain_first["NextContinuationToken"]}
    plain_second = pair.plain.list_objects_v2(Bucket=pair.plain_bucket, **plain_next)
    compare(plain_second, second, pair, "list_objects_v2", plain_next)
    requests = pair.requests
    third = pair.wrapped.list_objects_v2(
        Bucket=pair.wrapped_bucket,
        **{**params, "ContinuationToken": second["NextContinuationToken"]},
    )
    assert pair.requests == requests + 1
    plain_third = pair.plain.list_objects_v2(
        Bucket=pair.plain_bucket,
        **{**params, "ContinuationToken": plain_second["NextContinuationToken"]},
    )
    compare(plain_third, third, pair, "list_objects_v2", plain_next)


def test_refresh_fills_the_index_of_a_bucket_written_before(pair: Pair) -> None:
    for key in KEYS:
        pair.plain.put_object(Bucket=pair.plain_bucket, Key=key, Body=key.encode())
    index = pair.wrapped.index
    assert pair.plain_bucket not in index.buckets()
    # A bucket the index does not hold is answered by S3.
    listed = pair.wrapped.list_objects_v2(Bucket=pair.plain_bucket)
    assert listed["KeyCount"] == len(KEYS)
    assert pair.plain_bucket not in index.buckets()
    assert pair.wrapped.refresh(pair.plain_bucket) == (len(KEYS), 0, 0)
    before = pair.requests
    answer = pair.wrapped.list_objects_v2(Bucket=pair.plain_bucket, Delimiter="/")
    compare(
        pair.plain.list_objects_v2(Bucket=pair.plain_bucket, Delimiter="/"),
        answer,
        pair,
        "list_objects_v2",
        {},
    )
    assert pair.requests == before


def test_passes_everything_else_through(pair: Pair) -> None:
    pair.wrapped.put_object(Bucket=pair.wrapped_bucket, Key="k", Body=b"value")
    body = pair.wrapped.get_object(Bucket=pair.wrapped_bucket, Key="k")["Body"].read()
    assert body == b"value"
    assert pair.wrapped.meta is pair.wrapped.client.meta
    assert pair.wrapped.exceptions is pair.wrapped.client.exceptions
    assert pair.wrapped.can_paginate("list_objects_v2")
    with pytest.raises(pair.wrapped.exceptions.NoSuchKey):
        pair.wrapped.get_object(Bucket=pair.wrapped_bucket, Key="absent")
    with pytest.raises(ClientError) as caught:
        pair.wrapped.head_object(Bucket=pair.wrapped_bucket, Key="absent")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert caught.value.response["Error"]["Code"] == "404"


def test_shares_an_index_with_a_mirror_of_an_s3_store(pair: Pair, s3_endpoint: str) -> None:
    from mirrorkv.mirror.layer import Mirror
    from mirrorkv.stores.s3 import S3Store

    bucket = pair.wrapped_bucket
    credentials = {} if "AWS_ACCESS_KEY_ID" in os.environ else dummy_credentials()
    remote = S3Store(bucket, "store/", endpoint_url=s3_endpoint, region=REGION, **credentials)
    with Mirror(remote, pair.wrapped.index) as mirror:
        mirror.put("plain", b"one", content_type="text/plain", metadata={"colour": "red"})
        mirror.put("odd", b"two", metadata={"Ünïcode name": " spaced "})
    before = pair.requests
    for key in ("store/plain", "store/odd"):
        compare(
            pair.plain.head_object(Bucket=bucket, Key=key),
            pair.wrapped.head_object(Bucket=bucket, Key=key),
            pair,
            "head_object",
            {},
        )
    listed = pair.wrapped.list_objects_v2(Bucket=bucket, Prefix="store/")
    compare(
        pair.plain.list_objects_v2(Bucket=bucket, Prefix="store/"),
        listed,
        pair,
        "list_objects_v2",
        {},
    )
    assert pair.requests == before


def test_a_failed_recording_keeps_the_s3_result_and_marks_the_key_dirty(
    pair: Pair, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from mirrorkv.errors import StoreUnavailable
    from mirrorkv.meta import Meta
    from mirrorkv.mirror import SQLiteIndex

    class FailingIndex(SQLiteIndex):
        """A real SQLite index whose record() fails, as a locked database would."""

        def record(self, bucket: str, meta: Meta) -> None:
            raise StoreUnavailable("index locked (injected)")

    index = FailingIndex(tmp_path / "failing.db")
    client = wrap(pair.wrapped.client, index)
    with caplog.at_level("WARNING", logger="mirrorkv.mirror"):
        response = client.put_object(Bucket=pair.wrapped_bucket, Key="k", Body=b"value")
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert index.dirty(pair.wrapped_bucket) == ["k"]
    assert "marked dirty" in caplog.text
    body = pair.wrapped.client.get_object(Bucket=pair.wrapped_bucket, Key="k")["Body"].read()
    assert body == b"value"
    index.close()
