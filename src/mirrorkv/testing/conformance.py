"""The conformance suite: every line of the Store contract, for any store.

Subclass :class:`StoreConformance` and provide a ``store_factory`` fixture
(see :mod:`mirrorkv.testing`); a ``store`` fixture opening an empty store from
it is provided here.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..errors import InvalidKey, KeyNotFound, PreconditionFailed
from ..store import Store
from . import StoreFactory

__all__ = ["StoreConformance"]


class StoreConformance:
    """Tests every store must pass. Needs a ``store_factory`` fixture."""

    @pytest.fixture
    def store(self, store_factory: StoreFactory) -> Iterator[Store]:
        opened = store_factory.open()
        yield opened
        opened.close()

    def test_put_get_roundtrip(self, store: Store) -> None:
        meta = store.put("a", b"value")
        assert store.get("a") == b"value"
        assert meta.key == "a"
        assert meta.size == 5

    def test_missing_key(self, store: Store) -> None:
        with pytest.raises(KeyNotFound):
            store.get("absent")
        with pytest.raises(KeyError):
            store.head("absent")

    def test_invalid_keys(self, store: Store) -> None:
        for bad in ["", "a\x00b", "x" * 1025]:
            with pytest.raises(InvalidKey):
                store.put(bad, b"v")

    def test_create_only(self, store: Store) -> None:
        store.put("k", b"1", if_none_match="*")
        with pytest.raises(PreconditionFailed):
            store.put("k", b"2", if_none_match="*")
        assert store.get("k") == b"1"
