"""Shared fixtures: the store factories every conformance test runs over.

A factory builder takes the requesting test's ``request`` (to ask for a
service fixture, which skips the test with its reason where the service
cannot be had) and a fresh temporary directory. The network stores' builders
live beside their servers' fixtures in ``tests/services/``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

# The shipped suite's asserts should show the values they compare: rewrite them
# before anything imports mirrorkv.testing.
pytest.register_assert_rewrite("mirrorkv.testing", "services")

import layer_factories  # noqa: E402
from mirrorkv import MemoryStore  # noqa: E402
from mirrorkv.testing import StoreFactory  # noqa: E402
from services import azure, gcs, redis, s3, sql  # noqa: E402

#: The service fixtures (``redis_url``, ``s3_endpoint``, ...) defined beside each backend.
pytest_plugins = ["services.azure", "services.gcs", "services.redis", "services.s3", "services.sql"]

FactoryBuilder = Callable[[pytest.FixtureRequest, Path], StoreFactory]


def _memory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    store = MemoryStore()
    return StoreFactory("memory", lambda: store)


def _memory_bounded(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    store = MemoryStore(max_bytes=64 << 20)
    return StoreFactory("memory-bounded", lambda: store)


def _file(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
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


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
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


def _mirror_memory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    from mirrorkv.mirror import Mirror, SQLiteIndex

    remote = MemoryStore()
    index = tmp_path / "index.db"
    return StoreFactory(
        "mirror-memory", lambda: Mirror(remote, SQLiteIndex(index), bucket="memory")
    )


def _mirror_sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    from mirrorkv.mirror import Mirror, SQLiteIndex
    from mirrorkv.stores.sqlite import SQLiteStore

    path, index = tmp_path / "store.db", tmp_path / "index.db"
    return StoreFactory(
        "mirror-sqlite",
        lambda: Mirror(SQLiteStore(path), SQLiteIndex(index)),
        url=f"sqlite://{path}?mirror_index=sqlite://{index}",  # the same stack, by URL
        persistent=True,
        multi_process=True,
        bounded_streaming=True,
    )


#: Every store the conformance suite runs over; a new backend or layer adds one line.
STORE_FACTORIES: dict[str, FactoryBuilder] = {
    "memory": _memory,
    "memory-bounded": _memory_bounded,
    "file": _file,
    "sqlite": _sqlite,
    "mirror-memory": _mirror_memory,
    "mirror-sqlite": _mirror_sqlite,
    **layer_factories.FACTORIES,
    **azure.FACTORIES,
    **gcs.FACTORIES,
    **redis.FACTORIES,
    **s3.FACTORIES,
    **sql.FACTORIES,
}


@pytest.fixture(params=sorted(STORE_FACTORIES))
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Each registered store in turn, empty (its own directory, namespace, table or bucket)."""
    return STORE_FACTORIES[request.param](request, tmp_path)
