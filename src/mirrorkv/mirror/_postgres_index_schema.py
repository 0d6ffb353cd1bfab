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
  zero objects is deleted in the transaction that emptied it. The index
  ``T_usage_by_depth`` orders those rows by bucket, number of ``/``
  (:data:`DEPTH`, an expression index: the table and its writers are
  unchanged) and prefix, so the subdirectories of one directory are one
  contiguous index range. An index made before it existed gets it at its
  next open (the schema version stays 1).
* ``T_entries_by_suffix``: an expression index of ``T_entries`` on
  ``(bucket, reverse(key))`` (:data:`REVERSED`, in byte order) that also holds
  the key (``INCLUDE``), so the keys of a bucket ending in a given text are
  one range of it, read from the index alone. ``find`` reads a glob's keys
  there when they are few (see :mod:`.postgres_index`). An index made before
  it existed gets it at its next open, as the depth index (the schema
  version stays 1); where the user cannot build it, ``find`` scans.
* ``T_dirty (bucket, key)`` and ``T_checkpoints (bucket, name, value)``.
* ``T_schema (name, value)``: ``application = mirrorkv-index`` and
  ``version = 1``; tables without it beside them are refused.
* ``T_entries.replaced_size``: the size a row had before its last overwrite
  (NULL after an insert), written by the upsert so that it can return it.
* Functions ``T_forget`` and ``T_replace_range`` (PL/pgSQL): deletes (and a
  range's upserts) with their aggregates in one call; ``record`` and
  ``record_many`` are single statements (see :mod:`._postgres_index_queries`).
* Function ``T_swap`` (PL/pgSQL): ``compare_and_set`` in one call. Added
  after version 1 was fixed, so an index made before it gets it at its next
  open (it changes no table: the schema version stays 1).

Creation runs in one transaction under an advisory lock on the table name,
so processes opening a new index at once neither race nor fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from ..errors import MirrorKVError

__all__ = [
    "ADD",
    "APPLICATION",
    "DEPTH",
    "FIELDS",
    "INDEX_SCHEMA_VERSION",
    "REVERSED",
    "Names",
    "by_prefix",
    "create_sql",
    "drop_sql",
    "names",
    "prepare",
    "upsert",
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
    forget: str
    replace_range: str
    swap: str
    by_depth: str
    by_suffix: str

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
        forget=quoted("forget"),
        replace_range=quoted("replace_range"),
        swap=quoted("swap"),
        by_depth=quoted("usage_by_depth"),
        by_suffix=quoted("entries_by_suffix"),
    )


def _tables(n: Names) -> list[str]:
    key = 'text COLLATE "C" NOT NULL'
    return [
        f"CREATE TABLE {n.schema} (name text PRIMARY KEY, value text NOT NULL)",
        f"""CREATE TABLE {n.entries} (
            bucket {key}, key {key}, size bigint NOT NULL, etag text NOT NULL,
            modified double precision NOT NULL, content_type text, metadata text,
            version text NOT NULL, replaced_size bigint, PRIMARY KEY (bucket, key))""",
        f"""CREATE TABLE {n.usage} (
            bucket {key}, prefix {key}, objects bigint NOT NULL, bytes bigint NOT NULL,
            PRIMARY KEY (bucket, prefix))""",
        f"CREATE TABLE {n.dirty} (bucket {key}, key {key}, PRIMARY KEY (bucket, key))",
        f"""CREATE TABLE {n.checkpoints} (
            bucket {key}, name text NOT NULL, value text NOT NULL, PRIMARY KEY (bucket, name))""",
    ]


#: The number of "/" in an aggregate row's prefix, as ``T_usage_by_depth`` indexes it
#: (a query must spell it so, on the column ``prefix``, for the planner to use the index).
DEPTH = "(length(prefix) - length(replace(prefix, '/', '')))"


def _by_depth(n: Names) -> str:
    # Only prefix is indexed (no INCLUDE of the counts): an update of a row's
    # counts then changes no indexed column and can stay a HOT update.
    return f"CREATE INDEX {n.by_depth} ON {n.usage} (bucket, {DEPTH}, prefix)"


#: A key reversed, as ``T_entries_by_suffix`` indexes it (a query must spell it so,
#: on the column ``key``, for the planner to use the index). ``key`` is ``COLLATE
#: "C"``, and so is this: its ranges are in UTF-8 byte order, the order of
#: :func:`mirrorkv.keys.prefix_upper_bound`.
REVERSED = "reverse(key)"


def _by_suffix(n: Names) -> str:
    # INCLUDE (key): a query that reads the keys ending so (and filters them by key)
    # is then an index-only scan; without it the planner must visit every row.
    return (
        f'CREATE INDEX {n.by_suffix} ON {n.entries} (bucket, {REVERSED} COLLATE "C") INCLUDE (key)'
    )


# The "/"-prefixes of a directory (a key up to its last "/", or ""), "" first, from
# its segments: 'a/b/' -> '', 'a/', 'a/b/'. They are also the prefixes of its keys.
_PREFIXES = (
    "SELECT ''::text UNION ALL "
    "SELECT array_to_string(parts[1:i], '/') || '/' "
    "FROM string_to_array(d.dir, '/') AS parts, generate_series(1, cardinality(parts) - 1) AS i"
)
_DIR = (
    "CASE WHEN strpos(key, '/') = 0 THEN '' "
    "ELSE left(key, length(key) + 1 - strpos(reverse(key), '/')) END"
)


def by_prefix(source: str, bucket: str) -> str:
    """Rows ``(bucket, prefix, objects, bytes)``: the deltas ``source`` gives per aggregate row.

    ``source`` names rows ``(key, n, s)``; they are summed per directory first,
    then per prefix, in prefix order, leaving out rows that do not change.
    """
    return (
        f"SELECT {bucket}, p.prefix, sum(d.n)::bigint, sum(d.s)::bigint "
        f"FROM (SELECT {_DIR} AS dir, sum(n) AS n, sum(s) AS s FROM {source} GROUP BY 1) AS d, "
        f"LATERAL ({_PREFIXES}) AS p(prefix) "
        "GROUP BY p.prefix HAVING sum(d.n) <> 0 OR sum(d.s) <> 0 "
        'ORDER BY p.prefix COLLATE "C"'
    )


#: Adds ``{rows}`` (``bucket, prefix, objects, bytes``, in prefix order) to the
#: aggregate rows. Aggregates are always changed in prefix order and after the
#: entries, so two writers wait for each other instead of deadlocking.
ADD = (
    "INSERT INTO {usage} AS a (bucket, prefix, objects, bytes) {rows} "
    "ON CONFLICT (bucket, prefix) DO UPDATE "
    "SET objects = a.objects + excluded.objects, bytes = a.bytes + excluded.bytes"
)

#: The stored fields of an entry, in ``meta_row``'s order.
FIELDS = ("size", "etag", "modified", "content_type", "metadata", "version")


def upsert(n: Names, rows: str) -> str:
    """Insert or overwrite the entries ``rows`` selects (in key order), returning the deltas.

    Rows come back as ``(key, objects, bytes)``: ``(1, size)`` where the key
    was new, ``(0, size - old size)`` where it was overwritten. The old size
    is the locked row's, saved in ``replaced_size`` by the conflict branch:
    an upsert cannot return the row it replaced, and reading it beforehand
    races with concurrent inserts.
    """
    columns = ", ".join(FIELDS)
    updates = ", ".join(f"{field} = excluded.{field}" for field in FIELDS)
    return (
        f"INSERT INTO {n.entries} AS t (bucket, key, {columns}) {rows} "
        f"ON CONFLICT (bucket, key) DO UPDATE SET {updates}, replaced_size = t.size "
        "RETURNING t.key, CASE WHEN t.replaced_size IS NULL THEN 1 ELSE 0 END::bigint, "
        "t.size - coalesce(t.replaced_size, 0)"
    )


def _apply(n: Names, deltas: str) -> str:
    """PL/pgSQL: add ``deltas`` (rows ``x(key, n, s)``) to the aggregates, drop emptied rows.

    Sets ``total`` to the number of rows of ``x``.
    """
    add = ADD.format(usage=n.usage, rows=by_prefix("x", "b"))
    return f"""WITH {deltas},
        agg AS ({add} RETURNING a.prefix, a.objects)
        SELECT coalesce(array_agg(prefix) FILTER (WHERE objects <= 0), '{{}}'),
               (SELECT count(*) FROM x)
        INTO emptied, total FROM agg;
        IF cardinality(emptied) > 0 THEN
            DELETE FROM {n.usage} WHERE bucket = b AND prefix = ANY(emptied) AND objects <= 0;
        END IF;"""


def _forget(n: Names) -> str:
    # Lock the keys in key order, delete the rows locked (a key inserted since then
    # counts as inserted after this forget), subtract them from the aggregates.
    # Returns the number of entries deleted.
    deltas = (
        f"x AS (DELETE FROM {n.entries} WHERE bucket = b AND key = ANY(locked) "
        "RETURNING key, -1::bigint AS n, -size AS s)"
    )
    return f"""CREATE OR REPLACE FUNCTION {n.forget}(b text, ks text[])
        RETURNS bigint LANGUAGE plpgsql AS $f$
    DECLARE
        locked text[];
        emptied text[];
        total bigint;
    BEGIN
        SELECT array_agg(o.key) INTO locked
        FROM (SELECT key FROM {n.entries} WHERE bucket = b AND key = ANY(ks)
              ORDER BY key FOR UPDATE) AS o;
        IF locked IS NULL THEN
            RETURN 0;
        END IF;
        {_apply(n, deltas)}
        RETURN total;
    END $f$"""


def _replace_range(n: Names) -> str:
    # One pass over the keys in key order (the range's stored keys and the given
    # ones, sorted by the caller): lock each, then delete it (its size is NULL: it
    # must be absent), leave it (equal), or upsert it. Locking in key order, like
    # every other writer, is what keeps this from deadlocking with batches on the
    # same keys. Returns (added, changed, removed).
    fields = ", ".join(FIELDS)
    values = "VALUES (b, ks[i], ss[i], es[i], ms[i], cs[i], ds[i], vs[i])"
    deltas = "x AS (SELECT * FROM unnest(dk, dn, dsz) AS d(key, n, s))"
    return f"""CREATE OR REPLACE FUNCTION {n.replace_range}(
        b text, ks text[], ss bigint[], es text[], ms double precision[], cs text[],
        ds text[], vs text[], OUT added bigint, OUT changed bigint, OUT removed bigint)
        LANGUAGE plpgsql AS $f$
    DECLARE
        cur record;
        k text;
        dk text[] := '{{}}';
        dn bigint[] := '{{}}';
        dsz bigint[] := '{{}}';
        wn bigint;
        ws bigint;
        emptied text[];
        total bigint;
    BEGIN
        added := 0;
        changed := 0;
        removed := 0;
        FOR i IN 1 .. coalesce(cardinality(ks), 0) LOOP
            k := ks[i];
            SELECT {fields} INTO cur FROM {n.entries} WHERE bucket = b AND key = k FOR UPDATE;
            IF ss[i] IS NULL THEN
                IF FOUND THEN
                    DELETE FROM {n.entries} WHERE bucket = b AND key = k;
                    removed := removed + 1;
                    dk := dk || k;
                    dn := dn || -1::bigint;
                    dsz := dsz || -cur.size;
                END IF;
            ELSIF NOT FOUND OR ROW(cur.size, cur.etag, cur.modified, cur.content_type,
                                   cur.metadata, cur.version)
                    IS DISTINCT FROM ROW(ss[i], es[i], ms[i], cs[i], ds[i], vs[i]) THEN
                {upsert(n, values)} INTO k, wn, ws;
                IF wn = 1 THEN
                    added := added + 1;
                ELSE
                    changed := changed + 1;
                END IF;
                IF wn <> 0 OR ws <> 0 THEN
                    dk := dk || k;
                    dn := dn || wn;
                    dsz := dsz || ws;
                END IF;
            END IF;
        END LOOP;
        IF cardinality(dk) > 0 THEN
            {_apply(n, deltas)}
        END IF;
    END $f$"""


def _swap(n: Names) -> str:
    # Lock the key's row (or find none), compare its (etag, version) with the
    # expected one (want_etag NULL: no entry), then write as record/forget do: the
    # entry first, then the aggregates in prefix order. Where no row was found, the
    # race is another writer's insert: ON CONFLICT DO NOTHING waits for it and, if
    # it commits, inserts nothing, so the swap fails. A row deleted while we waited
    # for its lock is not found by FOR UPDATE: the key counts as absent. new_size
    # NULL means forget. Returns whether the swap applied. (Variables have long
    # names: the aggregate SQL of _apply uses short aliases such as s, n, d, p.)
    fields = ", ".join(FIELDS)
    values = "(b, the_key, new_size, new_etag, new_modified, new_type, new_metadata, new_version)"
    deltas = "x AS (SELECT the_key AS key, delta_n AS n, delta_s AS s)"
    return f"""CREATE OR REPLACE FUNCTION {n.swap}(
        b text, the_key text, want_etag text, want_version text, new_size bigint,
        new_etag text, new_modified double precision, new_type text, new_metadata text,
        new_version text) RETURNS boolean LANGUAGE plpgsql AS $f$
    DECLARE
        cur record;
        delta_n bigint;
        delta_s bigint;
        emptied text[];
        total bigint;
    BEGIN
        SELECT size, etag, version INTO cur FROM {n.entries}
        WHERE bucket = b AND key = the_key FOR UPDATE;
        IF FOUND THEN
            IF ROW(cur.etag, cur.version) IS DISTINCT FROM ROW(want_etag, want_version) THEN
                RETURN false;
            END IF;
            IF new_size IS NULL THEN
                DELETE FROM {n.entries} WHERE bucket = b AND key = the_key;
                delta_n := -1;
                delta_s := -cur.size;
            ELSE
                UPDATE {n.entries} SET size = new_size, etag = new_etag,
                    modified = new_modified, content_type = new_type,
                    metadata = new_metadata, version = new_version, replaced_size = cur.size
                WHERE bucket = b AND key = the_key;
                delta_n := 0;
                delta_s := new_size - cur.size;
            END IF;
        ELSE
            IF want_etag IS NOT NULL THEN
                RETURN false;
            END IF;
            IF new_size IS NULL THEN
                RETURN true;
            END IF;
            INSERT INTO {n.entries} (bucket, key, {fields}) VALUES {values}
            ON CONFLICT (bucket, key) DO NOTHING;
            IF NOT FOUND THEN
                RETURN false;
            END IF;
            delta_n := 1;
            delta_s := new_size;
        END IF;
        IF delta_n <> 0 OR delta_s <> 0 THEN
            {_apply(n, deltas)}
        END IF;
        RETURN true;
    END $f$"""


def create_sql(n: Names) -> list[str]:
    """The statements that create an index's tables and functions, in order."""
    return [*_tables(n), _by_depth(n), _by_suffix(n), _forget(n), _replace_range(n), _swap(n)]


def drop_sql(n: Names) -> list[str]:
    """The statements that drop an index's functions and tables (where present)."""
    return [
        f"DROP FUNCTION IF EXISTS {n.forget}",
        f"DROP FUNCTION IF EXISTS {n.replace_range}",
        f"DROP FUNCTION IF EXISTS {n.swap}",
        *(f"DROP TABLE IF EXISTS {table}" for table in reversed(n.tables)),
    ]


def _add_index(cursor: Any, name: str, statement: str) -> bool:
    """Inside a transaction: build the index ``name`` where absent; whether it is there now.

    A user who does not own the table cannot build it: the transaction goes on
    without it (a savepoint undoes the failed statement).
    """
    cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (name,))
    if cursor.fetchone()[0]:
        return True
    cursor.execute("SAVEPOINT add_index")
    try:
        cursor.execute(statement)
    except psycopg.errors.InsufficientPrivilege:
        cursor.execute("ROLLBACK TO SAVEPOINT add_index")
        return False
    cursor.execute("RELEASE SAVEPOINT add_index")
    return True


def prepare(cursor: Any, n: Names, where: str) -> bool:
    """Inside a transaction: create the index where absent; refuse tables not of this layout.

    Serialised by an advisory lock on the table name, so concurrent openers of
    a new index wait for the first one's tables instead of colliding. Returns
    whether ``T_entries_by_suffix`` is there (it is, unless an index made before
    it existed is opened by a user who may not build it).
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
        return True
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
    # An index made before T_swap existed gets it now; one that has it is left
    # alone (replacing a function needs its owner, who may not be this user).
    cursor.execute("SELECT to_regproc(%s) IS NULL", (n.swap,))
    if cursor.fetchone()[0]:
        cursor.execute(_swap(n))
    # Likewise the depth and suffix indexes; under the advisory lock, so two openers
    # never both build one. A user who does not own the tables cannot: the reads
    # stay exact without them (slower), and the owner's next open adds them. The
    # builds hold writers back while they run (CREATE INDEX takes a SHARE lock; the
    # suffix index reads every entry: 0.2-0.4 s at 200,000 keys, measured).
    _add_index(cursor, n.by_depth, _by_depth(n))
    return _add_index(cursor, n.by_suffix, _by_suffix(n))
