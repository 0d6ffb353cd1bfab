"""The SQLite store's schema: the tables, their statements, and rows to `Meta` records.

A mirrorkv database is marked with ``PRAGMA application_id`` and carries its
schema version in ``PRAGMA user_version``; :func:`prepare` creates the schema
in an empty file and refuses any other.

Layout (schema version 1):

* ``entries``, a ``WITHOUT ROWID`` table keyed by the key: one b-tree holds
  the key, the metadata and a small value inline, so a put writes one
  b-tree and a get descends one. Its BINARY collation orders keys by their
  UTF-8 bytes (S3 order), which serves listings.
* ``blobs``, a rowid table of large values. A large value lives in one row
  of its own, referenced by ``entries.blob`` (``entries.value`` is then
  NULL), because SQLite's incremental BLOB I/O, which streams it, needs a
  rowid, and because a ``WITHOUT ROWID`` b-tree works best with small rows.
  No two entries share a blob row.
* A trigger deletes the blob row of an entry that is deleted, inside the
  same statement, so no write path (put, put_many, copy, incr, delete,
  delete_many) can leak one. Writes are ``INSERT OR REPLACE``, whose
  implicit delete of the old row fires that trigger only with ``PRAGMA
  recursive_triggers=ON``: every connection of the store sets it (see
  :data:`CONNECTION_PRAGMAS`). REPLACE inserts a new key some 15-20% faster
  than an upsert (``ON CONFLICT DO UPDATE``) on this workload, and new keys
  are what bulk loads write. A second trigger covers an ``UPDATE`` of
  ``blob``.
* ``content_type`` is NULL for the default content type, which keeps 24
  bytes out of most rows (smaller rows, fewer pages to write and read).
* ``etag`` is NULL for an inline value: its MD5 is computed from the value
  (read in the same row) only when someone asks for it, so a write of a
  small value hashes nothing and its row is 32 bytes narrower. A value in
  ``blobs`` has its etag computed while it is written and stored.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from ..errors import CorruptValue, MirrorKVError
from ..meta import DEFAULT_CONTENT_TYPE, Meta
from ._sqlite_io import transaction

__all__ = [
    "ANY_BLOB",
    "APPLICATION_ID",
    "COLUMNS",
    "CONNECTION_PRAGMAS",
    "COPY_INLINE",
    "DELETE",
    "EMPTY",
    "ETAG",
    "GET",
    "GET_WITH_META",
    "HEAD",
    "NEW_BLOB",
    "NEW_ZEROBLOB",
    "PUT",
    "PUT_BLOB",
    "PUT_PLAIN",
    "SCHEMA_VERSION",
    "VALUE",
    "dump_metadata",
    "list_sql",
    "load_metadata",
    "prepare",
    "row_meta",
]

#: The schema this code reads and writes (kept in ``PRAGMA user_version``).
SCHEMA_VERSION = 1

#: ``PRAGMA application_id`` of a mirrorkv database ("mkv" and a zero byte).
APPLICATION_ID = 0x6D6B7600

# The value is the last column, so that reading metadata never walks the
# overflow pages of a value that does not fit in its b-tree cell.
SCHEMA = (
    """
CREATE TABLE entries (
    key          TEXT NOT NULL PRIMARY KEY,
    etag         TEXT DEFAULT NULL,
    modified     REAL NOT NULL,
    content_type TEXT DEFAULT NULL,
    metadata     TEXT DEFAULT NULL,
    version      TEXT NOT NULL,
    size         INTEGER NOT NULL,
    blob         INTEGER DEFAULT NULL,
    value        BLOB DEFAULT NULL
) WITHOUT ROWID
""",
    "CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB NOT NULL)",
    """
CREATE TRIGGER entries_drop_blob AFTER DELETE ON entries
WHEN old.blob IS NOT NULL
BEGIN DELETE FROM blobs WHERE id = old.blob; END
""",
    """
CREATE TRIGGER entries_swap_blob AFTER UPDATE OF blob ON entries
WHEN old.blob IS NOT NULL AND old.blob IS NOT new.blob
BEGIN DELETE FROM blobs WHERE id = old.blob; END
""",
)

#: Pragmas every connection sets: without recursive triggers, a REPLACE would leak blob rows.
CONNECTION_PRAGMAS = ("PRAGMA recursive_triggers=ON",)

#: The metadata columns; an inline value stands in for its NULL etag (Meta hashes it if asked).
COLUMNS = (
    "key, size, coalesce(etag, value), modified,"
    f" ifnull(content_type, '{DEFAULT_CONTENT_TYPE}'), metadata, version"
)
#: The value of an entry, inline or from its blob row, read in the same statement.
VALUE = "coalesce(entries.value, (SELECT data FROM blobs WHERE id = entries.blob))"
# Plain values (default content type, no metadata) bind fewer parameters: the
# columns' defaults fill the rest, which makes put_many faster.
PUT_PLAIN = (
    "INSERT OR REPLACE INTO entries (key, modified, version, size, value) VALUES (?, ?, ?, ?, ?)"
)
PUT = (
    "INSERT OR REPLACE INTO entries"
    " (key, etag, modified, content_type, metadata, version, size, value)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
PUT_BLOB = (
    "INSERT OR REPLACE INTO entries"
    " (key, etag, modified, content_type, metadata, version, size, blob)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
#: Copy an inline entry to another key: (target, modified, version, source).
COPY_INLINE = (
    "INSERT OR REPLACE INTO entries"
    " (key, etag, modified, content_type, metadata, version, size, value)"
    " SELECT ?, etag, ?, content_type, metadata, ?, size, value FROM entries WHERE key = ?"
)
NEW_BLOB = "INSERT INTO blobs (data) VALUES (?)"
#: A row if any large value is stored at all.
ANY_BLOB = "SELECT 1 FROM blobs LIMIT 1"
NEW_ZEROBLOB = "INSERT INTO blobs (data) VALUES (zeroblob(?))"
GET = f"SELECT {VALUE} FROM entries WHERE key = ?"
HEAD = f"SELECT {COLUMNS} FROM entries WHERE key = ?"
GET_WITH_META = f"SELECT {COLUMNS}, {VALUE} FROM entries WHERE key = ?"
DELETE = "DELETE FROM entries WHERE key = ?"
#: The etag of an entry, or its inline value to hash.
ETAG = "SELECT coalesce(etag, value) FROM entries WHERE key = ?"

#: The metadata of a value stored without any.
EMPTY: Mapping[str, str] = MappingProxyType({})


def dump_metadata(metadata: Mapping[str, str]) -> str | None:
    """User metadata as the JSON text of its column (``None`` where there is none)."""
    if not metadata:
        return None
    return json.dumps(dict(metadata), ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def load_metadata(text: str | None) -> Mapping[str, str]:
    """User metadata back from its column; :class:`CorruptValue` if it is not a JSON object."""
    if text is None:
        return EMPTY
    try:
        loaded = json.loads(text)
    except ValueError as error:
        raise CorruptValue(f"unreadable metadata in the SQLite store: {text[:80]!r}") from error
    if not isinstance(loaded, dict):
        raise CorruptValue(f"unreadable metadata in the SQLite store: {text[:80]!r}")
    return MappingProxyType(loaded)


def row_meta(row: tuple[Any, ...]) -> Meta:
    """The `Meta` of a row selected as :data:`COLUMNS`."""
    metadata = row[5]
    fields = (row[0], row[1], row[2], row[3], row[4], EMPTY, row[6])
    if metadata is not None:
        fields = (*fields[:5], load_metadata(metadata), row[6])
    meta: Meta = tuple.__new__(Meta, fields)
    return meta


def list_sql(columns: str, start_inclusive: bool, bounded: bool) -> str:
    """One page of a listing in key order: ``key >[=] ? [AND key < ?] LIMIT ?``."""
    lower = ">=" if start_inclusive else ">"
    upper = " AND key < ?" if bounded else ""
    return f"SELECT {columns} FROM entries WHERE key {lower} ?{upper} ORDER BY key LIMIT ?"


def prepare(conn: sqlite3.Connection, path: str) -> None:
    """Check (or create) the schema, then switch the file to WAL mode."""
    with transaction(conn):
        application_id = conn.execute("PRAGMA application_id").fetchone()[0]
        schema = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]
        if application_id == 0 and schema == 0 and tables == 0:
            for statement in SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        elif application_id != APPLICATION_ID:
            raise MirrorKVError(
                f"{path} is an SQLite database of another application, not a mirrorkv store"
            )
        elif schema > SCHEMA_VERSION:
            raise MirrorKVError(
                f"{path} has mirrorkv schema version {schema}, newer than this "
                f"mirrorkv knows (up to {SCHEMA_VERSION}): upgrade mirrorkv to open it"
            )
        elif schema < SCHEMA_VERSION:
            raise MirrorKVError(f"{path} has an unknown mirrorkv schema {schema}")
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise MirrorKVError(f"{path}: SQLite refused WAL mode (journal_mode={mode})")
