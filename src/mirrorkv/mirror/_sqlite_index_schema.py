"""The SQLite index's schema and its connections.

Layout (index schema version 2), every table ``WITHOUT ROWID`` so that a row
lives in its primary key's b-tree and a range of keys is one contiguous scan:

* ``entries (bucket, key, size, etag, modified, content_type, metadata,
  version, rkey)``: one row per object. ``modified`` is a float POSIX time,
  ``metadata`` JSON (NULL when empty), ``content_type`` NULL for the default.
  The BINARY collation of ``key`` orders keys by their UTF-8 bytes. ``rkey``
  is the key reversed (by code point), indexed by ``entries_by_suffix``, so
  the keys ending in a suffix are one range: ``find("**.jpg")`` reads the
  ``.jpg`` keys only.
* ``aggregates (bucket, prefix, objects, bytes)``: one row per ``""`` and per
  prefix ending in ``/`` that holds at least one object, updated in the same
  transaction as the entry; a row that drops to zero objects is deleted.
  The index ``aggregates_by_depth`` orders those rows by bucket, number of
  ``/`` (:data:`DEPTH`) and prefix, so that the subdirectories of one
  directory are one contiguous range (``du`` of a partial prefix and
  ``du_children`` read them with one query). Files of schema version 1 made
  before it existed gain it when first opened.
* ``dirty (bucket, key)``: the journal of keys to repair.
* ``checkpoints (bucket, name, value)``.

The file is marked with its own ``PRAGMA application_id`` (not the store's),
so an index and a store cannot be mistaken for each other. A file of schema
version 1 is upgraded in place when first opened (one transaction that fills
``rkey`` for every entry).
"""

from __future__ import annotations

import logging
import sqlite3

from ..errors import MirrorKVError
from ..stores._sqlite_connections import CACHE_KIB, Connections
from ..stores._sqlite_io import transaction

__all__ = [
    "COLUMNS",
    "DEPTH",
    "INDEX_APPLICATION_ID",
    "INDEX_SCHEMA_VERSION",
    "IndexConnections",
]

log = logging.getLogger("mirrorkv.mirror")

#: The schema this code reads and writes (``PRAGMA user_version``).
INDEX_SCHEMA_VERSION = 2
#: ``PRAGMA application_id`` of a mirrorkv index ("mkvi").
INDEX_APPLICATION_ID = 0x6D6B7669

_SUFFIX_INDEX = "CREATE INDEX entries_by_suffix ON entries (bucket, rkey)"
_SCHEMA = (
    """CREATE TABLE entries (
        bucket TEXT NOT NULL, key TEXT NOT NULL, size INTEGER NOT NULL, etag TEXT NOT NULL,
        modified REAL NOT NULL, content_type TEXT, metadata TEXT, version TEXT NOT NULL,
        rkey TEXT NOT NULL, PRIMARY KEY (bucket, key)) WITHOUT ROWID""",
    _SUFFIX_INDEX,
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

#: The number of "/" in an aggregate row's prefix, as ``aggregates_by_depth`` indexes it
#: (a query must spell it exactly so for SQLite to use the index).
DEPTH = "(length(prefix) - length(replace(prefix, '/', '')))"
_BY_DEPTH = (
    f"CREATE INDEX IF NOT EXISTS aggregates_by_depth ON aggregates (bucket, {DEPTH}, prefix)"
)

#: The columns of an entry, in :func:`row_meta`'s order.
COLUMNS = "key, size, etag, modified, content_type, metadata, version"


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
        elif schema == 1:
            _upgrade_from_1(conn, path)
        elif schema != INDEX_SCHEMA_VERSION:
            raise MirrorKVError(
                f"{path} has index schema version {schema}; this mirrorkv reads "
                f"{INDEX_SCHEMA_VERSION} (upgrade mirrorkv if it is newer)"
            )
        conn.execute(_BY_DEPTH)
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise MirrorKVError(f"{path}: SQLite refused WAL mode (journal_mode={mode})")


def _upgrade_from_1(conn: sqlite3.Connection, path: str) -> None:
    """Add ``rkey`` and its index to a version 1 file, inside the caller's transaction."""
    entries = conn.execute("SELECT count(*) FROM entries").fetchone()[0]
    log.info("upgrading the mirror index %s to schema 2 (%d entries)", path, entries)
    conn.create_function("mkv_reversed", 1, lambda text: text[::-1], deterministic=True)
    conn.execute("ALTER TABLE entries ADD COLUMN rkey TEXT NOT NULL DEFAULT ''")
    conn.execute("UPDATE entries SET rkey = mkv_reversed(key)")
    conn.execute(_SUFFIX_INDEX)
    conn.execute(f"PRAGMA user_version={INDEX_SCHEMA_VERSION}")


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
