"""Azure Blob Storage (Azurite) for the tests: the server fixture and the conformance factories.

The service is, in this order: the connection string in
``MIRRORKV_TEST_AZURE_URL``; Azurite answering on 127.0.0.1:10000 (unless
``MIRRORKV_TEST_OWN_SERVERS=1``); or Azurite's blob service started here on a
free port from ``.tools/emulators`` (``make services`` installs it with npm).
Azurite serves the well-known development account, whose key Microsoft
publishes: it is no secret.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mirrorkv.testing import StoreFactory

from . import (
    PROJECT_ROOT,
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

#: The environment variable naming the service (an Azure connection string).
AZURE_URL_ENV = "MIRRORKV_TEST_AZURE_URL"
#: Where ``make services`` installs Azurite.
AZURITE = PROJECT_ROOT / ".tools" / "emulators" / "node_modules" / ".bin" / "azurite-blob"
#: Azurite's development account and its published key (a public constant).
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
STANDARD_PORT = 10000


def dev_connection_string(port: int, key: str = DEV_KEY) -> str:
    """The connection string of Azurite's development account on ``127.0.0.1:port``."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={key};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{DEV_ACCOUNT};"
    )


def azurite_process(port: int, workdir: Path, *, in_memory: bool = True) -> ServerProcess:
    """An Azurite blob service on ``port`` (not started), logging to ``workdir``.

    It keeps its data in memory, or with ``in_memory=False`` in ``workdir``, so
    that it survives a restart.
    """
    binary = find_binary(AZURITE, "azurite-blob")
    if binary is None:
        raise ServiceUnavailable("Azurite is not installed: install with make services (needs npm)")
    (workdir / "data").mkdir(parents=True, exist_ok=True)
    # --inMemoryPersistence refuses --location; the working directory takes its place.
    argv = [
        binary,
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(port),
        "--skipApiVersionCheck",
        "--disableTelemetry",
        "--silent",
        *(["--inMemoryPersistence"] if in_memory else ["--location", str(workdir / "data")]),
    ]
    return ServerProcess("azurite", argv, log_path=workdir / "azurite.log", cwd=workdir)


def start_azurite(port: int, workdir: Path, *, in_memory: bool = True) -> ServerProcess:
    """Start Azurite on ``port`` and wait until it answers; :class:`ServiceUnavailable` if not."""
    server = azurite_process(port, workdir, in_memory=in_memory)
    server.start()
    wait_for_azurite(server, port)
    return server


def wait_for_azurite(server: ServerProcess, port: int) -> None:
    """Wait until the Azurite ``server`` answers on ``port`` (stopping it if it never does)."""
    try:
        wait_until(
            lambda: port_answers("127.0.0.1", port),
            timeout=30,
            what=f"Azurite on port {port}",
            process=server,
        )
    except ServiceUnavailable:
        server.stop()
        raise


@pytest.fixture(scope="session")
def _azure_service() -> Iterator[str | ServiceUnavailable]:
    named = os.environ.get(AZURE_URL_ENV, "").strip()
    if named:
        yield named
        return
    if not own_servers_forced() and port_answers("127.0.0.1", STANDARD_PORT):
        yield dev_connection_string(STANDARD_PORT)
        return
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="mirrorkv-azurite-") as workdir:
        try:
            server = start_azurite(port, Path(workdir))
        except ServiceUnavailable as error:
            yield error
            return
        try:
            yield dev_connection_string(port)
        finally:
            server.stop()


@pytest.fixture
def azure_connection_string(_azure_service: str | ServiceUnavailable) -> str:
    """The connection string of the Azure Blob service under test; skips where there is none."""
    if isinstance(_azure_service, ServiceUnavailable):
        skip_unavailable(_azure_service)
        raise AssertionError("unreachable")
    return _azure_service


def new_container(connection_string: str) -> tuple[str, Callable[[], None]]:
    """Create a container of a unique name; return it and a function that deletes it."""
    from azure.storage.blob import BlobServiceClient

    name = unique_name("mkv").lower()[:63]
    service = BlobServiceClient.from_connection_string(connection_string, retry_total=1)
    service.create_container(name)

    def delete() -> None:
        try:
            service.delete_container(name)
        except Exception:  # the server may be gone already (stop/restart tests)
            pass
        finally:
            service.close()

    return name, delete


def _azure(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    from mirrorkv.stores.azure import CONNECTION_STRING_ENV, AzureBlobStore

    try:
        connection_string: str = request.getfixturevalue("azure_connection_string")
    except ServiceUnavailable as error:
        skip_unavailable(error)
        raise
    container, delete = new_container(connection_string)
    request.addfinalizer(delete)
    # The URL carries no credential: child processes find it in the environment.
    monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
    monkeypatch.setenv(CONNECTION_STRING_ENV, connection_string)
    return StoreFactory(
        "azure",
        lambda: AzureBlobStore(container, connection_string=connection_string),
        url=f"azure://{container}",
        persistent=True,
        multi_process=True,
        bounded_streaming=True,
        remote=True,
    )


#: Conformance-suite stores this backend provides (merged into ``STORE_FACTORIES``).
FACTORIES: dict[str, Callable[[pytest.FixtureRequest, Path], StoreFactory]] = {"azure": _azure}
