"""The PostgreSQL index's tables and server-side functions, created or checked at open.

Layout (index schema version 1) for the table option ``T``:

* ``T_entries (bucket, key, size, etag, modified, content_type, metadata,
  version)``, primary key ``(bucket, key)``: one row per object. ``bucket``
  and ``key`` are ``text COLLATE "C"``, so an ``ORDER BY key`` is UTF-8 byte
  order and a prefix of a bucket is one range of the primary key's b-tree.
  ``modified`` is a float8 POSIX time, ``metadata`` JSON text (NULL when
  empty), ``content_type`` NULL for the default.
* ``T_usage (bucket, prefix, objects, bytes)``: one row per ``""`` and per
  prefix ending in ``/`` holding at least one object; a row that drops to
  zero objects is deleted in the transaction that emptied it.
* ``T_dirty (bucket, key)`` and ``T_checkpoints (bucket, name, value)``.
* ``T_schema (name, value)``: ``application = mirrorkv-index`` and
  ``version = 1``; tables without it beside them are refused.
* Functions ``T_record_one``, ``T_record`` and ``T_forget`` (PL/pgSQL): each
  write is one call, so one round trip (see :data:`FUNCTIONS`).

Creation runs in one transaction under an advisory lock on the table name,
so processes opening a new index at once neither race nor fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import MirrorKVError

__all__ = [
    "APPLICATION",
    "INDEX_SCHEMA_VERSION",
    "Names",
    "create_sql",
    "drop_sql",
    "names",
]

#: The layout version this code reads and writes.
INDEX_SCHEMA_VERSION = 1
#: What ``T_schema`` says about who made the tables.
APPLICATION = "mirrorkv-index"


@dataclass(frozen=True)
class Names:
    """The quoted names of one index's tables and functions."""

    prefix: str
    entries: str
    usage: str
    dirty: str
    checkpoints: str
    schema: str
    record_one: str
    record: str
    forget: str

    @property
    def tables(self) -> tuple[str, ...]:
        """Every table, in creation order (the schema table first)."""
        return (self.schema, self.entries, self.usage, self.dirty, self.checkpoints)


def names(table: str) -> Names:
    """The names for the (already checked) table option ``table``."""

    def quoted(suffix: str) -> str:
        return f'"{table}_{suffix}"'

    return Names(
        prefix=table,
        entries=quoted("entries"),
        usage=quoted("usage"),
        dirty=quoted("dirty"),
        checkpoints=quoted("checkpoints"),
        schema=quoted("schema"),
        record_one=quoted("record_one"),
        record=quoted("record"),
        forget=quoted("forget"),
    )


def _tables(n: Names) -> list[str]:
    key = 'text COLLATE "C" NOT NULL'
    return [
        f"CREATE TABLE {n.schema} (name text PRIMARY KEY, value text NOT NULL)",
        f"""CREATE TABLE {n.entries} (
            bucket {key}, key {key}, size bigint NOT NULL, etag text NOT NULL,
            modified double precision NOT NULL, content_type text, metadata text,
            version text NOT NULL, PRIMARY KEY (bucket, key))""",
        f"""CREATE TABLE {n.usage} (
            bucket {key}, prefix {key}, objects bigint NOT NULL, bytes bigint NOT NULL,
            PRIMARY KEY (bucket, prefix))""",
        f"CREATE TABLE {n.dirty} (bucket {key}, key {key}, PRIMARY KEY (bucket, key))",
        f"""CREATE TABLE {n.checkpoints} (
            bucket {key}, name text NOT NULL, value text NOT NULL, PRIMARY KEY (bucket, name))""",
    ]


# The "/"-prefixes of a key, "" first, computed in SQL from its segments ('a/b/c' ->
# '', 'a/', 'a/b/'); each "/" in the key ends one prefix.
_PREFIXES = (
    "SELECT ''::text UNION ALL "
    "SELECT array_to_string(parts[1:i], '/') || '/' "
    "FROM string_to_array({key}, '/') AS parts, generate_series(1, cardinality(parts) - 1) AS i"
)

# Aggregate rows are always changed in prefix order (and after the entries), so
# two writers wait for each other instead of deadlocking.
_ADD = (
    "INSERT INTO {usage} AS a (bucket, prefix, objects, bytes) {rows} "
    "ON CONFLICT (bucket, prefix) DO UPDATE "
    "SET objects = a.objects + excluded.objects, bytes = a.bytes + excluded.bytes"
)

_COLUMNS = "size, etag, modified, content_type, metadata, version"


def _record_one(n: Names) -> str:
    # One key: lock and read the old row, overwrite it; or insert it, and where a
    # concurrent writer inserted it first (ON CONFLICT DO NOTHING found it), go again.
    add = _ADD.format(
        usage=n.usage,
        rows='SELECT b, p, dn, ds FROM unnest(ps) AS p ORDER BY p COLLATE "C"',
    )
    return f"""CREATE OR REPLACE FUNCTION {n.record_one}(
        b text, k text, s bigint, e text, m double precision, c text, d text, v text,
        ps text[]) RETURNS void LANGUAGE plpgsql AS $f$
    DECLARE
        old bigint;
        dn bigint;
        ds bigint;
    BEGIN
        LOOP
            SELECT size INTO old FROM {n.entries} WHERE bucket = b AND key = k FOR UPDATE;
            IF FOUND THEN
                UPDATE {n.entries} SET ({_COLUMNS}) = (s, e, m, c, d, v)
                WHERE bucket = b AND key = k;
                dn := 0;
                ds := s - old;
                EXIT;
            END IF;
            INSERT INTO {n.entries} (bucket, key, {_COLUMNS}) VALUES (b, k, s, e, m, c, d, v)
            ON CONFLICT (bucket, key) DO NOTHING;
            IF FOUND THEN
                dn := 1;
                ds := s;
                EXIT;
            END IF;
        END LOOP;
        IF dn <> 0 OR ds <> 0 THEN
            {add};
        END IF;
    END $f$"""


def _record(n: Names) -> str:
    # Many keys (distinct): the same steps set-wise. Existing rows are locked in key
    # order and overwritten, the others inserted in key order; keys a concurrent
    # writer inserted in between go round again. The aggregates are changed last.
    given = (
        "unnest(ks, ss, es, ms, cs, ds, vs) "
        "AS u(key, size, etag, modified, content_type, metadata, version)"
    )
    prefixes = _PREFIXES.format(key="x.key")
    add = _ADD.format(
        usage=n.usage,
        rows=(
            "SELECT b, p.prefix, sum(x.n), sum(x.s) "
            "FROM unnest(dk, dn, dsz) AS x(key, n, s), "
            f"LATERAL ({prefixes}) AS p(prefix) "
            'GROUP BY p.prefix HAVING sum(x.n) <> 0 OR sum(x.s) <> 0 ORDER BY p.prefix COLLATE "C"'
        ),
    )
    return f"""CREATE OR REPLACE FUNCTION {n.record}(
        b text, ks text[], ss bigint[], es text[], ms double precision[], cs text[],
        ds text[], vs text[]) RETURNS void LANGUAGE plpgsql AS $f$
    DECLARE
        pending text[] := ks;
        dk text[] := '{{}}';
        dn bigint[] := '{{}}';
        dsz bigint[] := '{{}}';
        lk text[];
        lo bigint[];
        nk text[];
        ns bigint[];
    BEGIN
        LOOP
            SELECT coalesce(array_agg(o.key), '{{}}'), coalesce(array_agg(o.size), '{{}}')
            INTO lk, lo
            FROM (SELECT key, size FROM {n.entries} WHERE bucket = b AND key = ANY(pending)
                  ORDER BY key FOR UPDATE) AS o;
            IF cardinality(lk) > 0 THEN
                UPDATE {n.entries} AS t
                SET ({_COLUMNS}) = (u.size, u.etag, u.modified, u.content_type, u.metadata,
                                    u.version)
                FROM {given}, unnest(lk) AS l(key)
                WHERE l.key = u.key AND t.bucket = b AND t.key = u.key;
                SELECT dk || coalesce(array_agg(l.key), '{{}}'),
                       dn || coalesce(array_agg(0::bigint), '{{}}'),
                       dsz || coalesce(array_agg(u.size - l.size), '{{}}')
                INTO dk, dn, dsz
                FROM unnest(lk, lo) AS l(key, size) JOIN unnest(ks, ss) AS u(key, size)
                ON u.key = l.key WHERE u.size <> l.size;
            END IF;
            WITH added AS (
                INSERT INTO {n.entries} AS t (bucket, key, {_COLUMNS})
                SELECT b, u.key, u.size, u.etag, u.modified, u.content_type, u.metadata,
                       u.version
                FROM {given} JOIN unnest(pending) AS p(key) ON p.key = u.key
                LEFT JOIN unnest(lk) AS l(key) ON l.key = u.key
                WHERE l.key IS NULL ORDER BY u.key COLLATE "C"
                ON CONFLICT (bucket, key) DO NOTHING
                RETURNING t.key, t.size)
            SELECT coalesce(array_agg(key), '{{}}'), coalesce(array_agg(size), '{{}}')
            INTO nk, ns FROM added;
            dk := dk || nk;
            dn := dn || array_fill(1::bigint, ARRAY[cardinality(nk)]);
            dsz := dsz || ns;
            SELECT coalesce(array_agg(p.key), '{{}}') INTO pending
            FROM unnest(pending) AS p(key)
            LEFT JOIN unnest(lk) AS l(key) ON l.key = p.key
            LEFT JOIN unnest(nk) AS a(key) ON a.key = p.key
            WHERE l.key IS NULL AND a.key IS NULL;
            EXIT WHEN cardinality(pending) = 0;
        END LOOP;
        IF cardinality(dk) > 0 THEN
            {add};
        END IF;
    END $f$"""


def _forget(n: Names) -> str:
    # Lock in key order, delete, subtract from the aggregates in prefix order, and
    # drop the rows that reached zero objects. Returns the number of entries removed.
    prefixes = _PREFIXES.format(key="g.key")
    add = _ADD.format(
        usage=n.usage,
        rows=(
            "SELECT b, p.prefix, -count(*), -sum(g.size) "
            f"FROM gone AS g, LATERAL ({prefixes}) AS p(prefix) "
            'GROUP BY p.prefix ORDER BY p.prefix COLLATE "C"'
        ),
    )
    return f"""CREATE OR REPLACE FUNCTION {n.forget}(b text, ks text[])
        RETURNS bigint LANGUAGE plpgsql AS $f$
    DECLARE
        emptied text[];
        removed bigint;
    BEGIN
        PERFORM 1 FROM (SELECT key FROM {n.entries} WHERE bucket = b AND key = ANY(ks)
                        ORDER BY key FOR UPDATE) AS o;
        WITH gone AS (
            DELETE FROM {n.entries} WHERE bucket = b AND key = ANY(ks) RETURNING key, size),
        changed AS ({add} RETURNING a.prefix, a.objects)
        SELECT coalesce(array_agg(prefix) FILTER (WHERE objects <= 0), '{{}}'),
               (SELECT count(*) FROM gone)
        INTO emptied, removed FROM changed;
        IF cardinality(emptied) > 0 THEN
            DELETE FROM {n.usage} WHERE bucket = b AND prefix = ANY(emptied) AND objects <= 0;
        END IF;
        RETURN removed;
    END $f$"""


def create_sql(n: Names) -> list[str]:
    """The statements that create an index's tables and functions, in order."""
    return [*_tables(n), _record_one(n), _record(n), _forget(n)]


def drop_sql(n: Names) -> list[str]:
    """The statements that drop an index's functions and tables (where present)."""
    return [
        f"DROP FUNCTION IF EXISTS {n.record_one}",
        f"DROP FUNCTION IF EXISTS {n.record}",
        f"DROP FUNCTION IF EXISTS {n.forget}",
        *(f"DROP TABLE IF EXISTS {table}" for table in reversed(n.tables)),
    ]


def prepare(cursor: Any, n: Names, where: str) -> None:
    """Inside a transaction: create the index where absent; refuse tables not of this layout.

    Serialised by an advisory lock on the table name, so concurrent openers of
    a new index wait for the first one's tables instead of colliding.
    """
    cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"mirrorkv-index:{n.prefix}",))
    cursor.execute("SHOW server_encoding")
    encoding = str(cursor.fetchone()[0])
    if encoding.upper() not in ("UTF8", "UTF-8"):
        raise MirrorKVError(
            f"{where}: the database encoding is {encoding}; the index needs a UTF8 database"
        )
    cursor.execute(
        "SELECT to_regclass(t) IS NOT NULL FROM unnest(%s::text[]) WITH ORDINALITY AS x(t, i) "
        "ORDER BY i",
        (list(n.tables),),
    )
    present = [bool(row[0]) for row in cursor.fetchall()]
    if not present[0]:
        if any(present):
            raise MirrorKVError(
                f"{where}: tables of that name exist but were not made by a mirrorkv index "
                "(no schema table beside them); choose another table="
            )
        for statement in create_sql(n):
            cursor.execute(statement)
        cursor.execute(
            f"INSERT INTO {n.schema} (name, value) VALUES ('application', %s), ('version', %s)",
            (APPLICATION, str(INDEX_SCHEMA_VERSION)),
        )
        return
    cursor.execute(f"SELECT name, value FROM {n.schema}")
    found = {str(name): str(value) for name, value in cursor.fetchall()}
    if found.get("application") != APPLICATION:
        raise MirrorKVError(f"{where}: the tables are not a mirrorkv metadata index")
    version = found.get("version")
    if version != str(INDEX_SCHEMA_VERSION) or not all(present):
        raise MirrorKVError(
            f"{where}: index schema version {version} (tables present: {all(present)}); this "
            f"mirrorkv reads version {INDEX_SCHEMA_VERSION} (upgrade mirrorkv if it is newer)"
        )
