"""Encrypted: what the layer adds over the conformance suite (run over memory and SQLite)."""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import pickle
import random
import subprocess
import sys
import threading
import traceback
import tracemalloc
from pathlib import Path

import pytest
from _encrypted_support import rewrite
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mirrorkv import MemoryStore
from mirrorkv.errors import CorruptValue, InvalidValue, NotSupported, PreconditionFailed
from mirrorkv.layers._compressed_common import SMALL
from mirrorkv.layers._encrypted_format import SEGMENT, TAG, WHOLE, header_size, key_fingerprint
from mirrorkv.layers.encrypted import ETAG, FORMAT, KEY_ID, MARK, Encrypted
from mirrorkv.meta import etag_of
from mirrorkv.stores.sqlite import SQLiteStore

KEY = bytes(range(32))
OTHER = bytes(range(100, 132))
MIB = 1 << 20
SECRET_FORMS = [KEY, KEY.hex(), repr(KEY), base64.b64encode(KEY).decode()]


@pytest.fixture
def inner(tmp_path: Path) -> SQLiteStore:
    return SQLiteStore(tmp_path / "store.db")


def test_values_are_stored_encrypted(inner: SQLiteStore) -> None:
    layer = Encrypted(inner, KEY)
    value = b"attack at dawn " * 100
    meta = layer.put("k", value, content_type="text/plain", metadata={"who": "me"})
    stored, record = inner.get("k"), inner.head("k")
    assert b"attack at dawn" not in stored
    assert len(stored) == len(value) + header_size(layer.key_id) + TAG
    assert record.metadata[MARK] == FORMAT and record.metadata[KEY_ID] == layer.key_id
    assert etag_of(value) not in str(dict(record.metadata))  # the etag is sealed, not in clear
    for seen in (meta, layer.head("k"), next(layer.list())):
        assert (seen.size, seen.etag) == (len(value), etag_of(value))
        assert dict(seen.metadata) == {"who": "me"} and seen.content_type == "text/plain"
    assert layer.get("k") == value and layer.open("k").read() == value
    # the same value twice is stored differently (fresh salt, so fresh keys and nonces)
    layer.put("k2", value)
    assert inner.get("k2") != stored and inner.head("k2").etag != record.etag


def test_if_match_takes_the_logical_etag(inner: SQLiteStore) -> None:
    layer = Encrypted(inner, KEY)
    first = layer.put("k", b"one")
    with pytest.raises(PreconditionFailed):
        layer.put("k", b"two", if_match=inner.head("k").etag)
    second = layer.put("k", b"two", if_match=first.etag)
    with pytest.raises(PreconditionFailed):
        layer.put("k", b"three", if_match=first.etag)
    layer.put_file("k", io.BytesIO(b"x" * (2 * MIB)), if_match=second.etag)
    assert layer.get("k") == b"x" * (2 * MIB)


def tampered_variants(stored: bytes, header: int) -> dict[str, bytes]:
    """Ways an attacker may change a stored value (segment swaps where it has three or more)."""
    sealed = SEGMENT + TAG
    first, second = header, header + sealed
    flip = bytearray(stored)
    flip[min(header + 100, len(stored) - 1)] ^= 1
    flip_tag = bytearray(stored)
    flip_tag[-1] ^= 0x80
    flip_header = bytearray(stored)
    flip_header[5] ^= 1
    flip_shift = bytearray(stored)
    flip_shift[20] ^= 16  # the segment-size byte (after magic and salt)
    variants = {
        "flipped byte": bytes(flip),
        "flipped tag": bytes(flip_tag),
        "flipped salt": bytes(flip_header),
        "flipped segment size": bytes(flip_shift),
        "truncated": stored[:-7],
        "extended": stored + b"\x00" * 40,
        "header only": stored[:header],
        "empty": b"",
    }
    if len(stored) - header > WHOLE + TAG:
        variants["truncated at a segment boundary"] = stored[: second + sealed]
        variants["last segment dropped"] = stored[
            : header + sealed * ((len(stored) - header - 1) // sealed)
        ]
        variants["segments swapped"] = (
            stored[:first]
            + stored[second : second + sealed]
            + stored[first:second]
            + stored[second + sealed :]
        )
    return variants


SIZES = [0, 1000, WHOLE, WHOLE + 2 * SEGMENT + 10, 2 * MIB + 3]


@pytest.mark.parametrize("size", SIZES)
def test_tampered_values_raise_corrupt_value(inner: SQLiteStore, size: int) -> None:
    layer = Encrypted(inner, KEY, key_id="k")
    value = random.Random(size).randbytes(size)
    layer.put_file("k", io.BytesIO(value))
    stored = inner.get("k")
    for name, variant in tampered_variants(stored, header_size("k")).items():
        if variant == stored:
            continue  # e.g. "flipped byte" past the end of an empty value
        rewrite(inner, "k", variant)
        with pytest.raises(CorruptValue):
            layer.get("k")
            pytest.fail(f"{name}: get returned data")
        with pytest.raises(CorruptValue):
            with layer.open("k") as stream:
                while stream.read(SEGMENT):
                    pass
            pytest.fail(f"{name}: open returned data")
    rewrite(inner, "k", stored)
    assert layer.get("k") == value


def test_changed_metadata_raises_corrupt_value(inner: SQLiteStore) -> None:
    layer = Encrypted(inner, KEY, old_keys={"old": OTHER})
    layer.put("k", b"value", content_type="text/plain", metadata={"a": "1"})
    good = inner.head("k")
    changes = [
        {"a": "2"},
        {"b": "new entry"},
        {KEY_ID: "old"},
        {KEY_ID: "unknown"},
        {MARK: "aes-256-gcm/9"},
        {ETAG: good.metadata[ETAG][:-4] + "AAA="},
        {ETAG: "not base64!"},
    ]
    for change in changes:
        rewrite(inner, "k", **change)
        with pytest.raises(CorruptValue):
            layer.head("k")
        with pytest.raises(CorruptValue):
            next(layer.list())
        with pytest.raises(CorruptValue):
            layer.put("k", b"new", if_match=etag_of(b"value"))
        inner.put("k", inner.get("k"), content_type="text/plain", metadata=good.metadata)
    inner.put("k", inner.get("k"), content_type="text/html", metadata=good.metadata)
    with pytest.raises(CorruptValue):
        layer.head("k")


def test_a_value_moved_to_another_key_fails(inner: SQLiteStore) -> None:
    layer = Encrypted(inner, KEY)
    layer.put("a", b"for a only")
    inner.copy("a", "b")
    with pytest.raises(CorruptValue):
        layer.get("b")
    with pytest.raises(CorruptValue):
        layer.head("b")
    layer.copy("a", "c")  # through the layer: re-encrypted for its new key
    assert layer.get("c") == b"for a only"


def test_wrong_key_raises_corrupt_value(inner: SQLiteStore) -> None:
    Encrypted(inner, KEY).put("k", b"secret")
    Encrypted(inner, KEY).put_file("big", io.BytesIO(b"s" * (2 * MIB)))
    for wrong in (Encrypted(inner, OTHER), Encrypted(inner, OTHER, key_id=key_fingerprint(KEY))):
        for key in ("k", "big"):
            with pytest.raises(CorruptValue):
                wrong.get(key)
            with pytest.raises(CorruptValue):
                wrong.open(key).read()
            with pytest.raises(CorruptValue):
                wrong.head(key)


def test_key_never_in_repr_errors_or_logs(
    inner: SQLiteStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    layer = Encrypted(inner, KEY, old_keys=[OTHER])
    texts = [repr(layer), str(layer), repr(vars(layer)), repr(layer.key_ids)]
    layer.put("k", b"v")
    inner.put("plain", b"not encrypted")
    rewrite(inner, "k", inner.get("k")[:-1])
    calls = [
        lambda: layer.get("k"),
        lambda: layer.get("plain"),
        lambda: Encrypted(inner, OTHER[:5]),
        lambda: Encrypted(inner, KEY, key_id="x", old_keys={"x": OTHER}),
        lambda: Encrypted(inner, OTHER, key_id=layer.key_id).get("k"),
    ]
    for call in calls:
        with pytest.raises((CorruptValue, InvalidValue)) as raised:
            call()
        error = raised.value
        texts += [str(error), repr(error), "".join(traceback.format_exception(error))]
    texts.append(caplog.text)
    for text in texts:
        for secret in SECRET_FORMS:
            assert str(secret) not in text
            assert KEY.hex()[:16] not in text and OTHER.hex()[:16] not in text
    with pytest.raises(TypeError):
        pickle.dumps(layer._current)


def test_rotation_keeps_old_values_readable(inner: SQLiteStore) -> None:
    old = Encrypted(inner, KEY, key_id="2025")
    values = {f"v/{i}": b"value %d" % i for i in range(30)}
    for key, value in values.items():
        old.put(key, value, metadata={"n": key})
    old.put_file("v/big", io.BytesIO(b"b" * (3 * MIB)))
    layer = Encrypted(inner, KEY, key_id="2025")
    assert layer.rotate(OTHER, new_key_id="2026", prefix="v/1") == 11
    # halfway: both keys' values read, through this layer and through another with both keys
    both = Encrypted(inner, OTHER, key_id="2026", old_keys={"2025": KEY})
    for reader in (layer, both):
        for key, value in values.items():
            assert reader.get(key) == value and dict(reader.head(key).metadata) == {"n": key}
    assert {inner.head(k).metadata[KEY_ID] for k in values} == {"2025", "2026"}
    assert layer.put("new", b"x") and inner.head("new").metadata[KEY_ID] == "2026"
    assert layer.rotate(OTHER, new_key_id="2026") == 20  # the rest, big value included
    assert layer.rotate(OTHER, new_key_id="2026") == 0
    only_new = Encrypted(inner, OTHER, key_id="2026")
    assert all(only_new.get(key) == value for key, value in values.items())
    assert only_new.open("v/big").read() == b"b" * (3 * MIB)
    with pytest.raises(CorruptValue):
        Encrypted(inner, KEY, key_id="2025").get("v/3")
    with pytest.raises(InvalidValue):
        layer.rotate(KEY, new_key_id="2026")  # an id already naming another key


def test_rotation_never_loses_a_concurrent_write(inner: SQLiteStore) -> None:
    Encrypted(inner, KEY).put_many({f"k{i}": b"0" for i in range(200)})
    layer = Encrypted(inner, KEY)
    last: dict[str, bytes] = {}
    stop = threading.Event()

    def write() -> None:
        round_ = 0
        while not stop.is_set():
            round_ += 1
            for i in range(0, 200, 7):
                layer.put(f"k{i}", b"%d" % round_)
                last[f"k{i}"] = b"%d" % round_

    writer = threading.Thread(target=write)
    writer.start()
    try:
        count = layer.rotate(OTHER)
    finally:
        stop.set()
        writer.join()
    assert 0 < count <= 200
    only_new = Encrypted(inner, OTHER)
    for i in range(200):
        assert only_new.get(f"k{i}") == last.get(f"k{i}", b"0")


def test_plaintext_values_need_opting_in(inner: SQLiteStore) -> None:
    inner.put("plain", b"written without the layer", metadata={"a": "1"})
    inner.put_file("big", io.BytesIO(b"p" * (2 * MIB)))
    strict = Encrypted(inner, KEY)
    for call in (strict.get, strict.head, lambda key: strict.open(key).read()):
        with pytest.raises(CorruptValue):
            call("plain")
    lenient = Encrypted(inner, KEY, allow_plaintext=True)
    assert lenient.get("plain") == b"written without the layer"
    assert lenient.head("plain") == inner.head("plain")
    assert lenient.open("big").read() == b"p" * (2 * MIB)
    assert strict.rotate(KEY) == 0  # strict: left alone
    assert lenient.rotate(KEY) == 2
    assert strict.get("plain") == b"written without the layer"
    assert dict(strict.head("plain").metadata) == {"a": "1"}
    assert strict.open("big").read() == b"p" * (2 * MIB)


def test_large_streams_have_bounded_memory(inner: SQLiteStore, tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    value = random.Random(7).randbytes(8 * MIB)
    source.write_bytes(value)
    layer = Encrypted(inner, KEY)
    tracemalloc.start()
    try:
        meta = layer.put_file("big", source)
        peak_in = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        digest, size = hashlib.md5(), 0
        with layer.open("big") as stream:
            while chunk := stream.read(64 * 1024):
                digest.update(chunk)
                size += len(chunk)
        peak_out = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (meta.size, meta.etag) == (len(value), etag_of(value))
    assert (size, digest.hexdigest()) == (len(value), etag_of(value))
    assert peak_in < 3 * MIB and peak_out < MIB, (peak_in, peak_out)


STREAM_SIZES = [SMALL + 1, SMALL + SEGMENT - 1, SMALL + SEGMENT, SMALL + SEGMENT + 1, 2 * SMALL]


@pytest.mark.parametrize("size", STREAM_SIZES)
def test_streamed_sizes_around_segment_boundaries(inner: SQLiteStore, size: int) -> None:
    layer = Encrypted(inner, KEY)
    value = random.Random(size).randbytes(size)
    meta = layer.put_file("k", io.BytesIO(value))
    assert (meta.size, meta.etag) == (size, etag_of(value))
    assert layer.head("k").size == size and layer.get("k") == value
    with layer.open("k") as stream:
        assert stream.read() == value


def test_bad_keys_and_options(inner: SQLiteStore) -> None:
    bad_keys: list[object] = [b"short", "0" * 32, None, KEY + b"x"]
    for bad in bad_keys:
        with pytest.raises(InvalidValue):
            Encrypted(inner, bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidValue):
        Encrypted(inner, KEY, key_id="")
    layer = Encrypted(inner, KEY)
    with pytest.raises(InvalidValue):
        layer.put("k", b"v", metadata={KEY_ID: "mine"})
    with pytest.raises(NotSupported):
        layer.url_for("k")
    assert layer.key_id == key_fingerprint(KEY)
    assert repr(layer) == f"Encrypted({inner!r}, key_id={layer.key_id!r})"


def test_import_without_cryptography_and_a_clear_error() -> None:
    code = (
        "import sys; sys.modules['cryptography'] = None\n"
        "import mirrorkv.layers\n"
        "from mirrorkv import MemoryStore\n"
        "from mirrorkv.errors import NotSupported\n"
        "try:\n"
        "    mirrorkv.layers.Encrypted(MemoryStore(), bytes(32))\n"
        "except NotSupported as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "mirrorkv[crypto]" in result.stdout


AROUND_SEGMENTS = st.sampled_from([0, 1, 15, 16, 17, WHOLE - 1, WHOLE]) | st.builds(
    lambda count, delta: WHOLE + count * SEGMENT + delta,
    st.integers(0, 2),
    st.integers(-2, 2),
).filter(lambda size: size > WHOLE)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), size=AROUND_SEGMENTS)
def test_roundtrip_property(data: st.DataObject, size: int) -> None:
    seed = data.draw(st.integers(0, 2**32))
    value = random.Random(seed).randbytes(size)
    inner = MemoryStore()
    layer = Encrypted(inner, KEY)
    meta = layer.put("k", value)
    assert (meta.size, meta.etag) == (len(value), etag_of(value))
    assert layer.get("k") == value and layer.head("k").size == len(value)
    with layer.open("k") as stream:
        assert stream.read() == value


@settings(max_examples=60, deadline=None)
@given(value=st.binary(max_size=2048))
def test_roundtrip_of_arbitrary_bytes(value: bytes) -> None:
    layer = Encrypted(MemoryStore(), KEY)
    layer.put("k", value)
    assert layer.get("k") == value and layer.open("k").read() == value
