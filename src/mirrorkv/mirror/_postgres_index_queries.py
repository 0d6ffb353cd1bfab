"""The PostgreSQL index's statements: one :class:`Queries` per table option.

Placeholders are psycopg's ``%s``. Key bounds are plain text parameters
compared with ``COLLATE "C"`` columns, so every comparison and ``ORDER BY`` is
UTF-8 byte order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._postgres_index_schema import ADD, DEPTH, REVERSED, Names, by_prefix, upsert

__all__ = [
    "CEILING",
    "COLUMNS",
    "SEEK_WORTH",
    "Queries",
    "key_range",
    "listing",
    "partial_usage",
    "queries",
]

#: ``du`` of a prefix not ending in "/" seeks around the subdirectories it covers
#: where they hold this many keys each on average, else scans its key range.
SEEK_WORTH = 10
#: A text above every key (a key is at most 1,024 bytes of UTF-8; this is 257
#: characters of 4 bytes, each the greatest there is): the upper bound of a
#: range whose prefix has none, so that every range has one and the planner
#: sees it as a range.
CEILING = "\U0010ffff" * 257
#: The columns of an entry, in ``row_meta``'s order.
COLUMNS = "key, size, etag, modified, content_type, metadata, version"


def key_range(low: str, inclusive: bool, high: str | None) -> tuple[str, list[Any]]:
    """The condition (after ``bucket = %s``) and arguments of keys from ``low`` below ``high``."""
    condition = " AND key >= %s" if inclusive else " AND key > %s"
    args: list[Any] = [low]
    if high is not None:
        condition += " AND key < %s"
        args.append(high)
    return condition, args


@dataclass(frozen=True)
class Queries:
    """Every statement of one index."""

    names: Names
    #: ``(bucket, key, size, etag, modified, content_type, metadata, version, bucket,
    #: prefixes)``: one record and its aggregates, one statement.
    record_one: str
    #: ``(bucket, keys, sizes, etags, modifieds, content_types, metadatas, versions, bucket)``
    #: (the keys distinct): many records and their aggregates, one statement.
    record: str
    #: ``(bucket, keys)``: the number of entries deleted.
    forget: str
    #: ``(bucket, key, expected etag, expected version, size, etag, modified,
    #: content_type, metadata, version)``, the expected pair NULL for "no entry",
    #: the record NULL to forget: whether the swap applied.
    swap: str
    #: ``(bucket, keys, sizes, etags, modifieds, content_types, metadatas, versions)``,
    #: every key of the range (sorted), the size NULL for those to delete:
    #: ``(added, changed, removed)``.
    replace_range: str
    #: ``(bucket, key)``: the entry's :data:`COLUMNS`.
    get: str
    #: ``(bucket, prefix)``: ``(objects, bytes)``.
    usage: str
    #: ``(bucket, low)``: ``(count, sum)`` of the sizes from ``low`` on.
    range_sum_open: str
    #: ``du`` of a prefix not ending in "/" (see :func:`partial_usage`).
    partial_usage: str
    #: ``du_children``, named parameters ``bucket``, ``low`` (the prefix), ``level``
    #: (the number of "/" in its subdirectories) and ``high`` (its upper bound, or
    #: :data:`CEILING`); rows ``(child, objects, bytes)`` in prefix order, the first
    #: with child NULL for the prefix's own total.
    children: str
    #: ``ls`` with the delimiter "/" (see :func:`listing`).
    listing: str
    #: The buckets of the usage table (a skip scan), of the journal and of the checkpoints.
    buckets: str
    #: ``(bucket, directory, share, most, bucket, low, high)``: one row ``(bound, count)``,
    #: ``bound`` the least of the directory's objects / ``share`` and ``most``, ``count``
    #: the keys whose reverse is in ``[low, high)`` (a range of ``T_entries_by_suffix``),
    #: counted up to ``bound + 1``.
    suffix_count: str
    mark_dirty: str
    clear_dirty: str
    dirty: str
    set_checkpoint: str
    delete_checkpoint: str
    checkpoint: str

    def page(self, condition: str, columns: str = COLUMNS) -> str:
        """A page of entries of one bucket: ``bucket = %s`` + ``condition``, in key order."""
        return (
            f"SELECT {columns} FROM {self.names.entries} WHERE bucket = %s{condition} "
            "ORDER BY key LIMIT %s"
        )

    def range_keys(self, condition: str) -> str:
        """Every key of one bucket in a range, in key order."""
        return f"SELECT key FROM {self.names.entries} WHERE bucket = %s{condition} ORDER BY key"

    def suffix_rows(self, filters: str) -> str:
        """``(bucket, low, high, outline, *filters)``: entries whose reversed key is in
        ``[low, high)`` and whose key is ``LIKE`` the outline, in key order.
        """
        return (
            f"SELECT {COLUMNS} FROM {self.names.entries} WHERE {_SUFFIX} AND key LIKE %s"
            f"{filters} ORDER BY key"
        )

    @property
    def suffix_keys(self) -> str:
        """``(bucket, low, high, outline, key low, key high)``: the keys of
        :meth:`suffix_rows` in ``[key low, key high)``, unordered, from the index alone.

        The key range is applied outside a materialized CTE: inside, the planner
        could read the range from the primary key instead (it cannot tell
        which range is narrower from a generic plan's parameters).
        """
        return (
            f"WITH s AS MATERIALIZED (SELECT key FROM {self.names.entries} "
            f"WHERE {_SUFFIX} AND key LIKE %s) SELECT key FROM s WHERE key >= %s AND key < %s"
        )

    def rows_by_key(self, filters: str) -> str:
        """``(bucket, keys, *filters)``: the entries of those keys, in key order."""
        return (
            f"SELECT {COLUMNS} FROM {self.names.entries} "
            f"WHERE bucket = %s AND key = ANY(%s::text[]){filters} ORDER BY key"
        )


#: The condition of a range of ``T_entries_by_suffix``: ``(bucket, low, high)``.
_SUFFIX = f"bucket = %s AND {REVERSED} >= %s AND {REVERSED} < %s"


def _suffix_count(n: Names) -> str:
    # One round trip: the directory's row gives the bound, the index range is
    # counted up to one past it (an index-only scan: the count stops there).
    return f"""WITH b AS MATERIALIZED (
            SELECT least(floor(coalesce((SELECT objects FROM {n.usage}
                                         WHERE bucket = %s AND prefix = %s), 0)
                               / %s::float8), %s::bigint)::bigint AS bound)
        SELECT (SELECT bound FROM b), count(*) FROM (
            SELECT 1 FROM {n.entries} WHERE {_SUFFIX} LIMIT (SELECT bound + 1 FROM b)) AS x"""


def _level(n: Names, columns: str = "prefix, objects, bytes") -> str:
    """The rows of ``T_usage`` of ``%(level)s`` slashes in ``[%(low)s, %(high)s)``.

    One range of ``T_usage_by_depth``: the subdirectories of one directory
    whose names start with what ``low`` adds to it, in prefix order.
    """
    return (
        f"SELECT {columns} FROM {n.usage} WHERE bucket = %(bucket)s AND {DEPTH} = %(level)s::int "
        "AND prefix >= %(low)s AND prefix < %(high)s ORDER BY prefix"
    )


def _children(n: Names) -> str:
    # The prefix's own row, then its subdirectories: one range of the depth index.
    return f"""SELECT NULL, objects, bytes FROM {n.usage}
        WHERE bucket = %(bucket)s AND prefix = %(low)s
        UNION ALL ({_level(n)})"""


def _gaps(n: Names, columns: str) -> str:
    """``columns`` of the entries in ``[low, high)`` outside every row of ``kids``.

    ``kids`` (a CTE of ``child`` prefixes ending in "/") are the
    subdirectories of the directory ``low`` is in that start with ``low``;
    what lies between them are that directory's own objects. One range probe
    per gap, each from just past a child's subtree (its final "/" replaced by
    "0", the next byte) to the next child, or to ``high`` after the last.
    """
    return f"""SELECT {columns} FROM (
            SELECT coalesce(lag(left(child, -1) || '0') OVER (ORDER BY child), %(low)s) AS lo,
                   child AS hi
            FROM kids) AS g
        JOIN {n.entries} AS e ON e.bucket = %(bucket)s AND e.key >= g.lo AND e.key < g.hi
        UNION ALL
        SELECT {columns} FROM {n.entries} AS e WHERE e.bucket = %(bucket)s
        AND e.key >= coalesce((SELECT left(max(child), -1) || '0' FROM kids), %(low)s)
        AND e.key < %(high)s"""


def _own(n: Names) -> str:
    """The CTE ``own(n)``: how many objects lie directly in the prefix's directory, or NULL.

    The directory's total less all its subdirectories' rows. Where the
    prefix is the directory, ``kids`` are those rows. Otherwise they are read
    (one range of the depth index), but no more than 64 + the least of 4 x
    the number of ``kids`` and the objects in them: past that, ``n`` is NULL
    (unknown) and the caller reads the gaps between ``kids`` (a probe each)
    or the prefix's keys, so that a narrow prefix in a directory of very
    many subdirectories costs at most about twice what its own
    subdirectories cost (a row read here costs about what a key read does,
    and a thirteenth of a probe, measured).
    """
    cap = "(SELECT least(4 * count(*), coalesce(sum(objects), 0)) + 64 FROM kids)"
    return f"""own AS MATERIALIZED (
            SELECT coalesce((SELECT objects FROM {n.usage}
                             WHERE bucket = %(bucket)s AND prefix = %(directory)s), 0)
                - CASE WHEN %(low)s::text = %(directory)s::text
                       THEN (SELECT coalesce(sum(objects), 0) FROM kids)
                       ELSE (SELECT CASE WHEN count(*) < {cap} THEN coalesce(sum(objects), 0) END
                             FROM (SELECT objects FROM {n.usage} WHERE bucket = %(bucket)s
                                   AND {DEPTH} = %(level)s::int AND prefix >= %(directory)s
                                   AND prefix < %(directory_high)s
                                   ORDER BY prefix LIMIT {cap}) AS d) END AS n)"""


def listing(n: Names) -> str:
    """``ls`` with the delimiter "/": rows ``(is_prefix, key, ...)`` in key order.

    Named parameters ``bucket``, ``low`` (the prefix), ``directory`` (the
    prefix up to its last "/"), ``directory_high`` (its upper bound),
    ``level`` (the number of "/" in its subdirectories) and ``high`` (the
    prefix's upper bound); an absent upper bound is :data:`CEILING`. The
    common prefixes are the subdirectories' aggregate rows; the objects are
    the directory's own, read between them (:func:`_gaps`), and only where
    it may hold some (:func:`_own`).
    """
    names = COLUMNS.split(", ")
    columns = "false, " + ", ".join(f"e.{name}" for name in names)
    nulls = ", ".join(["NULL"] * (len(names) - 1))
    return f"""WITH kids AS MATERIALIZED ({_level(n, "prefix AS child, objects")}),
        {_own(n)}
        SELECT true, child, {nulls} FROM kids
        UNION ALL
        SELECT * FROM ({_gaps(n, columns)}) AS o WHERE coalesce((SELECT n FROM own), 1) <> 0
        ORDER BY 2"""


def _record_one(n: Names) -> str:
    values = "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
    add = ADD.format(
        usage=n.usage,
        rows=(
            "SELECT %s, p, w.n, w.s FROM w, unnest(%s::text[]) AS p "
            'WHERE w.n <> 0 OR w.s <> 0 ORDER BY p COLLATE "C"'
        ),
    )
    return f"WITH w(key, n, s) AS ({upsert(n, values)}) {add}"


def _record(n: Names) -> str:
    given = (
        "SELECT %s, u.* FROM unnest(%s::text[], %s::bigint[], %s::text[], "
        "%s::double precision[], %s::text[], %s::text[], %s::text[]) "
        "AS u(key, size, etag, modified, content_type, metadata, version) "
        'ORDER BY u.key COLLATE "C"'
    )
    add = ADD.format(usage=n.usage, rows=by_prefix("w", "%s"))
    return f"WITH w(key, n, s) AS ({upsert(n, given)}) {add}"


def partial_usage(n: Names) -> str:
    """``du`` of a prefix not ending in "/": one row ``(objects, bytes)``.

    Named parameters as :func:`listing`'s and ``seek_worth`` (below).

    The subdirectories of the prefix's directory that start with the prefix
    (one range of the depth index) give their aggregate rows. Where the
    directory is known to hold no objects of its own (:func:`_own`), their
    sum is the answer. Otherwise the objects directly in the directory are
    summed over the gaps between those subdirectories (:func:`_gaps`), or,
    where they hold under ``seek_worth`` keys on average, the whole key
    range is summed instead. Only the branch taken is evaluated.
    """
    entries = n.entries
    return f"""WITH kids AS MATERIALIZED ({_level(n, "prefix AS child, objects, bytes")}),
        totals AS (
            SELECT count(*) AS c, coalesce(sum(objects), 0) AS n, coalesce(sum(bytes), 0) AS s
            FROM kids),
        {_own(n)},
        gaps AS (
            SELECT count(*) AS n, coalesce(sum(size), 0) AS s
            FROM ({_gaps(n, "e.size")}) AS x(size)),
        whole AS (
            SELECT count(*) AS n, coalesce(sum(size), 0) AS s FROM {entries}
            WHERE bucket = %(bucket)s AND key >= %(low)s AND key < %(high)s),
        way AS MATERIALIZED (
            SELECT CASE WHEN (SELECT n FROM own) = 0 THEN 0
                        WHEN t.n < %(seek_worth)s::bigint * t.c OR t.c = 0 THEN 1
                        ELSE 2 END AS w
            FROM totals AS t)
        SELECT CASE w WHEN 0 THEN t.n WHEN 1 THEN (SELECT n FROM whole)
                      ELSE t.n + (SELECT n FROM gaps) END,
               CASE w WHEN 0 THEN t.s WHEN 1 THEN (SELECT s FROM whole)
                      ELSE t.s + (SELECT s FROM gaps) END
        FROM totals AS t, way"""


def queries(n: Names) -> Queries:
    """The statements of the index whose names are ``n``."""
    entries, usage = n.entries, n.usage
    range_sum = f"SELECT count(*), coalesce(sum(size), 0) FROM {entries} WHERE bucket = %s"
    buckets = f"""WITH RECURSIVE b(bucket) AS (
            (SELECT bucket FROM {usage} ORDER BY bucket LIMIT 1)
            UNION ALL
            SELECT (SELECT u.bucket FROM {usage} AS u WHERE u.bucket > b.bucket
                    ORDER BY u.bucket LIMIT 1) FROM b WHERE b.bucket IS NOT NULL)
        SELECT bucket FROM b WHERE bucket IS NOT NULL
        UNION SELECT bucket FROM {n.dirty} UNION SELECT bucket FROM {n.checkpoints}
        ORDER BY 1"""
    return Queries(
        names=n,
        record_one=_record_one(n),
        record=_record(n),
        forget=f"SELECT {n.forget}(%s, %s::text[])",
        swap=(
            f"SELECT {n.swap}(%s::text, %s::text, %s::text, %s::text, %s::bigint, %s::text, "
            "%s::double precision, %s::text, %s::text, %s::text)"
        ),
        replace_range=(
            f"SELECT * FROM {n.replace_range}(%s, %s::text[], %s::bigint[], %s::text[], "
            "%s::double precision[], %s::text[], %s::text[], %s::text[])"
        ),
        get=f"SELECT {COLUMNS} FROM {entries} WHERE bucket = %s AND key = %s",
        usage=f"SELECT objects, bytes FROM {usage} WHERE bucket = %s AND prefix = %s",
        range_sum_open=f"{range_sum} AND key >= %s",
        partial_usage=partial_usage(n),
        children=_children(n),
        listing=listing(n),
        buckets=buckets,
        suffix_count=_suffix_count(n),
        mark_dirty=(
            f"INSERT INTO {n.dirty} (bucket, key) SELECT %s, k FROM unnest(%s::text[]) AS k "
            "ON CONFLICT DO NOTHING"
        ),
        clear_dirty=f"DELETE FROM {n.dirty} WHERE bucket = %s AND key = ANY(%s::text[])",
        dirty=f"SELECT key FROM {n.dirty} WHERE bucket = %s ORDER BY key",
        set_checkpoint=(
            f"INSERT INTO {n.checkpoints} (bucket, name, value) VALUES (%s, %s, %s) "
            "ON CONFLICT (bucket, name) DO UPDATE SET value = excluded.value"
        ),
        delete_checkpoint=f"DELETE FROM {n.checkpoints} WHERE bucket = %s AND name = %s",
        checkpoint=f"SELECT value FROM {n.checkpoints} WHERE bucket = %s AND name = %s",
    )
