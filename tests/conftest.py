"""Shared fixtures: the store factories every conformance test runs over."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

# The shipped suite's asserts should show the values they compare: rewrite them
# before anything imports mirrorkv.testing.
pytest.register_assert_rewrite("mirrorkv.testing")

from mirrorkv import MemoryStore  # noqa: E402
from mirrorkv.testing import StoreFactory  # noqa: E402


def _memory(tmp_path: Path) -> StoreFactory:
    store = MemoryStore()
    return StoreFactory("memory", lambda: store)


def _file(tmp_path: Path) -> StoreFactory:
    from mirrorkv.stores.file import FileStore

    root = tmp_path / "files"
    return StoreFactory(
        "file",
        lambda: FileStore(root),
        url=f"file://{root}",
        persistent=True,
        multi_process=True,
        bounded_streaming=True,
    )


def _sqlite(tmp_path: Path) -> StoreFactory:
    from mirrorkv.stores.sqlite import SQLiteStore

    path = tmp_path / "store.db"
    return StoreFactory(
        "sqlite",
        lambda: SQLiteStore(path),
        url=f"sqlite://{path}",
        persistent=True,
        multi_process=True,
        bounded_streaming=True,
    )


#: Every store the conformance suite runs over; a new backend or layer adds one line.
STORE_FACTORIES: dict[str, Callable[[Path], StoreFactory]] = {
    "memory": _memory,
    "file": _file,
    "sqlite": _sqlite,
}


@pytest.fixture(params=sorted(STORE_FACTORIES))
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Each registered store in turn, empty, in its own temporary directory."""
    return STORE_FACTORIES[request.param](tmp_path)
