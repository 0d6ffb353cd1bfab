"""Compressed: what the layer adds over the conformance suite (run over memory and SQLite)."""

from __future__ import annotations

import hashlib
import io
import random
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mirrorkv import MemoryStore
from mirrorkv.errors import CorruptValue, InvalidValue, NotSupported, PreconditionFailed
from mirrorkv.layers._compressed_common import SMALL
from mirrorkv.layers.compressed import CODEC, ETAG, SIZE, Compressed
from mirrorkv.layers.encrypted import Encrypted
from mirrorkv.meta import etag_of
from mirrorkv.stores.sqlite import SQLiteStore

TEXT = b"".join(b"line %d: the quick brown fox jumps over the lazy dog\n" % i for i in range(2000))
MIB = 1 << 20


def compressible(size: int, seed: int = 0) -> bytes:
    """Text-like bytes that compress well but not to nothing."""
    rng = random.Random(seed)
    words = [b"alpha", b"beta", b"gamma", b"delta", b"store", b"value", b"key", b"\n"]
    out = bytearray()
    while len(out) < size:
        out += b" ".join(rng.choices(words, k=64))
    return bytes(out[:size])


@pytest.fixture
def inner(tmp_path: Path) -> SQLiteStore:
    return SQLiteStore(tmp_path / "store.db")


def test_compressible_values_are_stored_compressed(inner: SQLiteStore) -> None:
    layer = Compressed(inner)
    meta = layer.put("k", TEXT, content_type="text/plain", metadata={"who": "me"})
    stored = inner.head("k")
    assert stored.size < len(TEXT) // 4
    assert stored.metadata[CODEC] == "zstd"
    assert stored.metadata[SIZE] == str(len(TEXT)) and stored.metadata[ETAG] == etag_of(TEXT)
    for record in (meta, layer.head("k"), next(layer.list())):
        assert (record.size, record.etag) == (len(TEXT), etag_of(TEXT))
        assert dict(record.metadata) == {"who": "me"}
        assert record.content_type == "text/plain"
    assert layer.get("k") == TEXT
    assert layer.open("k").read() == TEXT


def test_values_written_without_the_layer_still_read(inner: SQLiteStore) -> None:
    inner.put("plain", TEXT, metadata={"a": "1"})
    inner.put("big", compressible(3 * MIB))
    layer = Compressed(inner)
    assert layer.get("plain") == TEXT
    assert layer.head("plain") == inner.head("plain")
    with layer.open("big") as stream:
        assert stream.read() == compressible(3 * MIB)
    assert layer.incr("n", 2) == 2


def test_incompressible_values_are_stored_raw(inner: SQLiteStore) -> None:
    layer = Compressed(inner)
    noise = random.Random(1).randbytes(10_000)
    layer.put("noise", noise)
    layer.put("tiny", b"abc")
    for key, value in (("noise", noise), ("tiny", b"abc")):
        assert inner.get(key) == value and CODEC not in inner.head(key).metadata
        assert layer.get(key) == value


def test_incompressible_streams_are_stored_raw_when_seekable(inner: SQLiteStore) -> None:
    layer = Compressed(inner)
    noise = random.Random(2).randbytes(2 * MIB + 5)
    layer.put_file("seekable", io.BytesIO(noise))
    assert CODEC not in inner.head("seekable").metadata and inner.get("seekable") == noise

    class OneWay(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._data = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
            return self._data.readinto(buffer)

    meta = layer.put_file("one-way", io.BufferedReader(OneWay(noise)))
    assert (meta.size, meta.etag) == (len(noise), etag_of(noise))
    assert layer.get("one-way") == noise  # kept compressed (a little larger): still reads


def test_reserved_metadata_names_are_refused(inner: SQLiteStore) -> None:
    layer = Compressed(inner)
    for name in (CODEC, SIZE, "mkv-codec-other", "MKV-Codec"):
        with pytest.raises(InvalidValue):
            layer.put("k", TEXT, metadata={name: "x"})
        with pytest.raises(InvalidValue):
            layer.put_file("k", io.BytesIO(TEXT), metadata={name: "x"})
    assert "k" not in layer
    layer.put("k", TEXT, metadata={"mkv-codecs": "a user's own name"})
    assert dict(layer.head("k").metadata) == {"mkv-codecs": "a user's own name"}


def test_if_match_takes_the_logical_etag(inner: SQLiteStore) -> None:
    layer = Compressed(inner)
    first = layer.put("k", TEXT)
    assert first.etag != inner.head("k").etag
    with pytest.raises(PreconditionFailed):
        layer.put("k", TEXT + b"x", if_match=inner.head("k").etag)
    second = layer.put("k", TEXT + b"x", if_match=layer.head("k").etag)
    with pytest.raises(PreconditionFailed):
        layer.put_file("k", io.BytesIO(compressible(2 * MIB)), if_match=first.etag)
    layer.put_file("k", io.BytesIO(compressible(2 * MIB)), if_match=second.etag)
    assert layer.get("k") == compressible(2 * MIB)


def test_large_streams_have_bounded_memory(inner: SQLiteStore, tmp_path: Path) -> None:
    value = compressible(8 * MIB, seed=3)
    source = tmp_path / "source.txt"
    source.write_bytes(value)
    layer = Compressed(inner)
    tracemalloc.start()
    try:
        meta = layer.put_file("big", source)
        peak_in = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        digest, size = hashlib.md5(), 0
        with layer.open("big") as stream:
            while chunk := stream.read(64 * 1024):
                assert len(chunk) <= 64 * 1024
                digest.update(chunk)
                size += len(chunk)
        peak_out = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (meta.size, meta.etag) == (len(value), etag_of(value))
    assert inner.head("big").size < len(value) // 2
    assert (size, digest.hexdigest()) == (len(value), etag_of(value))
    assert peak_in < 3 * MIB and peak_out < 3 * MIB, (peak_in, peak_out)


def test_a_value_that_compresses_to_little_still_streams(
    inner: SQLiteStore, tmp_path: Path
) -> None:
    source = tmp_path / "zeros"
    with open(source, "wb") as out:
        for _ in range(32):
            out.write(bytes(MIB))
    layer = Compressed(inner)
    layer.put_file("zeros", source)
    assert inner.head("zeros").size < SMALL and layer.head("zeros").size == 32 * MIB
    tracemalloc.start()
    try:
        size = 0
        with layer.open("zeros") as stream:
            while chunk := stream.read(64 * 1024):
                size += len(chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert size == 32 * MIB and peak < 2 * MIB, peak


def test_codec_none_streams_as_is(inner: SQLiteStore) -> None:
    layer = Compressed(inner, codec="none")
    value = compressible(2 * MIB + 1)
    meta = layer.put_file("k", io.BytesIO(value))
    assert inner.get("k") == value and (meta.size, meta.etag) == (len(value), etag_of(value))


@pytest.mark.parametrize("size", [SMALL - 1, SMALL, SMALL + 1, 3 * SMALL + 7])
def test_sizes_around_the_streaming_threshold(inner: SQLiteStore, size: int) -> None:
    layer = Compressed(inner)
    value = compressible(size, seed=size)
    assert layer.put_file("k", io.BytesIO(value)).etag == etag_of(value)
    assert layer.head("k").size == size
    with layer.open("k") as stream:
        assert stream.read() == value
    assert layer.get("k") == value


def test_damaged_values_raise_corrupt_value(inner: SQLiteStore) -> None:
    layer = Compressed(inner)
    big = compressible(3 * MIB)
    layer.put("small", TEXT)
    layer.put_file("big", io.BytesIO(big))
    for key in ("small", "big"):
        stored, meta = inner.get(key), inner.head(key)
        damaged = bytearray(stored)
        damaged[len(damaged) // 2] ^= 0x40
        variants = [bytes(damaged), stored[: len(stored) - 20]]
        for variant in variants:
            inner.put(key, variant, metadata=meta.metadata)
            with pytest.raises(CorruptValue):
                layer.get(key)
            with pytest.raises(CorruptValue), layer.open(key) as stream:
                stream.read()
        inner.put(key, stored, metadata={**meta.metadata, SIZE: "many"})
        with pytest.raises(CorruptValue):
            layer.head(key)
        inner.put(key, stored, metadata={**meta.metadata, CODEC: "lzma"})
        with pytest.raises(CorruptValue):
            layer.get(key)


def test_gzip_and_none_codecs(inner: SQLiteStore) -> None:
    gzip_layer = Compressed(inner, codec="gzip", level=9)
    gzip_layer.put("g", TEXT)
    gzip_layer.put_file("gbig", io.BytesIO(compressible(2 * MIB)))
    assert inner.head("g").metadata[CODEC] == "gzip"
    Compressed(inner).put("z", TEXT)
    reader = Compressed(inner, codec="none")
    reader.put("n", TEXT)
    assert CODEC not in inner.head("n").metadata
    for key in ("g", "z", "n"):
        assert reader.get(key) == gzip_layer.get(key) == TEXT
    assert reader.open("gbig").read() == compressible(2 * MIB)
    with pytest.raises(InvalidValue):
        Compressed(inner, codec="lz4")
    with pytest.raises(InvalidValue):
        Compressed(inner, level=99)


def test_capabilities_the_layer_does_not_offer(inner: SQLiteStore) -> None:
    from mirrorkv.store import Capability

    class Native(MemoryStore):
        capabilities = MemoryStore.capabilities | Capability.NATIVE_TTL | Capability.URLS

    layer = Compressed(Native())
    for dropped in (Capability.NATIVE_TTL, Capability.URLS, Capability.TRANSACTIONS):
        assert dropped not in layer.capabilities
    assert Capability.SERVER_SIDE_COPY & layer.capabilities == (
        Capability.SERVER_SIDE_COPY & MemoryStore.capabilities
    )
    encrypted = Encrypted(Native(), bytes(32))
    for dropped in (Capability.NATIVE_TTL, Capability.URLS, Capability.SERVER_SIDE_COPY):
        assert dropped not in encrypted.capabilities


def test_no_urls_and_a_plain_repr(inner: SQLiteStore) -> None:
    layer = Compressed(MemoryStore(), level=5)
    layer.put("k", b"v")
    with pytest.raises(NotSupported):
        layer.url_for("k")
    assert repr(layer) == f"Compressed({layer.inner!r}, codec='zstd', level=5)"


def test_compressed_over_encrypted() -> None:
    inner = MemoryStore()
    layer = Compressed(Encrypted(inner, bytes(range(32))))
    meta = layer.put("k", TEXT, metadata={"a": "1"})
    assert layer.get("k") == TEXT and layer.head("k") == meta
    assert inner.head("k").size < len(TEXT) // 4  # compressed before it was encrypted
    assert b"quick brown fox" not in inner.get("k")
    layer.put_file("big", io.BytesIO(compressible(3 * MIB)))
    assert layer.open("big").read() == compressible(3 * MIB)
    layer.copy("k", "k2")
    assert layer.get("k2") == TEXT and dict(layer.head("k2").metadata) == {"a": "1"}


def test_import_without_zstandard_and_a_clear_error() -> None:
    code = (
        "import sys; sys.modules['zstandard'] = None\n"
        "import mirrorkv.layers\n"
        "from mirrorkv import MemoryStore\n"
        "from mirrorkv.errors import NotSupported\n"
        "layer = mirrorkv.layers.Compressed(MemoryStore(), codec='gzip')\n"
        "try:\n"
        "    mirrorkv.layers.Compressed(MemoryStore())\n"
        "except NotSupported as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "mirrorkv[zstd]" in result.stdout


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.binary(max_size=4096) | st.builds(compressible, st.integers(0, 200_000)))
def test_roundtrip_property(value: bytes) -> None:
    layer = Compressed(MemoryStore())
    meta = layer.put("k", value)
    assert (meta.size, meta.etag) == (len(value), etag_of(value))
    assert layer.get("k") == value
    assert layer.open("k").read() == value
    assert layer.head("k").size == len(value)
