"""Conformance-suite stores for the layers: each layer over memory and over SQLite.

``FACTORIES`` (merged into ``STORE_FACTORIES`` by ``tests/conftest.py``) holds,
for every layer module that exists, ``<layer>-memory`` and ``<layer>-sqlite``.
A layer is registered here by one entry in ``LAYERS``: its module under
``mirrorkv.layers``, its class, and how to wrap a store in it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mirrorkv import MemoryStore
from mirrorkv.store import Store
from mirrorkv.testing import StoreFactory

__all__ = ["FACTORIES", "LAYERS", "TEST_KEY"]

#: A fixed 256-bit key for the encryption layer's conformance runs (tests only).
TEST_KEY = bytes(range(32))

Wrap = Callable[[Any, Store, Path], Store]


def _stack(cls: Any, inner: Store, tmp: Path) -> Store:
    """Every value-and-key layer at once, in the documented order (docs/layers.md)."""
    from mirrorkv.layers import Cached, Compressed, Encrypted, Expiring, Prefixed

    stored = Encrypted(Prefixed(inner, "tenant-a/"), TEST_KEY)
    return Expiring(Cached(Compressed(stored), cache=MemoryStore(max_bytes=1 << 20)))


def _stack_reversed(cls: Any, inner: Store, tmp: Path) -> Store:
    """The same layers the other way round: pointless for compression, but still correct."""
    from mirrorkv.layers import Cached, Compressed, Encrypted, Expiring, Prefixed

    stored = Compressed(Cached(Expiring(inner), cache=MemoryStore(max_bytes=1 << 20)))
    return Prefixed(Encrypted(stored, TEST_KEY), "tenant-a/")


#: ``name -> (module, class, wrap(cls, inner, tmp_path))``. ReadOnly is not here:
#: the suite writes; tests/layers/test_readonly.py runs the reads on it.
LAYERS: dict[str, tuple[str, str, Wrap]] = {
    "layer": ("base", "Layer", lambda cls, inner, tmp: cls(inner)),  # the base: passes through
    "prefixed": ("prefixed", "Prefixed", lambda cls, inner, tmp: cls(inner, "tenant-a/")),
    "expiring": ("expiring", "Expiring", lambda cls, inner, tmp: cls(inner)),
    "compressed": ("compressed", "Compressed", lambda cls, inner, tmp: cls(inner)),
    "encrypted": ("encrypted", "Encrypted", lambda cls, inner, tmp: cls(inner, TEST_KEY)),
    "encrypted-tag": (  # etags from the AES-GCM tag: content_etags is False
        "encrypted",
        "Encrypted",
        lambda cls, inner, tmp: cls(inner, TEST_KEY, etag="tag"),
    ),
    "cached": (
        "cached",
        "Cached",
        lambda cls, inner, tmp: cls(inner, cache=MemoryStore(max_bytes=1 << 20)),
    ),
    "keygen": ("keygen", "KeyGen", lambda cls, inner, tmp: cls(inner)),
    "stack": ("base", "Layer", _stack),
    "stack-reversed": ("base", "Layer", _stack_reversed),
    "writebehind": (
        "writebehind",
        "WriteBehind",
        lambda cls, inner, tmp: cls(front=MemoryStore(), back=inner, interval=0.05),
    ),
}


def _layer_class(module: str, name: str) -> Any | None:
    try:
        return getattr(importlib.import_module(f"mirrorkv.layers.{module}"), name)
    except (ImportError, AttributeError):
        return None  # not written yet: not in the suite


def _over_memory(
    label: str, cls: Any, wrap: Wrap
) -> Callable[[pytest.FixtureRequest, Path], StoreFactory]:
    def build(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
        inner = MemoryStore()
        return StoreFactory(f"{label}-memory", lambda: wrap(cls, inner, tmp_path))

    return build


def _over_sqlite(
    label: str, cls: Any, wrap: Wrap
) -> Callable[[pytest.FixtureRequest, Path], StoreFactory]:
    def build(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
        from mirrorkv.stores.sqlite import SQLiteStore

        path = tmp_path / "store.db"
        return StoreFactory(
            f"{label}-sqlite",
            lambda: wrap(cls, SQLiteStore(path), tmp_path),
            persistent=True,
        )

    return build


Builder = Callable[[pytest.FixtureRequest, Path], StoreFactory]

FACTORIES: dict[str, Builder] = {}
for _label, (_module, _name, _wrap) in LAYERS.items():
    _cls = _layer_class(_module, _name)
    if _cls is not None:
        FACTORIES[f"{_label}-memory"] = _over_memory(_label, _cls, _wrap)
        FACTORIES[f"{_label}-sqlite"] = _over_sqlite(_label, _cls, _wrap)
