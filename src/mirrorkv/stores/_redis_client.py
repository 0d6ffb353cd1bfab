"""The Redis store's plumbing: the client a URL names, error translation, the calls it sends.

:class:`Caller` sends commands. On a standalone server each thread keeps one
connection of the client's pool for itself, so a call is a pack, a send and
a read: redis-py's ``execute_command`` checks a connection out of the pool
and back in on every call, which measured here as a third of a GET's time
over loopback (see ``docs/stores/redis.md``). On a cluster the calls go
through redis-py's cluster client, which routes them.
"""

from __future__ import annotations

import os
import select
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    ClusterDownError,
    ConnectionError,
    MasterDownError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TimeoutError,
    TryAgainError,
)
from redis.exceptions import ReadOnlyError as RedisReadOnlyError
from redis.retry import Retry

from ..errors import (
    AccessDenied,
    InvalidURL,
    InvalidValue,
    MirrorKVError,
    StoreUnavailable,
    Translator,
)
from ..urls import StoreURL, parse_bool

__all__ = [
    "URL_OPTIONS",
    "Caller",
    "RedisErrors",
    "check_client",
    "client_from_url",
    "describe",
    "pack",
]

#: The options a Redis URL takes (besides ``namespace``, the store's own).
URL_OPTIONS = (
    "namespace",
    "timeout",
    "connect_timeout",
    "retries",
    "max_connections",
    "ssl",
    "ssl_ca_certs",
    "ssl_verify",
)

#: A connection idle for longer than this is checked (one poll) before it is used
#: again, so a connection the server closed meanwhile is replaced, not failed on.
_IDLE_CHECK = 1.0
_monotonic = time.monotonic

_generation = 0


def _after_fork() -> None:
    global _generation
    _generation += 1


os.register_at_fork(after_in_child=_after_fork)


class RedisErrors(Translator):
    """Turns redis-py exceptions into mirrorkv errors; messages name the server, never a secret."""

    __slots__ = ("where",)
    catches = RedisError

    def __init__(self, where: str) -> None:
        self.where = where

    def translate(self, error: BaseException) -> MirrorKVError:
        """The mirrorkv error for a redis-py exception met on the server ``where``."""
        text = str(error)
        if _untrusted_server(error):
            # Not an outage: the same certificate fails the same way every time.
            return AccessDenied(
                f"Redis at {self.where} presented a TLS certificate this client does not "
                f"trust (check the URL's ssl_ca_certs and host name): {text}"
            )
        if isinstance(error, AuthenticationError | AuthorizationError) or (
            isinstance(error, ResponseError) and text.startswith(("NOAUTH", "WRONGPASS", "NOPERM"))
        ):
            return AccessDenied(
                f"Redis at {self.where} refused the credentials "
                f"(check the user name and password of the URL): {text}"
            )
        if isinstance(
            error,
            ConnectionError
            | TimeoutError
            | BusyLoadingError
            | ClusterDownError
            | MasterDownError
            | TryAgainError
            | RedisReadOnlyError
            | RedisClusterException,
        ) or (isinstance(error, ResponseError) and text.startswith(("OOM", "LOADING", "BUSY"))):
            return StoreUnavailable(f"Redis at {self.where} is unavailable: {text}")
        return MirrorKVError(f"Redis error at {self.where}: {text}")


def _untrusted_server(error: BaseException) -> bool:
    """True where ``error`` comes from the server's TLS certificate failing verification."""
    # redis-py raises its ConnectionError inside ``except OSError``, so the ssl
    # error is the context, not the cause.
    seen: BaseException | None = error
    for _ in range(5):  # a short chain; never loop on a cycle
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _hopeless(error: ConnectionError) -> bool:
    """True for a connection error that sending again cannot cure."""
    return isinstance(error, AuthenticationError) or _untrusted_server(error)


class _Held:
    """A connection one thread keeps, with the time it was last used."""

    __slots__ = ("__weakref__", "conn", "generation", "used")

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.generation = _generation
        self.used = _monotonic()


class Caller:
    """Sends commands to the server of a redis-py client; one instance per store.

    ``call`` sends one command and returns its raw reply; ``transaction``
    sends commands as one ``MULTI``/``EXEC`` and returns their replies. A
    connection error is raised (redis-py's exception) after the connection
    is dropped; ``call(..., retry=True)`` (for reads, which are idempotent)
    and ``retries`` (for everything) send it again on a new connection.
    """

    def __init__(self, client: redis.Redis | RedisCluster, retries: int) -> None:
        self._client = client
        self._retries = retries
        self._cluster = isinstance(client, RedisCluster)
        self._local = threading.local()
        self._execute: Callable[..., Any] = client.execute_command
        if isinstance(client, RedisCluster):
            self.call = self._cluster_call  # type: ignore[method-assign]
            self.transaction = self._cluster_transaction  # type: ignore[method-assign]
            self.call_bytes = self._cluster_call_bytes  # type: ignore[method-assign]
        else:
            self._pool = client.connection_pool

    def _held(self) -> _Held:
        held: _Held | None = getattr(self._local, "held", None)
        if held is None or held.generation != _generation:
            conn = self._pool.get_connection()
            held = _Held(conn)
            # The connection goes back to the pool when the thread (and so its local) is gone.
            weakref.finalize(held, self._pool.release, conn)
            self._local.held = held
        return held

    def _connection(self) -> Any:
        held = self._held()
        conn = held.conn
        now = _monotonic()
        if now - held.used > _IDLE_CHECK:
            sock = conn._sock
            # Readable while idle means the server closed it (or sent something unasked).
            if sock is not None and select.select([sock], [], [], 0)[0]:
                conn.disconnect()
        held.used = now
        return conn

    def call(self, *args: Any, retry: bool = False) -> Any:
        """Send one command and return its reply; ``retry``: it is safe to send twice."""
        return self._round_trip(lambda conn: conn.pack_command(*args), retry)

    def call_bytes(self, args: list[bytes], *, retry: bool = False) -> Any:
        """:meth:`call` for a long command whose arguments are all bytes (packed faster)."""
        packed = [pack(args)]  # send_packed_command takes a list of buffers
        return self._round_trip(lambda conn: packed, retry)

    def _round_trip(self, packed: Callable[[Any], Any], retry: bool) -> Any:
        """Send what ``packed(conn)`` returns and read the reply, on this thread's connection.

        A connection error drops the connection; the command is sent again
        on a new one only where ``retry`` (or the ``retries`` option) allows.
        """
        attempts = max(self._retries, 1 if retry else 0)
        while True:
            conn = self._connection()
            try:
                conn.send_packed_command(packed(conn), check_health=False)
                return conn.read_response()
            except ResponseError:
                raise
            except ConnectionError as error:
                conn.disconnect()
                if attempts <= 0 or _hopeless(error):
                    raise
                attempts -= 1
            except BaseException:
                conn.disconnect()
                raise

    def transaction(self, commands: Sequence[list[bytes]]) -> list[Any]:
        """Run ``commands`` (arguments all bytes) as one ``MULTI``/``EXEC``; their replies.

        Raises the first error any of them met. Never sent twice: a batch
        whose reply was lost may have been applied.
        """
        conn = self._connection()
        try:
            conn.send_packed_command([_MULTI, *map(pack, commands), _EXEC], check_health=False)
            first: ResponseError | None = None
            replies: Any = None
            for _ in range(len(commands) + 2):
                try:
                    replies = conn.read_response()
                except ResponseError as error:  # read on, so the connection stays in step
                    first = first or error
        except ResponseError:
            raise
        except BaseException:
            conn.disconnect()
            raise
        if first is not None:
            raise first
        return _raise_any(replies)

    def _cluster_call(self, *args: Any, retry: bool = False) -> Any:
        return self._execute(*args)

    def _cluster_call_bytes(self, args: list[bytes], *, retry: bool = False) -> Any:
        # The cluster client routes by the command's name, which it wants as a str.
        return self._execute(args[0].decode(), *args[1:])

    def _cluster_transaction(self, commands: Sequence[list[bytes]]) -> list[Any]:
        pipe = self._client.pipeline(transaction=True)
        for command in commands:
            pipe.execute_command(command[0].decode(), *command[1:])
        return _raise_any(pipe.execute())

    def load_script(self, lua: str) -> None:
        """Load a script into the server's cache (every primary of a cluster)."""
        self._client.script_load(lua)

    def close(self) -> None:
        """Close every connection of the client's pool (or of every cluster node)."""
        self._local = threading.local()
        close: Callable[[], None] = self._client.close
        close()


def pack(args: list[bytes]) -> bytes:
    """One command in the Redis protocol (RESP), built with C-level passes over its arguments.

    redis-py's packer handles any argument type one by one; for a batch of
    tens of thousands of byte strings it was most of ``put_many``'s time.
    """
    flat: list[bytes] = [b""] * (2 * len(args))
    flat[0::2] = map(_BULK.__mod__, map(len, args))
    flat[1::2] = args
    return b"*%d\r\n" % len(args) + b"\r\n".join(flat) + b"\r\n"


_BULK = b"$%d"
_MULTI = b"*1\r\n$5\r\nMULTI\r\n"
_EXEC = b"*1\r\n$4\r\nEXEC\r\n"


def _raise_any(replies: list[Any]) -> list[Any]:
    for reply in replies:
        if isinstance(reply, ResponseError):
            raise reply
    return replies


def client_from_url(
    url: StoreURL, options: Mapping[str, Any]
) -> tuple[redis.Redis | RedisCluster, int]:
    """A redis-py client for a ``redis://``, ``rediss://`` or ``redis+cluster://`` URL.

    Returns the client and the ``retries`` option; :class:`InvalidURL` for a
    malformed option or path.
    """
    cluster = url.scheme == "redis+cluster"
    if "ssl" in options and not cluster:
        raise InvalidURL("option ssl is for redis+cluster://; use rediss:// for TLS")
    tls = url.scheme == "rediss" or (cluster and parse_bool("ssl", options.get("ssl", False)))
    kwargs: dict[str, Any] = {
        "host": url.host or "127.0.0.1",
        "port": url.port or 6379,
        "username": url.username or None,
        "password": url.password,
        "socket_timeout": _seconds(options, "timeout", 30.0),
        "socket_connect_timeout": _seconds(options, "connect_timeout", 10.0),
        # The store decides what is sent again (see Caller); redis-py's own
        # default retries with backoff of up to seconds would hide an outage.
        "retry": Retry(NoBackoff(), 0),
    }
    if "max_connections" in options:
        kwargs["max_connections"] = max(1, _count(options, "max_connections"))
    if tls:
        verify = parse_bool("ssl_verify", options.get("ssl_verify", True))
        kwargs["ssl"] = True
        kwargs["ssl_cert_reqs"] = "required" if verify else "none"
        kwargs["ssl_check_hostname"] = verify
        if "ssl_ca_certs" in options:
            kwargs["ssl_ca_certs"] = str(options["ssl_ca_certs"])
    elif "ssl_ca_certs" in options or "ssl_verify" in options:
        raise InvalidURL(
            f"TLS options need rediss:// (or ssl=true on a cluster), not {url.scheme}://"
        )
    db_text = url.path.strip("/")
    if cluster:
        if db_text not in ("", "0"):
            raise InvalidURL(f"a Redis cluster has only database 0, not {db_text!r}")
    else:
        try:
            kwargs["db"] = int(db_text or 0)
        except ValueError:
            raise InvalidURL(
                f"the path of a redis:// URL is a database number, not {db_text!r}"
            ) from None
    retries = _count(options, "retries") if "retries" in options else 0
    with RedisErrors(url.redacted()):  # a cluster client asks a node for its slots at once
        client: redis.Redis | RedisCluster = (
            RedisCluster(**kwargs) if cluster else redis.Redis(**kwargs)
        )
    return client, retries


def check_client(user: str, client: object, retries: object) -> None:
    """:class:`InvalidValue` unless ``client`` is a redis-py client that does not decode
    responses and ``retries`` a whole number >= 0; ``user`` names the class taking them.
    """
    if not isinstance(client, redis.Redis | RedisCluster):
        raise InvalidValue(f"{user} takes a redis.Redis client, not {type(client)!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise InvalidValue(f"retries is a whole number >= 0, not {retries!r}")
    if client.get_encoder().decode_responses:
        raise InvalidValue(f"{user} needs a client with decode_responses=False")


def describe(client: redis.Redis | RedisCluster) -> str:
    """Where a client connects, for messages: host, port and database, never a password."""
    if isinstance(client, RedisCluster):
        node = client.get_default_node()  # type: ignore[no-untyped-call]
        return f"redis+cluster://{node.host}:{node.port}" if node else "redis+cluster://"
    kwargs = client.connection_pool.connection_kwargs
    return f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"


def _seconds(options: Mapping[str, Any], name: str, default: float) -> float:
    raw = options.get(name, default)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise InvalidURL(f"option {name} takes seconds, not {raw!r}") from None
    if not value > 0:
        raise InvalidURL(f"option {name} takes seconds > 0, not {raw!r}")
    return value


def _count(options: Mapping[str, Any], name: str) -> int:
    raw = options[name]
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise InvalidURL(f"option {name} takes a whole number, not {raw!r}") from None
    if value < 0 or isinstance(raw, bool):
        raise InvalidURL(f"option {name} takes a whole number >= 0, not {raw!r}")
    return value
