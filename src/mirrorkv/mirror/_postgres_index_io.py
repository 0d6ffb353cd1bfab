"""How the PostgreSQL index runs statements: its pool, and when a statement runs again.

The connections are the SQL store's (:mod:`mirrorkv.stores._sql_io`): each
thread keeps the pooled psycopg connection it took, in autocommit. A read
that finds its connection dead runs once more on a fresh one; a write that
meets a deadlock or a serialization failure runs again (it changed nothing).
A forked child leaves the connections it inherited alone and opens its own.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa

from ..errors import MirrorKVError
from ..stores._sql_errors import ErrorTranslator, is_disconnect, is_retryable_conflict
from ..stores._sql_io import Lease, Leases

__all__ = ["ATTEMPTS", "Runner", "session_settings"]

#: How often a write that met a deadlock or a serialization failure runs.
ATTEMPTS = 20
_T = TypeVar("_T")


def session_settings(connection: Any, record: Any) -> None:
    """Turn JIT compilation off and keep generic plans on a new connection (a pool listener).

    The index runs short statements whose row estimates (a set-returning
    function per key) can exceed ``jit_above_cost``; compiling them then took
    about a second per batch of 10,000 records (measured, PostgreSQL 15).

    Its statements are prepared (psycopg prepares a statement run five
    times) and each has one good plan whatever its parameters: ranges of
    one b-tree. Left to choose, the server kept planning the directory reads
    (``ls``, ``du`` of a partial prefix) afresh on every call on some
    tables, which cost more than running them (ls("") of 100 prefixes 476 ->
    234 µs, du of a narrow prefix 496 -> 170 µs with generic plans,
    measured; writes and the other reads no slower).
    """
    connection.execute("SET jit = off")
    connection.execute("SET plan_cache_mode = force_generic_plan")
    if not connection.autocommit:
        connection.commit()


class Runner:
    """Runs the index's statements on its threads' pooled connections."""

    def __init__(self, engine: sa.Engine, errors: ErrorTranslator, name: str) -> None:
        """Run on ``engine``'s pool; ``name`` says what is closed in the closed error."""
        sa.event.listen(engine, "connect", session_settings)
        self._errors = errors
        self._leases = Leases(engine, errors)
        self._name = name
        self._pid = os.getpid()
        self._inherited: list[Leases] = []

    def close(self) -> None:
        """Give every connection back and close the pool; later calls raise MirrorKVError."""
        self._leases.close()

    def _lease(self) -> Lease:
        if self._pid != os.getpid():
            self._after_fork()
        if self._leases.closed:
            raise MirrorKVError(f"{self._name} is closed")
        return self._leases.get()

    def _after_fork(self) -> None:
        # A forked child must neither use nor close its parent's connections (their
        # sockets are shared): keep them referenced, untouched, and open its own pool.
        inherited = self._leases
        self._inherited.append(inherited)
        inherited.engine.dispose(close=False)
        self._leases = Leases(inherited.engine, self._errors)
        self._leases.closed = inherited.closed
        self._pid = os.getpid()

    def read(self, sql: str, params: Any, many: bool = True) -> Any:
        """All rows (``many``) or the first row of a read; once more after a disconnect."""
        for attempt in (0, 1):
            lease = self._lease()
            try:
                cursor = lease.cursor
                cursor.execute(sql, params)
                return cursor.fetchall() if many else cursor.fetchone()
            except self._errors.catches as error:
                self._leases.failed(lease, error)
                if attempt or not is_disconnect(error):
                    raise self._errors.translate(error) from error
        raise AssertionError("unreachable")

    def write(self, sql: str, params: Any) -> Any:
        """One statement, its own transaction (autocommit); its first row, if it returns rows."""
        for attempt in range(ATTEMPTS):
            lease = self._lease()
            try:
                cursor = lease.cursor
                cursor.execute(sql, params)
                return cursor.fetchone() if cursor.description else None
            except self._errors.catches as error:
                self._leases.failed(lease, error)
                if not is_retryable_conflict(error) or attempt == ATTEMPTS - 1:
                    raise self._errors.translate(error) from error
            time.sleep(0.002 * (attempt + 1))
        raise AssertionError("unreachable")

    def transaction(self, work: Callable[[Any], _T]) -> _T:
        """``work(cursor)`` in one transaction; again after a deadlock or serialization failure."""
        for attempt in range(ATTEMPTS):
            lease = self._lease()
            cursor = lease.cursor
            try:
                cursor.execute("BEGIN")
                result = work(cursor)
                cursor.execute("COMMIT")
                return result
            except self._errors.catches as error:
                self._leases.rollback(lease, error)
                if not is_retryable_conflict(error) or attempt == ATTEMPTS - 1:
                    raise self._errors.translate(error) from error
            except BaseException:
                self._leases.rollback(lease, None)
                raise
            time.sleep(0.002 * (attempt + 1))
        raise AssertionError("unreachable")
