"""The SQLite store's schema: the table, its statements, and rows to `Meta` records.

A mirrorkv database is marked with ``PRAGMA application_id`` and carries its
schema version in ``PRAGMA user_version``; :func:`prepare` creates the schema
in an empty file and refuses any other.
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
    "APPLICATION_ID",
    "COLUMNS",
    "DELETE",
    "EMPTY",
    "ETAG",
    "GET",
    "GET_WITH_META",
    "HEAD",
    "REPLACE",
    "REPLACE_PLAIN",
    "REPLACE_ZEROS",
    "SCHEMA_VERSION",
    "STORED",
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

SCHEMA = f"""
CREATE TABLE entries (
    key          TEXT NOT NULL PRIMARY KEY,
    etag         TEXT NOT NULL,
    modified     REAL NOT NULL,
    content_type TEXT NOT NULL DEFAULT '{DEFAULT_CONTENT_TYPE}',
    metadata     TEXT DEFAULT NULL,
    version      TEXT NOT NULL,
    value        BLOB NOT NULL
)
"""
# A rowid table, not WITHOUT ROWID: incremental BLOB I/O needs a rowid, and a
# WITHOUT ROWID b-tree would carry large values inside the key index. The
# value is the last column so that reading metadata never walks its overflow
# pages. The key index (sqlite_autoindex_entries_1) serves ordered listings.

# The size is not stored: length() of a BLOB column reads only the record header.
COLUMNS = "key, length(value), etag, modified, content_type, metadata, version"
STORED = "key, etag, modified, content_type, metadata, version, value"
REPLACE = f"INSERT OR REPLACE INTO entries ({STORED}) VALUES (?, ?, ?, ?, ?, ?, ?)"
REPLACE_ZEROS = f"INSERT OR REPLACE INTO entries ({STORED}) VALUES (?, ?, ?, ?, ?, ?, zeroblob(?))"
# Plain values (default content type, no metadata) bind fewer parameters: the
# columns' defaults fill the rest, which makes put_many much faster.
REPLACE_PLAIN = (
    "INSERT OR REPLACE INTO entries (key, etag, modified, version, value) VALUES (?, ?, ?, ?, ?)"
)
GET = "SELECT value FROM entries WHERE key = ?"
HEAD = f"SELECT {COLUMNS} FROM entries WHERE key = ?"
GET_WITH_META = f"SELECT {COLUMNS}, value FROM entries WHERE key = ?"
DELETE = "DELETE FROM entries WHERE key = ?"
ETAG = "SELECT etag FROM entries WHERE key = ?"

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
            conn.execute(SCHEMA)
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
