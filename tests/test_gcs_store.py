"""GCSStore against a real fake-gcs-server: what only a server shows.

The conformance suite runs over GCS too (``tests/services/gcs.py``); here:
a server stopped mid-operation, conditional writes from two processes,
resumable uploads, pagination, the key encoding on the wire, prefixes,
metadata on the wire, credentials and errors, and the URL options.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import subprocess
import sys
import textwrap
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import mirrorkv
from mirrorkv.errors import (
    AccessDenied,
    InvalidKey,
    InvalidURL,
    InvalidValue,
    KeyNotFound,
    MirrorKVError,
    NotSupported,
    PreconditionFailed,
    StoreUnavailable,
)
from mirrorkv.meta import etag_of
from mirrorkv.store import Capability, PutOptions
from mirrorkv.testing.keysets import utf8_sorted

pytest.importorskip("google.cloud.storage")

from google.api_core import exceptions as api
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from mirrorkv.stores._gcs_io import translate
from mirrorkv.stores.gcs import EMULATOR_ENV, GCSStore
from services import ServiceUnavailable, skip_unavailable, unique_name, wait_until
from services.gcs import create_bucket, delete_bucket, private_server, speaks_gcs

KIB = 1 << 10
MIB = 1 << 20


@pytest.fixture
def endpoint(request: pytest.FixtureRequest) -> str:
    """The session's emulator; the test skips where there is none."""
    try:
        found: str = request.getfixturevalue("gcs_endpoint")
    except ServiceUnavailable as error:
        skip_unavailable(error)
    return found


@pytest.fixture
def bucket(endpoint: str) -> Iterator[str]:
    """An empty bucket of this test's own, deleted afterwards."""
    name = unique_name("mkv").lower()
    create_bucket(endpoint, name)
    yield name
    delete_bucket(endpoint, name)


@pytest.fixture
def raw(endpoint: str, bucket: str) -> storage.Bucket:
    """The bucket through google-cloud-storage itself, to see what is on the wire."""
    client = storage.Client(
        project="test",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": endpoint},
    )
    return client.bucket(bucket)


def open_store(endpoint: str, bucket: str, prefix: str = "", **options: Any) -> GCSStore:
    return GCSStore(bucket, prefix, endpoint_url=endpoint, **options)


# -- a server that goes away ---------------------------------------------------


def test_server_stopped_mid_operation_then_back(tmp_path: Path) -> None:
    with private_server(tmp_path) as (server, endpoint):
        create_bucket(endpoint, "restart")
        store = open_store(endpoint, "restart", retry_deadline=1, timeout=5, chunk_size=256 * KIB)
        data = random.Random(3).randbytes(MIB + 5)
        store.put("big", data)
        stream = store.open("big")
        assert stream.read(1000) == data[:1000]
        server.stop()
        # The stream's next chunk, and every call, fail as retryable unavailability.
        with pytest.raises(StoreUnavailable) as caught:
            stream.read()
        assert caught.value.retryable
        stream.close()
        for call in (
            lambda: store.get("big"),
            lambda: store.head("big"),
            lambda: store.put("k", b"v"),
            lambda: store.delete("big"),
            lambda: list(store.keys()),
            lambda: store.get_many(["a", "b"]),
        ):
            with pytest.raises(StoreUnavailable) as caught:
                call()
            assert str(caught.value).startswith("gs://restart/: GCS unavailable")
        server.start()
        wait_until(lambda: speaks_gcs(endpoint), timeout=20, what="fake-gcs-server", process=server)
        create_bucket(endpoint, "restart")  # the in-memory server came back empty
        store.put("k", b"back")
        assert store.get("k") == b"back"
        assert list(store.keys()) == ["k"]
        store.close()


# -- conditional writes from two processes ---------------------------------------

_WORKER = textwrap.dedent(
    """
    import sys
    import mirrorkv
    from mirrorkv.errors import KeyNotFound, PreconditionFailed

    url, worker, times = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    conflicts = 0
    wins = []
    with mirrorkv.open(url) as store:
        done = 0
        while done < times:
            meta = store.head("counter")
            value = int(store.get("counter"))
            try:
                store.put("counter", b"%d" % (value + 1), if_match=meta.etag)
            except PreconditionFailed:
                conflicts += 1
                continue
            done += 1
        for i in range(20):
            try:
                store.put(f"once/{i}", str(worker).encode(), if_none_match="*")
            except PreconditionFailed:
                continue
            wins.append(f"once/{i}")
    print(conflicts, " ".join(wins))
    """
)


@pytest.mark.slow
def test_conditional_writes_from_two_processes(endpoint: str, bucket: str) -> None:
    with open_store(endpoint, bucket) as store:
        store.put("counter", b"0")
    url = f"gs://{bucket}?endpoint_url={endpoint}"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, url, str(worker), "40"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for worker in (1, 2)
    ]
    outputs = [worker.communicate(timeout=300) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    wins: dict[str, int] = {}
    for worker, (out, _) in zip((1, 2), outputs, strict=True):
        _, _, won = out.strip().partition(" ")
        for key in won.split():
            assert key not in wins, f"{key} created twice"
            wins[key] = worker
    with open_store(endpoint, bucket) as store:
        assert store.get("counter") == b"80", "a compare-and-swap lost an update"
        assert sorted(wins) == sorted(f"once/{i}" for i in range(20))
        for key, worker in wins.items():
            assert store.get(key) == str(worker).encode()


# -- resumable uploads -------------------------------------------------------------


class _Trickle(io.RawIOBase):
    """A stream that is not seekable and answers with short reads, like a pipe."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        size = min(len(target), len(self._data), 100_003)
        target[:size] = self._data[:size]
        self._data = self._data[size:]
        return size


def test_large_values_go_through_resumable_uploads(endpoint: str, bucket: str) -> None:
    store = open_store(endpoint, bucket, chunk_size=256 * KIB)
    data = random.Random(5).randbytes(MIB + 17)
    exact = random.Random(6).randbytes(512 * KIB)  # two whole chunks, then an empty last one
    for key, source in (
        ("file", io.BytesIO(data)),
        ("pipe", _Trickle(data)),
        ("exact", io.BytesIO(exact)),
    ):
        meta = store.put_file(key, source, content_type="video/mp4", metadata={"k": key})
        value = exact if key == "exact" else data
        assert (meta.size, meta.etag) == (len(value), etag_of(value))
        assert store.get(key) == value
        head = store.head(key)
        assert (head.content_type, dict(head.metadata)) == ("video/mp4", {"k": key})
    meta = store.put("bytes", data)  # put of more than a chunk: resumable too
    assert store.get("bytes") == data and meta.etag == etag_of(data)
    with store.open("bytes") as stream:
        assert stream.read() == data
    # Conditions hold for resumable uploads (checked before the upload starts).
    with pytest.raises(PreconditionFailed):
        store.put_file("file", io.BytesIO(data[::-1]), if_none_match="*")
    with pytest.raises(PreconditionFailed):
        store.put_file("file", io.BytesIO(data[::-1]), if_match=etag_of(b"other"))
    assert store.get("file") == data
    meta = store.put_file("file", io.BytesIO(data[::-1]), if_match=etag_of(data))
    assert meta.etag == etag_of(data[::-1])
    created = store.put_file("new", io.BytesIO(data), if_none_match="*")
    assert created.etag == etag_of(data)
    store.close()


def test_server_checks_preconditions_of_resumable_uploads(
    endpoint: str, bucket: str, raw: storage.Bucket
) -> None:
    """GCS refuses a resumable upload whose ifGenerationMatch is stale; the emulator does not.

    GCSStore relies on the server for the race between its own check and the
    upload; this shows whether the server under test closes it.
    """
    store = open_store(endpoint, bucket)
    stale = int(store.put("k", b"first").version)
    store.put("k", b"second")
    blob = raw.blob("k", chunk_size=256 * KIB)
    try:
        blob.upload_from_file(io.BytesIO(b"x" * (600 * KIB)), if_generation_match=stale)
    except api.PreconditionFailed:
        return
    finally:
        store.close()
    pytest.xfail(
        "fake-gcs-server ignores ifGenerationMatch on resumable uploads (GCS honours it); "
        "GCSStore's check before the upload still catches every non-racing case"
    )


class _RewrittenAfterRead(GCSStore):
    """Writes ``rewrite`` over the key once, just after a conditional write or delete read it."""

    rewrite: bytes | None = None

    def _generation_match(self, key: str, options: PutOptions) -> int | None:
        generation = super()._generation_match(key, options)
        if self.rewrite is not None:
            value, self.rewrite = self.rewrite, None
            self.put(key, value)
        return generation


def test_conditional_delete_refused_after_a_rewrite_since_its_read(
    endpoint: str, bucket: str
) -> None:
    """GCS checks the generation read beside the MD5: a rewrite in between keeps the key.

    GCSStore relies on the server for the race between its own check and
    the delete; this shows whether the server under test closes it.
    """
    with _RewrittenAfterRead(bucket, endpoint_url=endpoint) as store:
        # Rewritten with the same value: the etag still holds, so the delete goes through.
        same = store.put("k", b"same")
        store.rewrite = b"same"
        store.delete("k", if_match=same.etag)
        assert "k" not in store
        stale = store.put("k", b"stale")
        store.rewrite = b"fresh"
        try:
            store.delete("k", if_match=stale.etag)
        except PreconditionFailed:
            assert store.get("k") == b"fresh"
            return
    pytest.xfail(
        "fake-gcs-server ignores ifGenerationMatch on DELETE and removed the rewritten value "
        "(fsouza/fake-gcs-server#1282; GCS answers 412); GCSStore's check before the delete "
        "still catches every non-racing case"
    )


# -- pagination ----------------------------------------------------------------------


def test_listing_pages(endpoint: str, bucket: str) -> None:
    store = open_store(endpoint, bucket, page_size=3)
    keys = [f"{p}/{i:02d}" for p in ("a", "b", "b c", "~") for i in range(7)] + ["b", "é"]
    store.put_many({key: key.encode() for key in keys})
    expected = utf8_sorted(keys)
    assert list(store.keys()) == expected
    assert [meta.key for meta in store.list()] == expected
    assert list(store.keys("b")) == [k for k in expected if k.startswith("b")]
    assert list(store.keys("b c/")) == [f"b c/{i:02d}" for i in range(7)]
    assert list(store.keys(start_after="b c/03")) == expected[expected.index("b c/03") + 1 :]
    assert list(store.keys("~/", start_after="~/05")) == ["~/06"]
    listing = store.ls()
    assert listing.prefixes == ["a/", "b c/", "b/", "~/"]
    assert [meta.key for meta in listing.objects] == ["b", "é"]
    lazy = store.keys()
    assert next(lazy) == "a/00"
    store.close()


# -- the key encoding on the wire ---------------------------------------------------------

AWKWARD = (
    "\r",
    "\n",
    "a\r\nb",
    "\t",
    "\x01",
    "\x1f",
    " ",
    "  ",
    "a b",
    "!",
    ".",
    "..",
    "...",
    ".x",
    "./a",
    ".well-known/acme-challenge/token",
    ".well-known/acme-challenge",
    ".well-known/x",
    "/",
    "//",
    "/.",
    "/a",
    "-",
    "0",
    "}",
    "~",
    "~~",
    "a~b",
    "\x7f",
    "\x85",
    "\x9f",
    "\xa0",
    "é",
    "\U0010ffff",
)


@pytest.mark.parametrize("prefix", ["", "pre/"])
def test_awkward_keys_round_trip_and_list_in_order(
    endpoint: str, bucket: str, raw: storage.Bucket, prefix: str
) -> None:
    store = open_store(endpoint, bucket, prefix)
    for key in AWKWARD:
        store.put(key, key.encode())
    expected = utf8_sorted(AWKWARD)
    assert list(store.keys()) == expected
    for key in AWKWARD:
        assert store.get(key) == key.encode()
        assert store.head(key).key == key
        assert list(store.keys(start_after=key)) == expected[expected.index(key) + 1 :]
    for start in (".", "/", "~", " ", "a", ".well-known/", "\x7f", "\n"):
        assert list(store.keys(start)) == [k for k in expected if k.startswith(start)], start
    names = [blob.name for blob in raw.list_blobs()]
    assert len(names) == len(AWKWARD)
    for name in names:
        assert name.startswith(prefix)
        assert name not in (".", "..") and not name.startswith(".well-known/acme-challenge/")
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in name), repr(name)
    if not prefix:
        assert "/." in names and "/.." in names and "a 20b" in names and "~7e" in names
    store.close()


def test_foreign_objects_and_key_limits(endpoint: str, bucket: str, raw: storage.Bucket) -> None:
    raw.blob("plain/name.txt").upload_from_string(b"seen")
    raw.blob("has space").upload_from_string(b"not a key's encoding")
    store = open_store(endpoint, bucket)
    assert list(store.keys()) == ["plain/name.txt"]
    assert store.get("plain/name.txt") == b"seen"
    store.put("x" * 1024, b"fits")
    for too_long in (" " * 400, "x" * 1022 + "~", "." * 1024):
        with pytest.raises(InvalidKey) as caught:
            store.put(too_long, b"v")
        assert "1024" in str(caught.value) and "GCS object name" in str(caught.value)
    with pytest.raises(InvalidKey):
        open_store(endpoint, bucket, "p" * 1000).put("k" * 30, b"v")
    store.close()


# -- prefixes ----------------------------------------------------------------------


def test_prefix_stores(endpoint: str, bucket: str, raw: storage.Bucket) -> None:
    data = mirrorkv.open(f"gs://{bucket}/data?endpoint_url={endpoint}")
    other = mirrorkv.open(f"gs://{bucket}/data2?endpoint_url={endpoint}")
    root = open_store(endpoint, bucket)
    assert isinstance(data, GCSStore) and data.prefix == "data/"
    data.put("k", b"1")
    data.put(".", b"dot")
    other.put("k", b"2")
    assert list(data.keys()) == [".", "k"]
    assert list(other.keys()) == ["k"]
    assert sorted(blob.name for blob in raw.list_blobs()) == ["data/.", "data/k", "data2/k"]
    assert list(root.keys()) == ["data/.", "data/k", "data2/k"]
    data.copy("k", "copied")
    assert root.get("data/copied") == b"1"
    data.delete_many(["k", "copied", "."])
    assert list(root.keys()) == ["data2/k"]
    with pytest.raises(InvalidURL):
        mirrorkv.open(f"gs://{bucket}/.well-known/acme-challenge/?endpoint_url={endpoint}")
    for store in (data, other, root):
        store.close()


# -- metadata on the wire ---------------------------------------------------------------


def test_metadata_round_trips_and_is_safe_on_the_wire(
    endpoint: str, bucket: str, raw: storage.Bucket
) -> None:
    metadata = {
        "Mixed-Case": "Value",
        "mixed-case": "other",
        "ünï": "cödé ✓",
        "100%": "50% off",
        "empty": "",
        "plain": "a=b; c,d",
        "line": "two\nlines",
    }
    store = open_store(endpoint, bucket)
    store.put("k", b"v", metadata=metadata, content_type="text/plain; charset=utf-8")
    for meta in (store.head("k"), next(store.list()), store.copy("k", "c"), store.head("c")):
        assert dict(meta.metadata) == metadata
        assert meta.content_type == "text/plain; charset=utf-8"
    with open_store(endpoint, bucket) as again:
        assert dict(again.head("k").metadata) == metadata
    stored = raw.get_blob("k").metadata
    assert stored["plain"] == "a=b; c,d" and stored["empty"] == ""
    for name, value in stored.items():
        assert name.isascii() and name == name.lower(), name
        assert value.isascii() and value.isprintable(), value
    store.close()


# -- credentials, signed URLs and errors -------------------------------------------------

SECRET = "s3cr3t-do-not-print"


def _service_account_file(path: Path, token_uri: str) -> str:
    """A service-account key file with a fresh RSA key (no account behind it)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "mirrorkv-test",
        "private_key_id": SECRET,
        "private_key": pem,
        "client_email": "tester@mirrorkv-test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    }
    path.write_text(json.dumps(info))
    return pem


def test_credentials_never_in_urls(endpoint: str, bucket: str) -> None:
    for url in (
        f"gs://user:{SECRET}@{bucket}/p?endpoint_url={endpoint}",
        f"gs://{SECRET}@{bucket}",
    ):
        with pytest.raises(InvalidURL) as caught:
            mirrorkv.open(url)
        assert SECRET not in str(caught.value)
        assert "credentials" in str(caught.value)
    for option in ("credentials_file", "credentials"):
        with pytest.raises(InvalidURL) as caught:
            mirrorkv.open(f"gs://{bucket}?{option}=/tmp/{SECRET}.json&endpoint_url={endpoint}")
        assert "keyword argument" in str(caught.value)


def test_bad_credentials_give_a_clear_error_without_secrets(
    endpoint: str, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    garbage = tmp_path / "garbage.json"
    garbage.write_text(f'{{"type": "service_account", "private_key": "{SECRET}"}}')
    with pytest.raises(MirrorKVError) as caught:
        open_store(endpoint, bucket, credentials_file=garbage)
    assert "cannot load Google credentials" in str(caught.value) and SECRET not in str(caught.value)

    # A well-formed key whose token exchange fails: the emulator has no token endpoint.
    key_file = tmp_path / "sa.json"
    pem = _service_account_file(key_file, f"{endpoint}/token")
    store = open_store(endpoint, bucket, credentials_file=key_file, retry_deadline=2)
    with pytest.raises(AccessDenied) as caught:
        store.get("k")
    message = str(caught.value)
    assert "could not authenticate" in message
    for secret in (SECRET, pem[40:80], "PRIVATE KEY"):
        assert secret not in message and secret not in repr(store) and secret not in store.url
    store.close()

    # No credentials anywhere: says where it looked.
    monkeypatch.delenv(EMULATOR_ENV, raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(AccessDenied) as caught:
        GCSStore(bucket)
    assert "no Google Cloud credentials" in str(caught.value)


def test_access_errors_translate_without_secrets() -> None:
    """The status codes the emulator never sends (it checks no permissions)."""
    cases = [
        (api.Forbidden("caller does not have storage.objects.get access"), AccessDenied),
        (api.Unauthorized("Invalid Credentials"), AccessDenied),
        (api.TooManyRequests("slow down"), StoreUnavailable),
        (api.ServiceUnavailable("backend"), StoreUnavailable),
        (api.InternalServerError("oops"), StoreUnavailable),
        (api.PreconditionFailed("generation"), PreconditionFailed),
        (api.NotFound("No such object: b/k"), KeyNotFound),
    ]
    for error, kind in cases:
        translated = translate(error, "gs://b/", "k")
        assert type(translated) is kind, (error, translated)
    denied = translate(api.Forbidden("denied"), "gs://b/", "k")
    assert "access denied" in str(denied) and "403" in str(denied)
    big = translate(api.BadRequest("Metadata part is too large."), "gs://b/", "k")
    assert isinstance(big, InvalidValue)
    bare = translate(api.NotFound(""), "gs://b/", None)
    assert "bucket" in str(bare)
    missing = translate(api.NotFound("The specified bucket does not exist."), "gs://b/", "k")
    assert not isinstance(missing, KeyNotFound) and "bucket does not exist" in str(missing)


def test_signed_urls(endpoint: str, bucket: str, tmp_path: Path) -> None:
    anonymous = open_store(endpoint, bucket)
    anonymous.put("a b/é", b"signed", content_type="text/plain")
    assert Capability.URLS not in anonymous.capabilities
    with pytest.raises(NotSupported) as caught:
        anonymous.url_for("a b/é")
    assert "sign" in str(caught.value)
    key_file = tmp_path / "sa.json"
    _service_account_file(key_file, f"{endpoint}/token")
    signer = open_store(endpoint, bucket, credentials_file=key_file, url_expires=120)
    assert Capability.URLS in signer.capabilities
    url = signer.url_for("a b/é")
    assert "X-Goog-Signature=" in url and "X-Goog-Expires=120" in url
    assert SECRET not in url
    # A plain HTTP client reads it (the emulator does not check the signature; GCS does).
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"signed"
    put_url = signer.url_for("uploads/new", method="PUT", expires=60)
    assert "X-Goog-Signature=" in put_url and "X-Goog-Expires=60" in put_url
    request = urllib.request.Request(put_url, data=b"uploaded", method="PUT")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    assert anonymous.get("uploads/new") == b"uploaded"
    anonymous.close()
    signer.close()


def test_missing_bucket(endpoint: str) -> None:
    store = open_store(endpoint, unique_name("absent").lower())
    with pytest.raises(KeyNotFound):
        store.get("k")  # the emulator cannot tell a missing bucket from a missing object
    with pytest.raises(MirrorKVError) as caught:
        list(store.keys())
    assert "bucket" in str(caught.value)
    store.close()


# -- URL options -------------------------------------------------------------------------


def test_from_url_options(endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    url = (
        f"gs://{bucket}/pre/fix?endpoint_url={endpoint}&project=proj&timeout=5"
        "&retry_deadline=2&workers=3&chunk_size=512KiB&page_size=7&url_expires=60&anonymous=true"
    )
    store = mirrorkv.open(url)
    assert isinstance(store, GCSStore)
    assert (store.bucket, store.prefix) == (bucket, "pre/fix/")
    query = urllib.parse.urlencode({"project": "proj", "endpoint_url": endpoint})
    assert store.url == f"gs://{bucket}/pre/fix/?{query}"
    store.put("k", b"v")
    assert mirrorkv.open(store.url).get("k") == b"v"
    assert "GCSStore(" in repr(store) and bucket in repr(store)
    store.close()
    for bad in (
        "unknown=1",
        "chunk_size=1000",
        "chunk_size=lots",
        "workers=many",
        "workers=0",
        "timeout=soon",
        "anonymous=maybe",
        "page_size=-1",
    ):
        with pytest.raises(InvalidURL):
            mirrorkv.open(f"gs://{bucket}?endpoint_url={endpoint}&{bad}")
    for bad_url in ("gs://", f"gs://{bucket}:443/x", "gs:///path"):
        with pytest.raises(InvalidURL):
            mirrorkv.open(f"{bad_url}?endpoint_url={endpoint}")
    # STORAGE_EMULATOR_HOST alone points the store at the emulator, anonymously.
    monkeypatch.setenv(EMULATOR_ENV, endpoint.removeprefix("http://"))
    with mirrorkv.open(f"gs://{bucket}/pre/fix") as again:
        assert again.get("k") == b"v"


def test_many_keys_on_the_pool(endpoint: str, bucket: str) -> None:
    store = open_store(endpoint, bucket, workers=4)
    items = {f"k{i:03d}": hashlib.sha256(b"%d" % i).digest() for i in range(150)}
    started = time.monotonic()
    metas = store.put_many(items)
    assert [meta.key for meta in metas] == list(items)
    assert store.get_many([*items, "absent"]) == items
    store.delete_many(list(items)[:100])
    assert list(store.keys()) == list(items)[100:]
    assert time.monotonic() - started < 60
    store.close()
