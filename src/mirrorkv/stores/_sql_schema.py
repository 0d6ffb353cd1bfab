"""The SQL store's tables and statements, for PostgreSQL and for MySQL/MariaDB.

Layout (schema version 1) for a store whose table option is ``T``:

* ``T``, one row per key: ``name``, the key (PostgreSQL ``text COLLATE "C"``,
  MySQL ``VARBINARY(1024)``, both ordered by the UTF-8 bytes of the key),
  ``size``, ``etag`` (hex MD5; NULL for an inline value, whose MD5 the server
  computes when asked), ``modified`` (POSIX seconds), ``content_type`` (NULL
  for the default), ``metadata`` (JSON, NULL for none), ``version``, and
  either ``value`` (a value of at most the inline limit) or ``blob_id`` (the id
  of a large value's chunks).
* ``T_chunks``: ``(blob_id, seq, data)``, the chunks of large values in order.
  Each write of a large value takes a fresh random ``blob_id``; the chunks
  of the value it replaces are deleted in the same transaction.
* ``T_meta``: ``(name, value)`` rows; ``schema_version`` records the layout.
  It is created before ``T``, so a ``T`` without it is another
  application's table and is refused.

Statements use the DBAPI's ``%s`` placeholders (psycopg and PyMySQL both
take them) and run on raw driver connections on the hot paths.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql

from ..errors import InvalidValue

__all__ = [
    "INLINE_LIMIT",
    "SCHEMA_VERSION",
    "Statements",
    "check_table_name",
    "expand_in",
    "list_sql",
    "statements",
    "tables",
]

#: The layout version this code reads and writes.
SCHEMA_VERSION = 1
#: Values of at most this many bytes are stored inline in their row; larger ones in chunks.
INLINE_LIMIT = 1 << 20

_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,47}")
_COLUMNS = "name, size, etag, modified, content_type, metadata, version, value, blob_id"


def check_table_name(name: object) -> str:
    """``name`` if it is a plain identifier of at most 48 characters; :class:`InvalidValue` if not.

    Only letters, digits and underscores (not first) pass, so a table name can
    never carry SQL; 48 leaves room for the ``_chunks`` suffix within the
    63 characters PostgreSQL allows.
    """
    if not isinstance(name, str) or not _TABLE_NAME.fullmatch(name):
        raise InvalidValue(
            f"table must be letters, digits and underscores (not first), at most 48, not {name!r}"
        )
    return name


def tables(name: str) -> tuple[sa.Table, sa.Table, sa.Table]:
    """The SQLAlchemy Core tables of a store: (meta, entries, chunks), in creation order."""
    metadata = sa.MetaData()
    binary = sa.LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql", "mariadb")
    key_type = sa.Text(collation="C").with_variant(mysql.VARBINARY(1024), "mysql", "mariadb")
    text = sa.Text().with_variant(mysql.TEXT(collation="utf8mb4_bin"), "mysql", "mariadb")
    short = sa.String(64).with_variant(postgresql.TEXT(), "postgresql")
    meta = sa.Table(
        f"{name}_meta",
        metadata,
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(255), nullable=False),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    entries = sa.Table(
        name,
        metadata,
        sa.Column("name", key_type, primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("etag", short),
        sa.Column("modified", sa.Double, nullable=False),
        sa.Column("content_type", text),
        sa.Column("metadata", text),
        sa.Column("version", short, nullable=False),
        sa.Column("value", binary),
        sa.Column("blob_id", sa.BigInteger),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    chunks = sa.Table(
        f"{name}_chunks",
        metadata,
        sa.Column("blob_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("data", binary, nullable=False),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    return meta, entries, chunks


@dataclass(frozen=True)
class Statements:
    """Every statement the store runs, for one dialect and one table."""

    postgres: bool
    #: ``(value, blob_id, size)`` of a key.
    get: str
    #: ``(name, size, etag, modified, content_type, metadata, version)`` of a key.
    head: str
    #: ``(blob_id, value-or-NULL, size)`` where the value is inline.
    open: str
    #: Upsert of an inline value that leaves a row holding a large value untouched
    #: (rowcount 0 then); params as :attr:`insert_row` with etag and blob_id None.
    put_inline: str
    #: Insert only (if_none_match); same params as ``put_inline``.
    insert_inline: str
    #: Overwrite an inline value whose etag matches; params
    #: ``(size, modified, content_type, metadata, version, value, name, etag)``.
    update_if_match: str
    #: Lock a row: ``(etag, blob_id)``.
    lock: str
    #: Full row insert inside a transaction; params in column order
    #: ``(name, size, etag, modified, content_type, metadata, version, value, blob_id)``;
    #: the update takes the same with ``name`` moved last.
    insert_row: str
    update_row: str
    insert_chunk: str
    read_chunk: str
    read_chunks: str
    delete_chunks: str
    delete: str
    #: Delete a key and its chunks where its etag matches; params ``(name, etag)``.
    #: PostgreSQL returns one row holding the count of keys deleted (0 or 1); on
    #: MySQL the row count is nonzero exactly where the key was deleted.
    delete_if: str
    #: ``SELECT`` column lists for listings.
    list_columns: str
    #: Which rows hold large values among some keys (locked); on MySQL the ``%s``
    #: inside ``IN (%s)`` is replaced by one placeholder per key.
    large_among: str
    begin_snapshot: tuple[str, ...]
    #: ``(name, value)`` of many keys (value NULL for a large one): PostgreSQL takes a
    #: list (``= ANY``), MySQL one placeholder per key (see :func:`expand_in`).
    get_many: str
    #: PostgreSQL: upsert many inline values from two arrays (MySQL: empty, it uses
    #: ``executemany`` of :attr:`put_inline`); params ``(modified, version, keys, values)``.
    put_many: str
    #: Delete many keys and their chunks, taking keys as :attr:`get_many` does.
    delete_many: str
    #: PostgreSQL: the one-statement counter upsert, params ``(name, size, modified,
    #: version, value, delta, delta)``, returning the new value or no row where the
    #: key holds no counter. MySQL: the locking read of the row a counter updates.
    incr: str
    #: The table, quoted.
    table: str


def statements(name: str, dialect: sa.Dialect) -> Statements:
    """The statements for table ``name`` (already checked) on ``dialect``."""
    quote = dialect.identifier_preparer.quote
    table, chunks = quote(name), quote(f"{name}_chunks")
    postgres = dialect.name == "postgresql"
    md5 = "md5(value)" if postgres else "MD5(value)"
    etag = f"COALESCE(etag, {md5})"
    # Nine placeholders on both dialects: PyMySQL's executemany batches an
    # INSERT into one statement only where VALUES holds placeholders alone.
    inline_values = "(%s, %s, %s, %s, %s, %s, %s, %s, %s)"
    if postgres:
        get_many = f"SELECT name, value FROM {table} WHERE name = ANY(%s)"
        put_many = (
            f"INSERT INTO {table} AS t ({_COLUMNS}) "
            "SELECT u.k, octet_length(u.v), NULL, %s, NULL, NULL, %s, u.v, NULL "
            "FROM unnest(%s::text[], %s::bytea[]) AS u(k, v) "
            "ON CONFLICT (name) DO UPDATE SET size = EXCLUDED.size, etag = NULL, "
            "modified = EXCLUDED.modified, content_type = NULL, metadata = NULL, "
            "version = EXCLUDED.version, value = EXCLUDED.value WHERE t.blob_id IS NULL"
        )
        delete_many = (
            f"WITH gone AS (DELETE FROM {table} WHERE name = ANY(%s) RETURNING blob_id) "
            f"DELETE FROM {chunks} WHERE blob_id IN (SELECT blob_id FROM gone)"
        )
        # The server does the arithmetic in numeric, and only
        # where the old value is ASCII decimal ('escape' leaves any other byte escaped).
        new_value = "convert_to((encode(t.value, 'escape')::numeric + %s::numeric)::text, 'UTF8')"
        incr = (
            f"INSERT INTO {table} AS t ({_COLUMNS}) "
            "VALUES (%s, %s, NULL, %s, NULL, NULL, %s, %s, NULL) "
            f"ON CONFLICT (name) DO UPDATE SET value = {new_value}, "
            f"size = octet_length({new_value}), etag = NULL, modified = EXCLUDED.modified, "
            "version = EXCLUDED.version "
            # Up to 4,000 digits: what Python converts back to an int by default.
            "WHERE t.blob_id IS NULL AND t.size < 4000 "
            "AND encode(t.value, 'escape') ~ '^-?[0-9]+$' "
            "RETURNING value"
        )
        put_inline = (
            f"INSERT INTO {table} AS t ({_COLUMNS}) VALUES {inline_values} "
            "ON CONFLICT (name) DO UPDATE SET size = EXCLUDED.size, etag = NULL, "
            "modified = EXCLUDED.modified, content_type = EXCLUDED.content_type, "
            "metadata = EXCLUDED.metadata, version = EXCLUDED.version, value = EXCLUDED.value "
            "WHERE t.blob_id IS NULL"
        )
        insert_inline = (
            f"INSERT INTO {table} ({_COLUMNS}) VALUES {inline_values} ON CONFLICT (name) DO NOTHING"
        )
        delete = (
            f"WITH gone AS (DELETE FROM {table} WHERE name = %s RETURNING blob_id) "
            f"DELETE FROM {chunks} WHERE blob_id IN (SELECT blob_id FROM gone)"
        )
        delete_if = (
            f"WITH gone AS (DELETE FROM {table} WHERE name = %s AND {etag} = %s "
            f"RETURNING blob_id), dropped AS (DELETE FROM {chunks} "
            "WHERE blob_id IN (SELECT blob_id FROM gone)) SELECT count(*) FROM gone"
        )
        begin_snapshot: tuple[str, ...] = ("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",)
        large_among = (
            f"SELECT name, blob_id FROM {table} WHERE name = ANY(%s) AND blob_id IS NOT NULL "
            "FOR UPDATE"
        )
    else:
        updates = ", ".join(
            f"{column} = IF(blob_id IS NULL, VALUES({column}), {column})"
            for column in ("size", "etag", "modified", "content_type", "metadata", "version")
        )
        # value last: the guard reads blob_id, which no assignment here changes.
        put_inline = (
            f"INSERT INTO {table} ({_COLUMNS}) VALUES {inline_values} "
            f"ON DUPLICATE KEY UPDATE {updates}, value = IF(blob_id IS NULL, VALUES(value), value)"
        )
        insert_inline = f"INSERT INTO {table} ({_COLUMNS}) VALUES {inline_values}"
        get_many = f"SELECT name, value FROM {table} WHERE name IN (%s)"
        put_many = ""
        delete_many = (
            f"DELETE e, c FROM {table} AS e LEFT JOIN {chunks} AS c ON c.blob_id = e.blob_id "
            "WHERE e.name IN (%s)"
        )
        incr = (
            f"SELECT value, blob_id, content_type, metadata FROM {table} WHERE name = %s FOR UPDATE"
        )
        delete = (
            f"DELETE e, c FROM {table} AS e LEFT JOIN {chunks} AS c ON c.blob_id = e.blob_id "
            "WHERE e.name = %s"
        )
        delete_if = (
            f"DELETE e, c FROM {table} AS e LEFT JOIN {chunks} AS c ON c.blob_id = e.blob_id "
            "WHERE e.name = %s AND COALESCE(e.etag, MD5(e.value)) = %s"
        )
        begin_snapshot = (
            "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
            "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
        )
        large_among = (
            f"SELECT name, blob_id FROM {table} WHERE name IN (%s) AND blob_id IS NOT NULL "
            "FOR UPDATE"
        )
    return Statements(
        postgres=postgres,
        get=f"SELECT value, blob_id, size FROM {table} WHERE name = %s",
        head=(
            f"SELECT name, size, {etag}, modified, content_type, metadata, version "
            f"FROM {table} WHERE name = %s"
        ),
        open=(
            f"SELECT blob_id, CASE WHEN blob_id IS NULL THEN value END, size FROM {table} "
            "WHERE name = %s"
        ),
        put_inline=put_inline,
        insert_inline=insert_inline,
        update_if_match=(
            f"UPDATE {table} SET size = %s, etag = NULL, modified = %s, content_type = %s, "
            "metadata = %s, version = %s, value = %s "
            f"WHERE name = %s AND blob_id IS NULL AND {etag} = %s"
        ),
        lock=f"SELECT {etag}, blob_id FROM {table} WHERE name = %s FOR UPDATE",
        insert_row=f"INSERT INTO {table} ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        update_row=(
            f"UPDATE {table} SET size = %s, etag = %s, modified = %s, "
            "content_type = %s, metadata = %s, version = %s, value = %s, blob_id = %s "
            "WHERE name = %s"
        ),
        insert_chunk=f"INSERT INTO {chunks} (blob_id, seq, data) VALUES (%s, %s, %s)",
        read_chunk=f"SELECT data FROM {chunks} WHERE blob_id = %s AND seq = %s",
        read_chunks=f"SELECT data FROM {chunks} WHERE blob_id = %s ORDER BY seq",
        delete_chunks=f"DELETE FROM {chunks} WHERE blob_id = %s",
        delete=delete,
        delete_if=delete_if,
        list_columns=f"name, size, {etag}, modified, content_type, metadata, version",
        large_among=large_among,
        begin_snapshot=begin_snapshot,
        get_many=get_many,
        put_many=put_many,
        delete_many=delete_many,
        incr=incr,
        table=table,
    )


def list_sql(
    table: str, columns: str, inclusive: bool, bounded: bool, *, postgres: bool = True
) -> str:
    """A page of a listing: keys from a lower bound (and below an upper one), in order."""
    lower = ">=" if inclusive else ">"
    upper = " AND name < %s" if bounded else ""
    return f"SELECT {columns} FROM {table} WHERE name {lower} %s{upper} ORDER BY name LIMIT %s"


def expand_in(sql: str, count: int) -> str:
    """``sql`` with its ``IN (%s)`` holding ``count`` placeholders (MySQL takes no lists)."""
    return sql.replace("IN (%s)", f"IN ({', '.join(['%s'] * count)})", 1)
