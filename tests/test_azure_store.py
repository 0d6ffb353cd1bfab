"""What only a real Azure Blob service (Azurite) shows; the conformance suite does the contract."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient
from hypothesis import given, settings
from hypothesis import strategies as st

import mirrorkv
from mirrorkv import (
    AccessDenied,
    Capability,
    InvalidURL,
    InvalidValue,
    KeyNotFound,
    NotSupported,
    PreconditionFailed,
    StoreUnavailable,
)
from mirrorkv.meta import Meta
from mirrorkv.store import PutOptions
from mirrorkv.stores._azure_names import (
    decode_metadata,
    decode_name,
    encode_metadata,
    encode_name,
)
from mirrorkv.stores.azure import CONNECTION_STRING_ENV, AzureBlobStore
from mirrorkv.testing.keysets import ESCAPING_KEYS, ORDER_KEYS, utf8_sorted
from services import ServiceUnavailable, free_port, skip_unavailable, unique_name
from services.azure import (
    DEV_ACCOUNT,
    DEV_KEY,
    azurite_process,
    dev_connection_string,
    new_container,
    wait_for_azurite,
)

MIB = 1 << 20


@pytest.fixture
def container(azure_connection_string: str) -> Iterator[str]:
    """A fresh container, deleted afterwards."""
    name, delete = new_container(azure_connection_string)
    yield name
    delete()


@pytest.fixture
def store(azure_connection_string: str, container: str) -> Iterator[AzureBlobStore]:
    with AzureBlobStore(container, connection_string=azure_connection_string) as opened:
        yield opened


@pytest.fixture
def service(azure_connection_string: str) -> Iterator[BlobServiceClient]:
    """The SDK's own client, to look at what the store wrote."""
    client = BlobServiceClient.from_connection_string(azure_connection_string)
    yield client
    client.close()


def blob_names(service: BlobServiceClient, container: str) -> list[str]:
    return list(service.get_container_client(container).list_blob_names())


# -- a server that goes away and comes back -----------------------------------


def test_server_stopped_mid_operation_then_back(tmp_path: Path) -> None:
    port = free_port()
    try:
        server = azurite_process(port, tmp_path / "azurite", in_memory=False)
    except ServiceUnavailable as error:
        skip_unavailable(error)
    server.start()
    try:
        wait_for_azurite(server, port)
        connection_string = dev_connection_string(port)
        container, _ = new_container(connection_string)
        store = AzureBlobStore(container, connection_string=connection_string, retries=0, timeout=5)
        value = os.urandom(3 * MIB + 5)
        store.put("big", value)
        store.put("small", b"v")
        stream = store.open("big")
        assert stream.read(1000) == value[:1000]
        server.stop()
        for call in (
            lambda: stream.read(),  # the rest of the value is fetched from a server now gone
            lambda: store.get("small"),
            lambda: store.put("small", b"w"),
            lambda: store.head("small"),
            lambda: list(store.keys()),
            lambda: store.delete_many(["small", "big"]),
        ):
            with pytest.raises(StoreUnavailable) as caught:
                call()
            assert caught.value.retryable
            assert DEV_KEY not in str(caught.value)
        stream.close()
        server.start()
        wait_for_azurite(server, port)
        assert store.get("small") == b"v"
        assert store.get("big") == value
        store.put("small", b"again")
        assert list(store.keys()) == ["big", "small"]
        store.close()
    finally:
        server.stop()


# -- conditional writes from two processes --------------------------------------

_WORKER = textwrap.dedent(
    """
    import sys
    import mirrorkv
    from mirrorkv import PreconditionFailed

    url, worker, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    created = conflicts = 0
    with mirrorkv.open(url) as store:
        for i in range(20):
            try:
                store.put(f"once/{i}", worker.encode(), if_none_match="*")
                created += 1
            except PreconditionFailed:
                pass
        for _ in range(rounds):
            while True:
                meta = store.head("log")
                data = store.get("log")
                if store.head("log").version != meta.version:
                    continue
                try:
                    store.put("log", data + worker.encode(), if_match=meta.etag)
                    break
                except PreconditionFailed:
                    conflicts += 1
    print(created, conflicts)
    """
)


def test_conditional_writes_from_two_processes(
    store: AzureBlobStore, container: str, azure_connection_string: str
) -> None:
    store.put("log", b"")
    env = {**os.environ, CONNECTION_STRING_ENV: azure_connection_string}
    rounds = 40
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, f"azure://{container}", name, str(rounds)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    outputs = [worker.communicate(timeout=180)[0].split() for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0]
    created = [int(output[0]) for output in outputs]
    assert sum(created) == 20, "each create-only key has exactly one winner"
    log = store.get("log")
    # Every append landed exactly once: no write was lost to a race.
    assert sorted(log) == sorted(b"a" * rounds + b"b" * rounds)
    winners = store.get_many([f"once/{i}" for i in range(20)])
    assert len(winners) == 20 and set(winners.values()) <= {b"a", b"b"}


# -- large values ---------------------------------------------------------------


def test_large_value_through_staged_blocks(
    azure_connection_string: str, container: str, service: BlobServiceClient
) -> None:
    data = os.urandom(5 * MIB + 3)
    md5 = hashlib.md5(data).hexdigest()
    with AzureBlobStore(
        container, connection_string=azure_connection_string, block_size=MIB, max_concurrency=3
    ) as store:
        meta = store.put_file("streamed", io.BytesIO(data), content_type="x/y", metadata={"a": "1"})
        assert (meta.size, meta.etag) == (len(data), md5)
        blob = service.get_blob_client(container, "streamed")
        committed, uncommitted = blob.get_block_list("all")
        assert [block.size for block in committed] == [MIB] * 5 + [3]
        assert uncommitted == []
        head = store.head("streamed")
        assert (head.etag, head.content_type, dict(head.metadata)) == (md5, "x/y", {"a": "1"})
        assert store.get("streamed") == data
        # put() of a value above the single-put size: the SDK stages blocks, the MD5 still lands.
        assert store.put("whole", data).etag == md5
        assert store.head("whole").etag == md5
        assert len(service.get_blob_client(container, "whole").get_block_list()[0]) > 1
        # Conditions hold for staged uploads too, checked before and at the commit.
        with pytest.raises(PreconditionFailed):
            store.put_file("streamed", io.BytesIO(data), if_none_match="*")
        with pytest.raises(PreconditionFailed):
            store.put_file("streamed", io.BytesIO(data), if_match="0" * 32)
        replaced = store.put_file("streamed", io.BytesIO(data[::-1]), if_match=md5)
        assert store.get("streamed") == data[::-1]
        assert replaced.version != meta.version


class _InterruptedStream(io.RawIOBase):
    """A stream that lets another writer replace the key while its second block is read."""

    def __init__(self, data: bytes, interrupt: Callable[[], object]) -> None:
        self._data = io.BytesIO(data)
        self._interrupt: Callable[[], object] | None = interrupt
        self._reads = 0

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        self._reads += 1
        if self._reads == 2 and self._interrupt is not None:
            self._interrupt, interrupt = None, self._interrupt
            interrupt()
        return self._data.readinto(target)


def test_concurrent_staged_uploads_of_one_key(azure_connection_string: str, container: str) -> None:
    # Committing a block list discards the blob's other uncommitted blocks: the
    # upload whose blocks went is told to write again, and no value is mixed.
    options: dict[str, Any] = {"block_size": MIB, "max_concurrency": 1}
    with (
        AzureBlobStore(container, connection_string=azure_connection_string, **options) as one,
        AzureBlobStore(container, connection_string=azure_connection_string, **options) as two,
    ):
        theirs = b"t" * (2 * MIB)
        stream = _InterruptedStream(b"o" * (3 * MIB), lambda: two.put_file("k", io.BytesIO(theirs)))
        with pytest.raises(StoreUnavailable, match="write it again"):
            one.put_file("k", stream)
        assert one.get("k") == theirs
        ours = one.put_file("k", io.BytesIO(b"o" * (3 * MIB)))
        assert one.head("k").etag == ours.etag


def test_value_overwritten_while_it_streams(store: AzureBlobStore) -> None:
    first = os.urandom(3 * MIB)
    store.put("k", first)
    with store.open("k") as stream:
        assert stream.read(1000) == first[:1000]
        store.put("k", b"new")
        with pytest.raises(StoreUnavailable, match="open it again"):
            stream.read()
    assert store.get("k") == b"new"


def test_copy_is_server_side(store: AzureBlobStore) -> None:
    assert Capability.SERVER_SIDE_COPY in store.capabilities
    source = store.put("a.b", b"payload", content_type="text/x", metadata={"X-Foo": "ü"})
    copied = store.copy("a.b", "c/d")
    assert (copied.etag, copied.content_type, dict(copied.metadata)) == (
        source.etag,
        "text/x",
        {"X-Foo": "ü"},
    )
    assert copied.version != source.version
    with pytest.raises(KeyNotFound):
        store.copy("absent", "c/e")


class _RewrittenAfterRead(AzureBlobStore):
    """Writes ``rewrite`` over the key once, just after a conditional write or delete read it."""

    rewrite: bytes | None = None

    def _check_condition(self, key: str, options: PutOptions) -> Meta:
        current = super()._check_condition(key, options)
        if self.rewrite is not None:
            value, self.rewrite = self.rewrite, None
            self.put(key, value)
        return current


def test_conditional_delete_refused_after_a_rewrite_since_its_read(
    azure_connection_string: str, container: str
) -> None:
    """The service checks the ETag read beside the MD5: a rewrite in between keeps the key."""
    with _RewrittenAfterRead(container, connection_string=azure_connection_string) as store:
        stale = store.put("k", b"stale")
        store.rewrite = b"fresh"
        with pytest.raises(PreconditionFailed):
            store.delete("k", if_match=stale.etag)
        assert store.get("k") == b"fresh"
        # Rewritten with the same value: the etag still holds, so the delete goes through.
        same = store.put("k", b"same")
        store.rewrite = b"same"
        store.delete("k", if_match=same.etag)
        assert "k" not in store


def test_delete_many_in_batches(
    store: AzureBlobStore, service: BlobServiceClient, container: str
) -> None:
    keys = [f"k/{i:04d}" for i in range(300)]
    store.put_many(dict.fromkeys(keys, b"v"))
    store.delete_many([*keys[:290], "absent", "k/0000"])
    assert list(store.keys()) == keys[290:]
    assert len(blob_names(service, container)) == 10


# -- URLs -----------------------------------------------------------------------


def test_sas_url_works_with_a_plain_http_client(store: AzureBlobStore) -> None:
    assert Capability.URLS in store.capabilities
    store.put("dir/report.pdf", b"%PDF-1.7 ...", content_type="application/pdf")
    url = store.url_for("dir/report.pdf")
    assert "sig=" in url and DEV_KEY not in url
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"%PDF-1.7 ..."
        assert response.headers["Content-Type"] == "application/pdf"
    with pytest.raises(urllib.error.HTTPError) as absent:
        urllib.request.urlopen(store.url_for("missing"), timeout=10)
    assert absent.value.code == 404
    absent.value.close()
    # The signature grants reading only.
    request = urllib.request.Request(
        url, data=b"x", method="PUT", headers={"x-ms-blob-type": "BlockBlob"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403
    refused.value.close()
    # A PUT URL writes (and grants no reading).
    put_url = store.url_for("uploads/new", method="PUT", expires=60)
    request = urllib.request.Request(
        put_url, data=b"uploaded", method="PUT", headers={"x-ms-blob-type": "BlockBlob"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201
    assert store.get("uploads/new") == b"uploaded"
    assert store.head("uploads/new").etag == hashlib.md5(b"uploaded").hexdigest()
    with pytest.raises(urllib.error.HTTPError) as write_only:
        urllib.request.urlopen(put_url, timeout=10)
    assert write_only.value.code == 403
    write_only.value.close()


def test_url_for_needs_an_account_key(
    azure_connection_string: str, container: str, store: AzureBlobStore
) -> None:
    store.put("k", b"v")
    token = store.url_for("k").split("?", 1)[1]
    account_url = store.url_for("k").split(f"/{container}/", 1)[0]
    with AzureBlobStore(container, account_url=account_url, credential=token) as signed:
        assert signed.get("k") == b"v"
        assert Capability.URLS not in signed.capabilities
        with pytest.raises(NotSupported, match="account key"):
            signed.url_for("k")


# -- credentials ----------------------------------------------------------------


def test_bad_account_key_gives_a_clear_error_without_the_key(
    azure_connection_string: str, container: str
) -> None:
    wrong = "A" * 86 + "=="
    bad = azure_connection_string.replace(DEV_KEY, wrong)
    assert bad != azure_connection_string
    with AzureBlobStore(container, connection_string=bad, retries=0) as store:
        for call in (lambda: store.get("k"), lambda: store.put("k", b"v"), lambda: list(store)):
            with pytest.raises(AccessDenied) as caught:
                call()
            message = str(caught.value)
            assert not isinstance(caught.value, KeyNotFound | StoreUnavailable)
            assert "refused" in message and "account key" in message
            for secret in (wrong, DEV_KEY, bad):
                assert secret not in message and secret not in repr(caught.value)
        assert wrong not in repr(store) and DEV_ACCOUNT in repr(store)
    with pytest.raises(InvalidValue) as malformed:
        AzureBlobStore(container, connection_string=f"AccountKey={wrong};nonsense")
    assert wrong not in str(malformed.value)


def test_url_carrying_credentials_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONNECTION_STRING_ENV, dev_connection_string(1))
    for url in (
        "azure://account:s3cr3t@container",
        "azure://s3cr3t@container/prefix",
        "azure://container?connection_string=AccountKey%3Ds3cr3t",
        "azure://container?account_key=s3cr3t",
        "azure://container?sas_token=sig%3Ds3cr3t",
        "azure://container?account_url=https%3A%2F%2Fa.blob.core.windows.net%2F%3Fsig%3Ds3cr3t",
    ):
        with pytest.raises(InvalidURL) as caught:
            mirrorkv.open(url)
        assert "s3cr3t" not in str(caught.value), url
        assert "credential" in str(caught.value)


def test_missing_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONNECTION_STRING_ENV, raising=False)
    with pytest.raises(InvalidValue, match=CONNECTION_STRING_ENV):
        mirrorkv.open("azure://container")


def test_account_url_with_key_from_environment(
    azure_connection_string: str, container: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if DEV_KEY not in azure_connection_string:
        pytest.skip("the service under test is not Azurite's development account")
    endpoint = next(
        part.split("=", 1)[1]
        for part in azure_connection_string.split(";")
        if part.startswith("BlobEndpoint=")
    )
    monkeypatch.delenv(CONNECTION_STRING_ENV, raising=False)
    monkeypatch.setenv("AZURE_STORAGE_KEY", DEV_KEY)
    with mirrorkv.open(f"azure://{container}/p?account_url={endpoint}") as store:
        store.put("k", b"v")
        assert store.get("k") == b"v"
        assert Capability.URLS in store.capabilities


# -- prefixes, names and metadata ------------------------------------------------


def test_prefix_store(
    azure_connection_string: str, container: str, service: BlobServiceClient
) -> None:
    with (
        AzureBlobStore(container, "team a/v1.0", connection_string=azure_connection_string) as a,
        AzureBlobStore(container, "team a/v1", connection_string=azure_connection_string) as b,
    ):
        a.put("x", b"1")
        a.put("y/z", b"2")
        b.put("x", b"3")
        assert list(a.keys()) == ["x", "y/z"] and list(b.keys()) == ["x"]
        assert a.get("x") == b"1" and b.get("x") == b"3"
        assert [m.key for m in a.list("y/")] == ["y/z"]
        a.delete_many(["x", "y/z"])
        assert list(a.keys()) == [] and b.get("x") == b"3"
    names = blob_names(service, container)
    assert names == ["team!20a/v1/x"]


def test_blob_names_as_documented(
    store: AzureBlobStore, service: BlobServiceClient, container: str
) -> None:
    keys = {
        "photos/2024/cat.jpg": "photos/2024/cat.2Ejpg",
        "a b": "a!20b",
        "../x": ".2E.2E/x",
        "a\\b": "a]5Cb",
        "~": "~7E",
        "é/中": "é/中",
        "\U0001f600": "\ud7ff\u4e11\u5c01",
    }
    for key in keys:
        store.put(key, b"v")
    assert sorted(blob_names(service, container)) == sorted(keys.values())
    # A blob no key maps to (written by another tool) is not listed and not found.
    service.get_blob_client(container, "plain.txt").upload_blob(b"foreign")
    assert "plain.txt" not in list(store.keys())
    with pytest.raises(KeyNotFound):
        store.get("plain.txt")


def test_metadata_with_awkward_names_round_trips(
    store: AzureBlobStore, service: BlobServiceClient, container: str
) -> None:
    metadata = {
        "x-foo": "1",
        "X-Foo": "2",
        "Mixed_Case": "ü",
        "": "",
        "a b": "  leading and trailing  ",
        "ключ": "значение ✓",
        "_": "%41 100%",
        "1starts-with-digit": "\t\n",
    }
    store.put("k", b"v", metadata=metadata, content_type="text/plain; charset=utf-8")
    for meta in (store.head("k"), next(store.list()), store.copy("k", "k2"), store.head("k2")):
        assert dict(meta.metadata) == metadata
        assert meta.content_type == "text/plain; charset=utf-8"
    store.put("n", b"1", metadata=metadata)
    assert store.incr("n") == 2
    assert dict(store.head("n").metadata) == metadata
    stored = service.get_blob_client(container, "k").get_blob_properties().metadata
    assert len(stored) == len(metadata)
    for name, value in stored.items():
        assert name.isidentifier() and name.isascii(), name
        assert value.isascii() and value == value.strip(), value


def test_missing_container(azure_connection_string: str) -> None:
    name = unique_name("gone").lower()
    with (
        AzureBlobStore(name, connection_string=azure_connection_string) as store,
        pytest.raises(StoreUnavailable, match="container does not exist"),
    ):
        store.get("k")


# -- from_url ---------------------------------------------------------------------


def test_from_url_options(
    azure_connection_string: str, container: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CONNECTION_STRING_ENV, azure_connection_string)
    fresh = unique_name("made").lower()
    url = (
        f"azure://{fresh}/pfx?block_size=1MiB&max_concurrency=2&retries=1&timeout=5"
        "&url_expiry=60&create_container=true"
    )
    with mirrorkv.open(url) as store:
        assert isinstance(store, AzureBlobStore)
        store.put_file("big", io.BytesIO(b"x" * (2 * MIB + 1)))
        assert store.head("big").size == 2 * MIB + 1
        assert "se=" in store.url_for("big")
    with mirrorkv.open(url) as again:  # an existing container is fine
        assert list(again.keys()) == ["big"]
    BlobServiceClient.from_connection_string(azure_connection_string).delete_container(fresh)
    with mirrorkv.open(f"azure://{container}", retries="0") as keyword:
        keyword.put("k", b"v")
    for settings_ in ({"block_size": 0}, {"max_concurrency": True}, {"retries": -1}):
        with pytest.raises(InvalidValue):
            AzureBlobStore(container, connection_string=azure_connection_string, **settings_)
    with pytest.raises(InvalidValue, match="container name"):
        AzureBlobStore("Bad_Name", connection_string=azure_connection_string)
    for bad in (
        f"azure://{container}?colour=blue",
        f"azure://{container}?block_size=lots",
        f"azure://{container}?retries=many",
        f"azure://{container}?create_container=maybe",
        "azure://Not_A_Container",
        "azure:///just-a-path",
    ):
        with pytest.raises(InvalidURL):
            mirrorkv.open(bad)


# -- the blob-name and metadata codes (no server needed) ----------------------------

_KEYS = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=12,
) | st.text(alphabet="a.!~\\] -/\x01\x7f\ud7ff\ue000\U0010ffff\U00010000\u4e00", min_size=1)


@settings(max_examples=3000, deadline=None)
@given(_KEYS, _KEYS)
def test_blob_names_keep_order_and_prefixes(a: str, b: str) -> None:
    name_a, name_b = encode_name(a), encode_name(b)
    assert decode_name(name_a) == a
    assert (a.encode() < b.encode()) == (name_a < name_b)
    for codec in ("utf-8", "utf-16-be"):  # whichever order the service sorts by
        assert (name_a.encode(codec) < name_b.encode(codec)) == (name_a < name_b)
    assert b.startswith(a) == name_b.startswith(name_a)
    segments = name_a.split("/")
    assert "." not in segments and ".." not in segments and not name_a.endswith(".")
    assert "\\" not in name_a and all(ord(c) > 0x20 and not 0x7F <= ord(c) < 0xA0 for c in name_a)


def test_blob_names_of_the_keysets() -> None:
    keys = [*ORDER_KEYS, *ESCAPING_KEYS]
    names = [encode_name(key) for key in utf8_sorted(set(keys))]
    assert names == sorted(names)
    assert [decode_name(name) for name in names] == utf8_sorted(set(keys))


@settings(max_examples=1000, deadline=None)
@given(st.dictionaries(st.text(), st.text()))
def test_metadata_code_round_trips(metadata: dict[str, str]) -> None:
    stored = encode_metadata(metadata)
    for name, value in stored.items():
        assert name.isidentifier() and name.isascii()
        assert value.isascii() and value == value.strip() and value
    assert dict(decode_metadata(stored)) == metadata
    # The service may hand names back in another case.
    assert dict(decode_metadata({k.upper(): v for k, v in stored.items()})) == metadata
