"""Layers named in a store URL's query (mirrorkv.open)."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import pytest

import mirrorkv
from mirrorkv.errors import InvalidURL, ReadOnlyError
from mirrorkv.layers import (
    Cached,
    Compressed,
    Encrypted,
    Expiring,
    KeyGen,
    Prefixed,
    ReadOnly,
    WriteBehind,
)
from mirrorkv.layers.stack import LAYER_OPTIONS, wrap_layers
from mirrorkv.mirror import Mirror
from mirrorkv.store import Store
from mirrorkv.stores.sqlite import SQLiteStore

KEY = bytes(range(32))


def chain(store: Store) -> list[type]:
    """The classes of a stack, outermost first."""
    kinds = []
    while True:
        kinds.append(type(store))
        inner = getattr(store, "inner", None)  # not `or`: an empty store is falsy
        if inner is None:
            inner = getattr(store, "back", None)
        if inner is None and isinstance(store, Mirror):
            inner = store.remote
        if inner is None:
            return kinds
        store = inner


def test_a_whole_stack_from_one_url(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/app.db?prefix=tenant-a/&compress=zstd&cache_bytes=1MiB&ttl=3600"
    with mirrorkv.open(url) as store:
        assert chain(store) == [Expiring, Cached, Compressed, Prefixed, SQLiteStore]
        store.put("k", b"v" * 1000, ttl=60)
        assert store.get("k") == b"v" * 1000 and store.head("k").size == 1000
    with SQLiteStore(tmp_path / "app.db") as raw:
        stored = raw.head("tenant-a/k")
        assert stored.size < 1000 and stored.metadata  # compressed, with its records


def test_every_layer_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_KEY", base64.b64encode(KEY).decode())
    url = (
        f"sqlite://{tmp_path}/all.db?mirror_index=sqlite://{tmp_path}/index.db"
        "&prefix=p/&encrypt_key_env=APP_KEY&compress=zstd&compress_level=5&ttl=60"
        "&cache_bytes=64KiB&cache_max_age=5&write_behind=true&flush_interval=0.5"
        "&max_pending=10&keygen=sha256&keygen_template={hash:2}/{hash}"
    )
    with mirrorkv.open(url) as store:
        assert chain(store) == [
            KeyGen,
            Expiring,
            WriteBehind,
            Cached,
            Compressed,
            Encrypted,
            Prefixed,
            Mirror,
            SQLiteStore,
        ]
        assert isinstance(store, KeyGen)
        key = store.add(b"hello")
        assert store.get(key) == b"hello"
    with mirrorkv.open(f"sqlite://{tmp_path}/all.db?read_only=1") as store:
        assert isinstance(store, ReadOnly)
        with pytest.raises(ReadOnlyError):
            store.put("x", b"y")


def test_the_key_comes_from_an_argument_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite://{tmp_path}/secret.db"
    with mirrorkv.open(url, encryption_key=KEY) as store:
        store.put("k", b"private")
    monkeypatch.setenv("HEX_KEY", KEY.hex())
    with mirrorkv.open(f"{url}?encrypt_key_env=HEX_KEY") as store:
        assert store.get("k") == b"private"
    with pytest.raises(InvalidURL, match="never carries a secret") as refused:
        mirrorkv.open(f"{url}?encryption_key={KEY.hex()}")
    assert KEY.hex() not in str(refused.value)
    with pytest.raises(InvalidURL, match="not set"):
        mirrorkv.open(f"{url}?encrypt_key_env=NO_SUCH_VARIABLE_HERE")
    monkeypatch.setenv("BAD_KEY", "not a key")
    with pytest.raises(InvalidURL, match="holds no key") as bad:
        mirrorkv.open(f"{url}?encrypt_key_env=BAD_KEY")
    assert "not a key" not in str(bad.value)
    assert os.environ["BAD_KEY"] == "not a key"


def test_the_encryption_etag_mode_by_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite://{tmp_path}/tagged.db"
    monkeypatch.setenv("HEX_KEY", KEY.hex())
    with mirrorkv.open(f"{url}?encrypt_key_env=HEX_KEY&encrypt_etag=tag") as store:
        meta = store.put("k", b"private")
        assert not store.content_etags and meta.etag != hashlib.md5(b"private").hexdigest()
    with mirrorkv.open(f"{url}?encrypt_key_env=HEX_KEY") as store:
        assert store.content_etags and store.get("k") == b"private"
    with pytest.raises(InvalidURL, match="md5 or tag"):
        mirrorkv.open(f"{url}?encrypt_key_env=HEX_KEY&encrypt_etag=sha1")
    with pytest.raises(InvalidURL, match="encrypt_key_env"):
        mirrorkv.open(f"{url}?encrypt_etag=tag")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("colour=red", "colour"),
        ("ttl=soon", "ttl"),
        ("ttl=-1", "ttl"),
        ("cache_bytes=lots", "cache_bytes"),
        ("cache_max_age=5", "needs cache_bytes"),
        ("compress_level=3", "needs compress"),
        ("compress=lzma", "lzma"),
        ("max_pending=10", "write_behind"),
        ("keygen_template={hash}", "needs keygen"),
        ("max_pending=1.5&write_behind=1", "whole number"),
        ("read_only=maybe", "read_only"),
    ],
)
def test_bad_options_are_refused(tmp_path: Path, query: str, message: str) -> None:
    with pytest.raises(InvalidURL, match=message):
        mirrorkv.open(f"sqlite://{tmp_path}/x.db?{query}")


def test_options_as_arguments_and_documented(tmp_path: Path) -> None:
    with mirrorkv.open(f"sqlite://{tmp_path}/a.db", prefix="t/", ttl=10) as store:
        assert chain(store)[:2] == [Expiring, Prefixed]
    with pytest.raises(InvalidURL, match="unknown layer"):
        wrap_layers(mirrorkv.MemoryStore(), {"nope": 1})
    docs = (Path(__file__).parents[2] / "docs" / "layers.md").read_text(encoding="utf-8")
    for name in LAYER_OPTIONS:
        assert f"`{name}" in docs, f"{name} is not documented in docs/layers.md"
