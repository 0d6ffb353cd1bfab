"""Real servers for the tests: named by the environment, found on the standard port, or started.

Each backend's module here (``redis``, ``s3``, ``sql``, ``azure``, ``gcs``)
defines session fixtures yielding a service URL, found in this order:

1. the environment variable the module names (``MIRRORKV_TEST_REDIS_URL``, ...);
2. a server answering on the standard local port;
3. a server the fixture starts itself on a free port and stops at the end.

``MIRRORKV_TEST_OWN_SERVERS=1`` skips step 2, so the fresh-machine path can be
proven on any machine. A service that cannot be had at all makes its tests
skip with the reason (``pytest -ra`` lists it), never pass silently.

Each module also exports ``FACTORIES``: the conformance-suite stores it
provides, merged into ``STORE_FACTORIES`` by ``tests/conftest.py``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

__all__ = [
    "OWN_SERVERS_ENV",
    "PROJECT_ROOT",
    "ServerProcess",
    "ServiceUnavailable",
    "find_binary",
    "free_port",
    "own_servers_forced",
    "port_answers",
    "skip_unavailable",
    "unique_name",
    "wait_until",
]

OWN_SERVERS_ENV = "MIRRORKV_TEST_OWN_SERVERS"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class ServiceUnavailable(Exception):
    """A service could not be found or started; the message is the skip reason."""


def own_servers_forced() -> bool:
    """True where ``MIRRORKV_TEST_OWN_SERVERS`` asks every fixture to start its own server."""
    return os.environ.get(OWN_SERVERS_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """True where something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def find_binary(*candidates: str | Path) -> str | None:
    """The first of ``candidates`` that is an executable path or a command on ``PATH``."""
    for candidate in candidates:
        path = Path(candidate)
        if path.is_absolute() or len(path.parts) > 1:
            if path.is_file() and os.access(path, os.X_OK):
                return str(path)
        elif found := shutil.which(str(candidate)):
            return found
    return None


_counter = 0


def unique_name(prefix: str = "t") -> str:
    """A name no other test of this or another concurrent session uses: tables, buckets."""
    global _counter
    _counter += 1
    return f"{prefix}{os.getpid():x}{time.time_ns() % 10**9:x}{_counter}"


class ServerProcess:
    """A server process the test session owns: its output goes to a log file.

    ``start()`` runs it, ``stop()`` ends it (``stop_signal``, SIGTERM unless
    the server wants another, then SIGKILL after a grace period); both may be
    called again, so a test can take a server down and bring it back on the
    same port.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
        stop_signal: int = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.stop_signal = stop_signal
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.user = user
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the process (a no-op while it runs)."""
        if self.running:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **(self.env or {})}
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.cwd,
                user=self.user,
                start_new_session=True,
            )

    def stop(self, grace: float = 10.0) -> None:
        """Stop the process and every child it started; wait until it is gone."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        for sig, wait in ((self.stop_signal, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            try:
                process.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def log_tail(self, lines: int = 15) -> str:
        """The last lines the server wrote, for an error message."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    process: ServerProcess | None = None,
) -> None:
    """Poll ``check`` until it returns True; :class:`ServiceUnavailable` after ``timeout``.

    Gives up at once where ``process`` has exited, with the end of its log.
    """
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        try:
            if check():
                return
        except Exception:  # any failure means "not ready yet"
            pass
        if process is not None and not process.running:
            raise ServiceUnavailable(
                f"{what}: the server exited at start-up; its log ends:\n{process.log_tail()}"
            )
        if time.monotonic() > deadline:
            tail = f"; its log ends:\n{process.log_tail()}" if process else ""
            raise ServiceUnavailable(f"{what}: not ready after {timeout:.0f} s{tail}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)


def skip_unavailable(error: ServiceUnavailable) -> None:
    """Skip the requesting test with the reason; the session summary lists it."""
    pytest.skip(str(error))
