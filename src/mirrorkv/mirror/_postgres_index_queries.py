"""The PostgreSQL index's statements: one :class:`Queries` per table option.

Placeholders are psycopg's ``%s``. Key bounds are plain text parameters
compared with ``COLLATE "C"`` columns, so every comparison and ``ORDER BY`` is
UTF-8 byte order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._postgres_index_schema import ADD, Names, by_prefix, upsert

__all__ = ["COLUMNS", "SEEK_WORTH", "Queries", "key_range", "partial_usage", "queries"]

#: ``du`` of a prefix not ending in "/" seeks around the subdirectories it covers
#: where they hold this many keys each on average, else scans its key range.
SEEK_WORTH = 100
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
    #: ``du_children``, named parameters ``bucket``, ``prefix``, ``depth`` (its length)
    #: and ``high`` (its upper bound; the ``_open`` form has none); rows
    #: ``(child, objects, bytes)``, the first with child NULL for the prefix's own total.
    children: str
    children_open: str
    #: The buckets of the usage table (a skip scan), of the journal and of the checkpoints.
    buckets: str
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


def _children(n: Names, bounded: bool) -> str:
    # A loose index scan: from each child "p/seg/" seek to the first row past its
    # subtree (the child with its final "/" replaced by "0", the next byte), so the
    # cost grows with the number of children, not with the directories below them.
    high = " AND u.prefix < %(high)s" if bounded else ""
    child = "left(r.prefix, %(depth)s::int + strpos(substr(r.prefix, %(depth)s::int + 1), '/'))"
    return f"""WITH RECURSIVE walk(child) AS (
            SELECT {child} FROM (
                SELECT u.prefix FROM {n.usage} AS u
                WHERE u.bucket = %(bucket)s AND u.prefix > %(prefix)s{high}
                ORDER BY u.prefix LIMIT 1) AS r
            UNION ALL
            SELECT {child} FROM walk, LATERAL (
                SELECT u.prefix FROM {n.usage} AS u
                WHERE u.bucket = %(bucket)s AND u.prefix >= left(walk.child, -1) || '0'{high}
                ORDER BY u.prefix LIMIT 1) AS r)
        SELECT NULL, objects, bytes FROM {n.usage}
        WHERE bucket = %(bucket)s AND prefix = %(prefix)s
        UNION ALL
        SELECT w.child, u.objects, u.bytes FROM walk AS w
        JOIN {n.usage} AS u ON u.bucket = %(bucket)s AND u.prefix = w.child"""


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
    """``du`` of a prefix not ending in "/", named parameters as ``children``; one row.

    ``depth`` is the length of the prefix's directory (up to its last "/"),
    ``seek_worth`` the threshold below.

    The subdirectories of the prefix's directory that start with the prefix
    give their aggregate rows; the objects directly in that directory are
    summed over the gaps between them (one range probe per gap). Where those
    subdirectories hold under ``seek_worth`` keys on average, one scan of the
    whole key range is cheaper, and that is what runs (the other branch's
    subqueries are never evaluated).
    """
    entries, usage = n.entries, n.usage
    return f"""WITH kids AS (
            SELECT prefix AS child, objects, bytes FROM {usage}
            WHERE bucket = %(bucket)s AND prefix >= %(prefix)s AND prefix < %(high)s
            AND strpos(substr(prefix, %(depth)s::int + 1), '/') = length(prefix) - %(depth)s::int),
        totals AS (
            SELECT count(*) AS c, coalesce(sum(objects), 0) AS n, coalesce(sum(bytes), 0) AS s
            FROM kids),
        bounds AS (
            SELECT coalesce(lag(left(child, -1) || '0') OVER (ORDER BY child), %(prefix)s) AS lo,
                   child AS hi
            FROM kids
            UNION ALL
            SELECT coalesce((SELECT left(max(child), -1) || '0' FROM kids), %(prefix)s),
                   %(high)s),
        gaps AS (
            SELECT count(*) AS n, coalesce(sum(e.size), 0) AS s FROM bounds AS g
            JOIN {entries} AS e ON e.bucket = %(bucket)s AND e.key >= g.lo AND e.key < g.hi),
        whole AS (
            SELECT count(*) AS n, coalesce(sum(size), 0) AS s FROM {entries}
            WHERE bucket = %(bucket)s AND key >= %(prefix)s AND key < %(high)s)
        SELECT CASE WHEN t.n < %(seek_worth)s::bigint * t.c OR t.c = 0 THEN (SELECT n FROM whole)
                    ELSE t.n + (SELECT n FROM gaps) END,
               CASE WHEN t.n < %(seek_worth)s::bigint * t.c OR t.c = 0 THEN (SELECT s FROM whole)
                    ELSE t.s + (SELECT s FROM gaps) END
        FROM totals AS t"""


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
        children=_children(n, True),
        children_open=_children(n, False),
        buckets=buckets,
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
