"""The conformance tests of streaming reads and writes and large values."""

from __future__ import annotations

import hashlib
import io
import random
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from ..errors import KeyNotFound
from ..store import Store
from . import StoreFactory
from ._basics import etag_fits
from ._support import BIG_VALUE, MIB, READ_SIZE, STREAMING_PEAK_LIMIT, write_random_file

__all__ = ["StreamingContract"]


class StreamingContract:
    """The conformance tests of streaming reads and writes and large values.

    Mixed into :class:`~mirrorkv.testing.conformance.StoreConformance`, which
    provides the ``store`` fixture.
    """

    # -- streaming ----------------------------------------------------------

    def test_open_streams(self, store: Store) -> None:
        data = random.Random(1).randbytes(3 * MIB + 17)
        store.put("k", data)
        with store.open("k") as stream:
            parts = [stream.read(10)]
            while chunk := stream.read(READ_SIZE):
                assert len(chunk) <= READ_SIZE
                parts.append(chunk)
            assert stream.read(1) == b""
        assert b"".join(parts) == data
        with store.open("k") as stream:
            assert stream.read() == data

    def test_put_file_and_get_file(self, store: Store, tmp_path: Path) -> None:
        data = random.Random(2).randbytes(2 * MIB + 3)
        source = tmp_path / "source.bin"
        source.write_bytes(data)
        sources: list[Any] = [str(source), source, io.BytesIO(data)]
        for i, given in enumerate(sources):
            meta = store.put_file(f"f{i}", given, content_type="text/csv", metadata={"i": str(i)})
            assert meta.size == len(data) and etag_fits(store, meta.etag, data)
            assert store.head(f"f{i}").etag == meta.etag
            assert store.get(f"f{i}") == data
            assert store.head(f"f{i}").content_type == "text/csv"
        with open(source, "rb") as handle:
            store.put_file("f3", handle)
        assert store.get("f3") == data
        targets: list[Any] = [str(tmp_path / "out0"), tmp_path / "out1"]
        for target in targets:
            Path(target).write_bytes(b"previous, longer content than nothing" * 1000)
            assert store.get_file("f0", target) == len(data)
            assert Path(target).read_bytes() == data
        buffer = io.BytesIO()
        assert store.get_file("f0", buffer) == len(data)
        assert buffer.getvalue() == data

    def test_get_file_never_leaves_a_partial_file(self, store: Store, tmp_path: Path) -> None:
        folder = tmp_path / "out"
        folder.mkdir()
        existing = folder / "existing"
        existing.write_bytes(b"keep me")
        with pytest.raises(KeyNotFound):
            store.get_file("absent", existing)
        with pytest.raises(KeyNotFound):
            store.get_file("absent", folder / "new")
        assert existing.read_bytes() == b"keep me"
        assert sorted(p.name for p in folder.iterdir()) == ["existing"]
        store.put("k", b"value")
        store.get_file("k", folder / "new")
        assert sorted(p.name for p in folder.iterdir()) == ["existing", "new"]

    @pytest.mark.slow
    def test_64mib_value_streams(
        self, store: Store, store_factory: StoreFactory, tmp_path: Path
    ) -> None:
        limit = store.max_value_size
        if limit is not None and limit < BIG_VALUE:
            pytest.skip(f"{store_factory.name} holds values of at most {limit} bytes")
        source = tmp_path / "big.bin"
        md5, sha = write_random_file(source, BIG_VALUE)
        bounded = store_factory.bounded_streaming
        if bounded:
            tracemalloc.start()
        try:
            meta = store.put_file("big", source)
            peak_in = tracemalloc.get_traced_memory()[1] if bounded else 0
            if bounded:
                tracemalloc.reset_peak()
            digest, size = hashlib.sha256(), 0
            with store.open("big") as stream:
                while chunk := stream.read(READ_SIZE):
                    assert len(chunk) <= READ_SIZE
                    digest.update(chunk)
                    size += len(chunk)
            peak_out = tracemalloc.get_traced_memory()[1] if bounded else 0
        finally:
            if bounded:
                tracemalloc.stop()
        assert meta.size == BIG_VALUE and store.head("big").etag == meta.etag
        assert meta.etag == md5 if store.content_etags else etag_fits(store, meta.etag, b"")
        assert (size, digest.hexdigest()) == (BIG_VALUE, sha)
        if bounded:
            for name, peak in (("put_file", peak_in), ("open/read", peak_out)):
                assert peak < STREAMING_PEAK_LIMIT, (
                    f"{name} of a {BIG_VALUE >> 20} MiB value peaked at {peak / MIB:.1f} MiB traced"
                )
