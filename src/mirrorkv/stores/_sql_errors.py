"""The SQL store's one translation point: SQLAlchemy, psycopg and PyMySQL errors to ours.

Messages name the store by its redacted URL (never the password) and carry
the server's own message, which names users and hosts but never passwords.
"""

from __future__ import annotations

import re

import psycopg
import pymysql  # type: ignore[import-untyped]  # no stubs shipped (types-PyMySQL)
import sqlalchemy.exc

from ..errors import (
    AccessDenied,
    InvalidValue,
    MirrorKVError,
    PreconditionFailed,
    ReadOnlyError,
    StoreUnavailable,
    Translator,
)

__all__ = [
    "ErrorTranslator",
    "is_disconnect",
    "is_duplicate",
    "is_retryable_conflict",
    "translate",
]

# PostgreSQL SQLSTATE codes and classes (https://www.postgresql.org/docs/current/errcodes-appendix.html).
_PG_UNAVAILABLE_CLASSES = ("08", "53", "57", "58")  # connection, resources, operator, system
_PG_CONFLICT = {"40001", "40P01", "55P03"}  # serialization, deadlock, lock not available
_PG_AUTH = {"28000", "28P01"}
_PG_AUTH_MESSAGES = re.compile(
    r"authentication failed|no pg_hba\.conf entry|role \"[^\"]*\" does not exist|"
    r"password is required|no password supplied"
)
_PG_PRIVILEGE = {"42501"}
_PG_READ_ONLY = {"25006"}
_PG_TOO_BIG = {"54000", "22001"}
_PG_DUPLICATE = {"23505"}
_PG_UNDEFINED_TABLE = {"42P01"}

# MySQL / MariaDB error numbers (client 2xxx, server 1xxx).
_MY_DISCONNECT = {2003, 2006, 2013, 2014, 2045, 2055, 1053, 1927, 4031}
_MY_UNAVAILABLE = _MY_DISCONNECT | {1040, 1041, 1203, 1021, 1114}
_MY_CONFLICT = {1205, 1213}  # lock wait timeout, deadlock
_MY_AUTH = {1045, 1698}
_MY_PRIVILEGE = {1044, 1142, 1143, 1227}
_MY_READ_ONLY = {1290, 1792, 1836}
_MY_TOO_BIG = {1153, 1301, 1406}
_MY_DUPLICATE = {1062}
_MY_UNDEFINED_TABLE = {1146}


def _unwrap(error: BaseException) -> BaseException:
    """The driver's exception behind a SQLAlchemy wrapper (or ``error`` itself)."""
    if isinstance(error, sqlalchemy.exc.DBAPIError) and error.orig is not None:
        return error.orig
    return error


def _mysql_code(error: BaseException) -> int | None:
    if isinstance(error, pymysql.err.MySQLError) and error.args and isinstance(error.args[0], int):
        return error.args[0]
    return None


def _detail(error: BaseException) -> str:
    """The driver's message on one line."""
    if isinstance(error, pymysql.err.MySQLError) and len(error.args) >= 2:
        text = str(error.args[1])
    else:
        text = str(error)
    return " ".join(text.split()) or type(error).__name__


def is_disconnect(error: BaseException) -> bool:
    """True where ``error`` means the connection is gone (the pooled one must be dropped)."""
    error = _unwrap(error)
    if isinstance(error, psycopg.Error):
        state = error.sqlstate
        return state is None or state.startswith("08") or state in {"57P01", "57P02", "57P03"}
    if isinstance(error, pymysql.err.InterfaceError):
        return True
    return _mysql_code(error) in _MY_DISCONNECT


def is_retryable_conflict(error: BaseException) -> bool:
    """True for a deadlock or serialization failure: the transaction may simply run again."""
    error = _unwrap(error)
    if isinstance(error, psycopg.Error):
        return error.sqlstate in _PG_CONFLICT
    return _mysql_code(error) in _MY_CONFLICT


def is_duplicate(error: BaseException) -> bool:
    """True where an INSERT met an existing key."""
    error = _unwrap(error)
    if isinstance(error, psycopg.Error):
        return error.sqlstate in _PG_DUPLICATE
    return _mysql_code(error) in _MY_DUPLICATE


def translate(error: BaseException, where: str) -> MirrorKVError:
    """The mirrorkv error for a driver or SQLAlchemy error met on the store at ``where``.

    ``where`` is the store's redacted URL and table.
    """
    if isinstance(error, sqlalchemy.exc.TimeoutError):
        return StoreUnavailable(f"no free connection in the pool of {where}: {error}")
    error = _unwrap(error)
    detail = f"{where}: {_detail(error)}"
    if isinstance(error, psycopg.Error):
        state = error.sqlstate or ""
        # A refused login fails the connection attempt, where psycopg reports no SQLSTATE.
        if state in _PG_AUTH or (not state and _PG_AUTH_MESSAGES.search(str(error))):
            return AccessDenied(f"PostgreSQL refused the credentials for {detail}")
        if not state or state.startswith(_PG_UNAVAILABLE_CLASSES) or state in _PG_CONFLICT:
            return StoreUnavailable(f"PostgreSQL unavailable at {detail}")
        if isinstance(error, psycopg.InterfaceError):
            return StoreUnavailable(f"PostgreSQL connection unusable at {detail}")
        code_class = _pg_class(state)
    else:
        code = _mysql_code(error)
        if code in _MY_AUTH:
            return AccessDenied(f"MySQL refused the credentials for {detail}")
        if code in _MY_UNAVAILABLE or code in _MY_CONFLICT:
            return StoreUnavailable(f"MySQL unavailable at {detail}")
        if isinstance(error, pymysql.err.InterfaceError | sqlalchemy.exc.InterfaceError):
            return StoreUnavailable(f"MySQL connection unusable at {detail}")
        code_class = _mysql_class(code)
    if code_class == "privilege":
        return AccessDenied(f"the database user lacks a privilege the store needs, {detail}")
    if code_class == "read-only":
        return ReadOnlyError(f"the database is read-only: {detail}")
    if code_class == "too-big":
        return InvalidValue(f"value or key too large for the database: {detail}")
    if code_class == "duplicate":
        return PreconditionFailed(f"the key exists: {detail}")
    if code_class == "no-table":
        return MirrorKVError(f"the store's table is missing (dropped underneath?): {detail}")
    return MirrorKVError(f"SQL error at {detail}")


def _pg_class(state: str) -> str:
    if state in _PG_PRIVILEGE:
        return "privilege"
    if state in _PG_READ_ONLY:
        return "read-only"
    if state in _PG_TOO_BIG:
        return "too-big"
    if state in _PG_DUPLICATE:
        return "duplicate"
    if state in _PG_UNDEFINED_TABLE:
        return "no-table"
    return ""


def _mysql_class(code: int | None) -> str:
    if code in _MY_PRIVILEGE:
        return "privilege"
    if code in _MY_READ_ONLY:
        return "read-only"
    if code in _MY_TOO_BIG:
        return "too-big"
    if code in _MY_DUPLICATE:
        return "duplicate"
    if code in _MY_UNDEFINED_TABLE:
        return "no-table"
    return ""


class ErrorTranslator(Translator):
    """``with translator:`` turns any SQLAlchemy, psycopg or PyMySQL error into ours, chained."""

    __slots__ = ("_where",)
    catches = (sqlalchemy.exc.SQLAlchemyError, psycopg.Error, pymysql.err.MySQLError)

    def __init__(self, where: str) -> None:
        self._where = where

    def translate(self, error: BaseException) -> MirrorKVError:
        """See :func:`translate`."""
        return translate(error, self._where)
