"""Encrypted's etag modes: ``etag="md5"`` (the default) and ``etag="tag"`` (no hash of values).

The conformance suite runs over both (``encrypted-*`` and ``encrypted-tag-*``);
these tests check what it cannot see: the stored format of each mode, that
the tag mode hashes nothing, that each mode reads the other's values, and
tampering with the bare (version 2) format.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
from _encrypted_support import rewrite

from mirrorkv import MemoryStore
from mirrorkv.errors import CorruptValue, InvalidValue, PreconditionFailed
from mirrorkv.layers import Encrypted, Prefixed
from mirrorkv.layers import _encrypted_format as encrypted_format
from mirrorkv.layers import encrypted as encrypted_layer
from mirrorkv.layers._encrypted_format import TAG, WHOLE, header_size
from mirrorkv.layers.base import Layer
from mirrorkv.layers.encrypted import BARE_FORMAT, ETAG, FORMAT, KEY_ID, MARK
from mirrorkv.meta import etag_of
from mirrorkv.stores.sqlite import SQLiteStore

KEY = bytes(range(32))
OTHER = bytes(range(100, 132))
MIB = 1 << 20
KEY_ID_OF_KEY = encrypted_format.key_fingerprint(KEY)


@pytest.fixture
def inner(tmp_path: Path) -> SQLiteStore:
    return SQLiteStore(tmp_path / "store.db")


def unreadable(layer: Encrypted, key: str) -> bool:
    """Whether get, open and head of ``key`` all raise CorruptValue."""
    for read in (layer.get, lambda k: layer.open(k).read(), layer.head):
        try:
            read(key)
        except CorruptValue:
            continue
        return False
    return True


def test_modes_and_content_etags(inner: SQLiteStore) -> None:
    default, tagged = Encrypted(inner, KEY), Encrypted(inner, KEY, etag="tag")
    assert (default.etag_mode, default.content_etags) == ("md5", True)
    assert (tagged.etag_mode, tagged.content_etags) == ("tag", False)
    assert repr(tagged).endswith(", etag='tag')") and "etag=" not in repr(default)
    with pytest.raises(InvalidValue):
        Encrypted(inner, KEY, etag="sha1")  # type: ignore[arg-type]
    # layers pass the flag through; a layer that hashes values itself sets its own
    assert Prefixed(tagged, "p/").content_etags is False
    assert Layer(MemoryStore()).content_etags is True
    assert Encrypted(tagged, OTHER).content_etags is True


def test_tag_mode_hashes_nothing_and_stores_bare(
    inner: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_hashing(*args: object) -> str:
        raise AssertionError("the tag mode computed a hash of the value")

    monkeypatch.setattr(encrypted_layer, "etag_of", no_hashing)
    monkeypatch.setattr(encrypted_layer, "md5", no_hashing)
    layer = Encrypted(inner, KEY, etag="tag")
    value = random.Random(1).randbytes(WHOLE)
    meta = layer.put("k", value, metadata={"a": "1"})
    stored, record = inner.get("k"), inner.head("k")
    assert len(stored) == len(value) + TAG  # no header: the cipher's output as it is
    assert record.metadata[MARK] == BARE_FORMAT and record.metadata[KEY_ID] == layer.key_id
    assert meta.etag == stored[-TAG:].hex() != etag_of(value)
    assert meta.etag not in str(dict(record.metadata))  # sealed, as in the md5 mode
    for seen in (layer.head("k"), next(layer.list())):
        assert (seen.size, seen.etag, dict(seen.metadata)) == (len(value), meta.etag, {"a": "1"})
    assert layer.get("k") == value and layer.open("k").read() == value
    # equal values, and a rewrite of the same value, get etags of their own
    assert layer.put("k2", value).etag != meta.etag
    assert layer.put("k", value).etag not in (meta.etag, layer.head("k2").etag)
    # larger values and streams are version 1 (segmented); the etag is the last segment's tag
    big = random.Random(2).randbytes(2 * MIB + 5)
    for name, written in (
        ("big", layer.put("big", big)),
        ("streamed", layer.put_file("streamed", io.BytesIO(big))),
    ):
        stored = inner.get(name)
        assert inner.head(name).metadata[MARK] == FORMAT
        assert len(stored) > len(big) + header_size(layer.key_id)
        assert written.etag == stored[-TAG:].hex() == layer.head(name).etag
        assert layer.get(name) == big and layer.open(name).read() == big


def test_md5_mode_still_writes_version_1(inner: SQLiteStore) -> None:
    layer = Encrypted(inner, KEY)
    meta = layer.put("k", b"value")
    assert inner.head("k").metadata[MARK] == FORMAT
    assert len(inner.get("k")) == 5 + header_size(layer.key_id) + TAG
    assert meta.etag == etag_of(b"value")


@pytest.mark.parametrize("size", [0, 5, WHOLE, WHOLE + 1, 2 * MIB + 3])
def test_each_mode_reads_the_other(inner: SQLiteStore, size: int) -> None:
    value = random.Random(size).randbytes(size)
    modes = {"md5": Encrypted(inner, KEY), "tag": Encrypted(inner, KEY, etag="tag")}
    for writer_mode, writer in modes.items():
        written = writer.put(writer_mode, value, content_type="text/plain")
        for reader in modes.values():
            assert reader.get(writer_mode) == value
            with reader.open(writer_mode) as stream:
                assert stream.read() == value
            assert reader.head(writer_mode).etag == written.etag
            assert reader.incr("n") > 0  # get_with_meta and a conditional put across modes


def test_conditional_writes_take_tag_etags(inner: SQLiteStore) -> None:
    layer = Encrypted(inner, KEY, etag="tag")
    first = layer.put("k", b"same")
    second = layer.put("k", b"same", if_match=first.etag)
    with pytest.raises(PreconditionFailed):
        layer.put("k", b"other", if_match=first.etag)  # same value, but a write since
    with pytest.raises(PreconditionFailed):
        layer.put("k", b"other", if_match=etag_of(b"same"))
    with pytest.raises(PreconditionFailed):
        layer.delete("k", if_match=first.etag)
    with pytest.raises(PreconditionFailed):
        layer.put("k", b"new", if_none_match="*")
    third = layer.put_file("k", io.BytesIO(b"s" * (2 * MIB)), if_match=second.etag)
    layer.delete("k", if_match=third.etag)
    assert "k" not in layer


@pytest.mark.parametrize("mode", ["md5", "tag"])
def test_rotation_keeps_etags(inner: SQLiteStore, mode: encrypted_layer.EtagMode) -> None:
    layer = Encrypted(inner, KEY, etag=mode)
    small = layer.put("small", b"small value")
    big = layer.put_file("big", io.BytesIO(b"b" * (2 * MIB)))
    inner.put("plain", b"written without the layer")
    lenient = Encrypted(inner, KEY, etag=mode, allow_plaintext=True)
    assert lenient.rotate(OTHER) == 3
    assert inner.head("small").metadata[KEY_ID] == lenient.key_id
    assert (lenient.head("small").etag, lenient.head("big").etag) == (small.etag, big.etag)
    plain = lenient.head("plain")
    assert plain.etag == etag_of(b"written without the layer") or mode == "tag"
    assert lenient.get("plain") == b"written without the layer"
    lenient.put("small", b"after rotation", if_match=small.etag)  # the caller's etag still holds


def test_tampered_bare_values_raise_corrupt_value(inner: SQLiteStore) -> None:
    layer = Encrypted(inner, KEY, etag="tag", old_keys={"old": OTHER})
    for size in (0, 1000, WHOLE):
        value = random.Random(size).randbytes(size)
        layer.put("k", value, content_type="text/plain", metadata={"a": "1"})
        layer.put("other", value)
        stored, good = inner.get("k"), inner.head("k")
        flipped = bytearray(stored)
        flipped[len(stored) // 2] ^= 1
        flipped_tag = bytearray(stored)
        flipped_tag[-1] ^= 0x80
        # (new bytes, new metadata entries, whether the value fails, whether the record fails)
        variants: list[tuple[bytes | None, dict[str, str], bool, bool]] = [
            (bytes(flipped), {}, True, False),
            (bytes(flipped_tag), {}, True, False),
            (stored[:-1], {}, True, True),  # sizes are bound to the record too
            (stored + b"\x00", {}, True, True),
            (b"", {}, True, True),
            (None, {ETAG: inner.head("other").metadata[ETAG]}, True, True),  # another salt
            (None, {MARK: FORMAT}, True, True),
            (None, {KEY_ID: "old"}, True, True),
            (None, {"a": "2"}, False, True),  # user metadata: checked by head, as in version 1
            (inner.get("other"), {}, True, False),  # another key's value under this record
        ]
        for data, metadata, value_fails, record_fails in variants:
            if data == stored and not metadata:
                continue  # the flipped byte of an empty value is its tag's: already listed
            rewrite(inner, "k", data, **metadata)
            if value_fails:
                with pytest.raises(CorruptValue):
                    layer.get("k")
                with pytest.raises(CorruptValue):
                    layer.open("k").read()
            if record_fails:
                with pytest.raises(CorruptValue):
                    layer.head("k")
            inner.put("k", stored, content_type="text/plain", metadata=good.metadata)
        assert layer.get("k") == value
    Encrypted(inner, KEY).put("v1", b"version 1 value")
    inner.put("v1", inner.get("v1"), metadata={**inner.head("v1").metadata, MARK: BARE_FORMAT})
    with pytest.raises(CorruptValue):  # its record no longer opens (the size is another)
        layer.head("v1")
    with pytest.raises(CorruptValue):
        layer.get("v1")  # read as its record says: bare, which it is not
    # open() finds a version 1 header, which authenticates the value by itself
    assert layer.open("v1").read() == b"version 1 value"


def test_bare_values_need_their_key(inner: SQLiteStore) -> None:
    Encrypted(inner, KEY, etag="tag").put("k", b"secret")
    for wrong in (Encrypted(inner, OTHER), Encrypted(inner, OTHER, key_id=KEY_ID_OF_KEY)):
        assert unreadable(wrong, "k")
    inner.copy("k", "moved")
    assert unreadable(Encrypted(inner, KEY, etag="tag"), "moved")


def test_plaintext_beside_bare_values(inner: SQLiteStore) -> None:
    inner.put("plain", b"mkE\x01 looks like a header but is not")
    inner.put("big", b"p" * (2 * MIB))
    strict = Encrypted(inner, KEY, etag="tag")
    lenient = Encrypted(inner, KEY, etag="tag", allow_plaintext=True)
    for key in ("plain", "big"):
        with pytest.raises(CorruptValue):
            strict.get(key)
        with pytest.raises(CorruptValue):
            strict.open(key).read()
        assert lenient.get(key) == inner.get(key)
        with lenient.open(key) as stream:
            assert stream.read() == inner.get(key)
    lenient.put("bare", b"encrypted")
    assert lenient.open("bare").read() == b"encrypted" and b"encrypted" not in inner.get("bare")
