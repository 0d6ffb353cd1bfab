"""PostgreSQL and MariaDB for the tests: the server fixtures and the conformance factories.

``postgres_url`` and ``mysql_url`` (session fixtures) are, in order:
``$MIRRORKV_TEST_POSTGRES_URL`` / ``$MIRRORKV_TEST_MYSQL_URL``; the server on
the standard local port (PostgreSQL 5432 with trust authentication, user
``postgres`` or ``root``, database ``test``; MariaDB 3306, ``root`` without a
password, database ``test``) unless ``MIRRORKV_TEST_OWN_SERVERS=1``; else a
server started here from Debian's packages in a temporary data directory on
a free port (PostgreSQL runs as the ``postgres`` user, since ``initdb``
refuses root; MariaDB as root with ``--user=root``), stopped at session end.

:func:`own_postgres` and :func:`own_mariadb` start a private server for one
test (one that stops and restarts it), with an optional password.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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
    "OwnServer",
    "mysql_url",
    "own_mariadb",
    "own_postgres",
    "postgres_url",
    "table_url",
]

POSTGRES_ENV = "MIRRORKV_TEST_POSTGRES_URL"
MYSQL_ENV = "MIRRORKV_TEST_MYSQL_URL"
#: Seconds a server started here may take to answer.
START_TIMEOUT = 60.0


@dataclass
class OwnServer:
    """A database server this session started: its process, URL and start-up time."""

    process: ServerProcess
    url: str
    root: Path
    started_in: float

    def stop(self) -> None:
        """Stop the server (it can be started again with ``restart``)."""
        self.process.stop()

    def restart(self) -> None:
        """Start the stopped server again on the same port, and wait until it answers."""
        self.process.start()
        port = int(self.url.rsplit(":", 1)[1].split("/", 1)[0])
        wait_until(
            lambda: port_answers("127.0.0.1", port),
            timeout=START_TIMEOUT,
            what=f"{self.process.name} restart",
            process=self.process,
        )
        # The port opens a moment before the server accepts logins.
        time.sleep(0.3)


def table_url(url: str, table: str) -> str:
    """``url`` with the ``table`` option added."""
    return f"{url}{'&' if '?' in url else '?'}table={table}"


# -- PostgreSQL --------------------------------------------------------------


def _postgres_bin(name: str) -> str | None:
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return find_binary(*candidates, name)


def _pg_connects(url: str) -> bool:
    import psycopg

    with psycopg.connect(url, connect_timeout=3):
        return True


def _postgres_on_standard_port() -> str | None:
    if not port_answers("127.0.0.1", 5432):
        return None
    for user in ("postgres", "root"):
        url = f"postgresql://{user}@127.0.0.1:5432/test"
        try:
            _pg_connects(url)
        except Exception:
            continue
        return url
    return None


@contextlib.contextmanager
def own_postgres(password: str | None = None) -> Iterator[OwnServer]:
    """A PostgreSQL server of its own in a temporary directory, with a database ``test``.

    With ``password``, logins over TCP need it (scram-sha-256) and the URL
    carries it; without, trust authentication.
    """
    initdb, postgres = _postgres_bin("initdb"), _postgres_bin("postgres")
    if initdb is None or postgres is None:
        raise ServiceUnavailable(
            "PostgreSQL is not installed (no initdb/postgres; apt-get install postgresql)"
        )
    user = "postgres" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="mirrorkv-pg-"))
    try:
        started = time.monotonic()
        if user is not None:
            shutil.chown(root, user, user)
        data = root / "data"
        command = [initdb, "-D", str(data), "-U", "postgres", "-E", "UTF8", "--no-locale", "-N"]
        if password is None:
            command += ["-A", "trust"]
        else:
            pwfile = root / "pwfile"
            pwfile.write_text(password + "\n")
            if user is not None:
                shutil.chown(pwfile, user, user)
            command += ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
        done = subprocess.run(command, user=user, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ServiceUnavailable(f"initdb failed: {done.stdout[-500:]}{done.stderr[-500:]}")
        port = free_port()
        process = ServerProcess(
            "postgres",
            [
                postgres,
                "-D",
                str(data),
                "-p",
                str(port),
                "-k",
                str(root),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ],
            log_path=root / "postgres.log",
            user=user,
            # SIGTERM is PostgreSQL's "smart" shutdown, which waits for every
            # client to leave; SIGINT is "fast", which ends their sessions.
            stop_signal=signal.SIGINT,
        )
        process.start()
        own = OwnServer(process, "", root, 0.0)
        try:
            wait_until(
                lambda: port_answers("127.0.0.1", port),
                timeout=START_TIMEOUT,
                what="postgres",
                process=process,
            )
            secret = f":{password}" if password is not None else ""
            admin = f"postgresql://postgres{secret}@127.0.0.1:{port}/postgres"
            wait_until(lambda: _pg_connects(admin), timeout=START_TIMEOUT, what="postgres login")
            import psycopg

            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute("CREATE DATABASE test")
            own.url = f"postgresql://postgres{secret}@127.0.0.1:{port}/test"
            own.started_in = time.monotonic() - started
            yield own
        finally:
            own.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- MariaDB -------------------------------------------------------------------


def _my_connects(port: int, user: str = "root", password: str = "", database: str = "") -> bool:
    import pymysql

    pymysql.connect(
        host="127.0.0.1",
        port=port,
        user=user,
        password=password,
        database=database or None,
        connect_timeout=3,
    ).close()
    return True


def _mysql_on_standard_port() -> str | None:
    if not port_answers("127.0.0.1", 3306):
        return None
    try:
        _my_connects(3306, database="test")
    except Exception:
        return None
    return "mysql://root@127.0.0.1:3306/test"


@contextlib.contextmanager
def own_mariadb() -> Iterator[OwnServer]:
    """A MariaDB server of its own in a temporary directory, with a database ``test``."""
    install = find_binary("mariadb-install-db", "mysql_install_db")
    server = find_binary("/usr/sbin/mariadbd", "mariadbd", "/usr/sbin/mysqld", "mysqld")
    if install is None or server is None:
        raise ServiceUnavailable(
            "MariaDB is not installed (no mariadb-install-db/mariadbd; "
            "apt-get install mariadb-server)"
        )
    root = Path(tempfile.mkdtemp(prefix="mirrorkv-mariadb-"))
    try:
        started = time.monotonic()
        data = root / "data"
        done = subprocess.run(
            [
                install,
                "--no-defaults",
                f"--datadir={data}",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise ServiceUnavailable(
                f"mariadb-install-db failed: {done.stdout[-500:]}{done.stderr[-500:]}"
            )
        port = free_port()
        process = ServerProcess(
            "mariadbd",
            [
                server,
                "--no-defaults",
                f"--datadir={data}",
                f"--socket={root / 'mariadb.sock'}",
                f"--pid-file={root / 'mariadb.pid'}",
                f"--port={port}",
                "--bind-address=127.0.0.1",
                "--user=root",
                "--skip-log-bin",
                "--innodb-flush-log-at-trx-commit=2",
                "--innodb-buffer-pool-size=64M",
                "--max-allowed-packet=64M",
            ],
            log_path=root / "mariadbd.log",
        )
        process.start()
        try:
            wait_until(
                lambda: _my_connects(port), timeout=START_TIMEOUT, what="mariadbd", process=process
            )
            import pymysql

            conn = pymysql.connect(host="127.0.0.1", port=port, user="root", autocommit=True)
            with conn:
                conn.cursor().execute("CREATE DATABASE test")
            url = f"mysql://root@127.0.0.1:{port}/test"
            yield OwnServer(process, url, root, time.monotonic() - started)
        finally:
            process.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- session fixtures ----------------------------------------------------------


def _service_url(
    env: str,
    standard: Callable[[], str | None],
    own: Callable[[], contextlib.AbstractContextManager[OwnServer]],
) -> Iterator[str | ServiceUnavailable]:
    """The URL of a service (or why there is none), following the order in the module docstring."""
    if url := os.environ.get(env):
        yield url
        return
    if not own_servers_forced() and (url := standard()):
        yield url
        return
    try:
        with own() as server:
            print(f"\nstarted {server.process.name} in {server.started_in:.2f} s: {server.url}")
            yield server.url
    except ServiceUnavailable as error:
        yield error


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL URL (no table option) the tests may create tables in."""
    for found in _service_url(POSTGRES_ENV, _postgres_on_standard_port, own_postgres):
        if isinstance(found, ServiceUnavailable):
            skip_unavailable(found)
        yield str(found)


@pytest.fixture(scope="session")
def mysql_url() -> Iterator[str]:
    """A MySQL/MariaDB URL (no table option) the tests may create tables in."""
    for found in _service_url(MYSQL_ENV, _mysql_on_standard_port, own_mariadb):
        if isinstance(found, ServiceUnavailable):
            skip_unavailable(found)
        yield str(found)


# -- conformance factories -----------------------------------------------------


def _factory(name: str, fixture: str) -> Callable[[pytest.FixtureRequest, Path], StoreFactory]:
    def build(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
        from mirrorkv import open as open_store
        from mirrorkv.stores.sql import SQLStore

        server_url = request.getfixturevalue(fixture)
        url = table_url(server_url, unique_name("mkv"))

        def drop() -> None:
            store = open_store(url)
            assert isinstance(store, SQLStore)
            store.drop_tables()

        request.addfinalizer(drop)
        return StoreFactory(
            name,
            lambda: open_store(url),
            url=url,
            persistent=True,
            multi_process=True,
            bounded_streaming=True,
        )

    return build


#: Conformance-suite stores this backend provides (merged into ``STORE_FACTORIES``).
FACTORIES: dict[str, Callable[[pytest.FixtureRequest, Path], StoreFactory]] = {
    "postgresql": _factory("postgresql", "postgres_url"),
    "mysql": _factory("mysql", "mysql_url"),
}
