"""The SQLite index's schema, its connections, and rows to `Meta` records.

Layout (index schema version 1), every table ``WITHOUT ROWID`` so that a row
lives in its primary key's b-tree and a range of keys is one contiguous scan:

* ``entries (bucket, key, size, etag, modified, content_type, metadata,
  version)``: one row per object. ``modified`` is a float POSIX time,
  ``metadata`` JSON (NULL when empty), ``content_type`` NULL for the default.
  The BINARY collation of ``key`` orders keys by their UTF-8 bytes.
* ``aggregates (bucket, prefix, objects, bytes)``: one row per ``""`` and per
  prefix ending in ``/`` that holds at least one object, updated in the same
  transaction as the entry; a row that drops to zero objects is deleted.
* ``dirty (bucket, key)``: the journal of keys to repair.
* ``checkpoints (bucket, name, value)``.

The file is marked with its own ``PRAGMA application_id`` (not the store's),
so an index and a store cannot be mistaken for each other.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from ..errors import InvalidValue, MirrorKVError
from ..meta import DEFAULT_CONTENT_TYPE, NO_METADATA, Meta
from ..stores._sqlite_connections import CACHE_KIB, Connections
from ..stores._sqlite_io import transaction
from .index import timestamp

__all__ = [
    "COLUMNS",
    "INDEX_APPLICATION_ID",
    "INDEX_SCHEMA_VERSION",
    "IndexConnections",
    "meta_row",
    "row_meta",
]

#: The schema this code reads and writes (``PRAGMA user_version``).
INDEX_SCHEMA_VERSION = 1
#: ``PRAGMA application_id`` of a mirrorkv index ("mkvi").
INDEX_APPLICATION_ID = 0x6D6B7669

_SCHEMA = (
    """CREATE TABLE entries (
        bucket TEXT NOT NULL, key TEXT NOT NULL, size INTEGER NOT NULL, etag TEXT NOT NULL,
        modified REAL NOT NULL, content_type TEXT, metadata TEXT, version TEXT NOT NULL,
        PRIMARY KEY (bucket, key)) WITHOUT ROWID""",
    """CREATE TABLE aggregates (
        bucket TEXT NOT NULL, prefix TEXT NOT NULL,
        objects INTEGER NOT NULL, bytes INTEGER NOT NULL,
        PRIMARY KEY (bucket, prefix)) WITHOUT ROWID""",
    """CREATE TABLE dirty (
        bucket TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (bucket, key)) WITHOUT ROWID""",
    """CREATE TABLE checkpoints (
        bucket TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL,
        PRIMARY KEY (bucket, name)) WITHOUT ROWID""",
)

#: The columns of an entry, in :func:`row_meta`'s order.
COLUMNS = "key, size, etag, modified, content_type, metadata, version"

_new_meta = tuple.__new__


def row_meta(row: tuple[Any, ...]) -> Meta:
    """The record of one ``entries`` row selected as :data:`COLUMNS`."""
    key, size, etag, modified, content_type, metadata, version = row
    return _new_meta(
        Meta,
        (
            key,
            size,
            etag,
            modified,
            DEFAULT_CONTENT_TYPE if content_type is None else content_type,
            NO_METADATA if metadata is None else MappingProxyType(json.loads(metadata)),
            version,
        ),
    )


def _dump_metadata(metadata: Mapping[str, str]) -> str | None:
    return json.dumps(dict(metadata), ensure_ascii=False, sort_keys=True) if metadata else None


def meta_row(meta: Meta) -> tuple[int, str, float, str | None, str | None, str]:
    """``(size, etag, modified, content_type, metadata, version)`` of a record, as stored.

    Reads every field, so a record that defers some (a listed S3 object)
    fetches them here: the caller decides what it passes.
    """
    if not isinstance(meta, Meta):
        raise TypeError(f"an index records Meta, not {type(meta).__name__}")
    size = meta.size
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise InvalidValue(f"a size is an int >= 0, not {size!r}")
    raw_modified = meta[3]
    modified = raw_modified if raw_modified.__class__ is float else timestamp(meta.modified)
    content_type = meta.content_type
    return (
        size,
        meta.etag,
        modified,
        None if content_type == DEFAULT_CONTENT_TYPE else content_type,
        _dump_metadata(meta.metadata),
        meta.version,
    )


def _prepare(conn: sqlite3.Connection, path: str) -> None:
    with transaction(conn):
        application_id = conn.execute("PRAGMA application_id").fetchone()[0]
        schema = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]
        if application_id == 0 and schema == 0 and tables == 0:
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA application_id={INDEX_APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version={INDEX_SCHEMA_VERSION}")
        elif application_id != INDEX_APPLICATION_ID:
            raise MirrorKVError(f"{path} is not a mirrorkv metadata index")
        elif schema != INDEX_SCHEMA_VERSION:
            raise MirrorKVError(
                f"{path} has index schema version {schema}; this mirrorkv reads "
                f"{INDEX_SCHEMA_VERSION} (upgrade mirrorkv if it is newer)"
            )
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise MirrorKVError(f"{path}: SQLite refused WAL mode (journal_mode={mode})")


class IndexConnections(Connections):
    """The store's per-thread, fork-safe connections, opening the index's schema instead."""

    def _open_connection(self, stream: bool) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._path, timeout=self._timeout, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute("PRAGMA synchronous=FULL" if self._fsync else "PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            if not self._ready:
                _prepare(conn, self._path)
                self._ready = True
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_open(self) -> None:
        if self._closed:
            raise MirrorKVError(f"SQLiteIndex({self._path!r}) is closed")
