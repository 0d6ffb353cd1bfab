"""The SQLite index's usage queries: ``du`` at any prefix and ``du_children``.

Each function takes the calling thread's connection and runs inside the
caller's read transaction, so what it adds up comes from one snapshot.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from ..keys import prefix_upper_bound
from ._sqlite_index_schema import COLUMNS, DEPTH
from .index import Usage

__all__ = [
    "SEEK_WORTH",
    "children_rows",
    "children_usage",
    "partial_usage",
    "prefix_usage",
    "range_sum",
    "key_range",
    "leaf_rows",
]

#: ``du`` of a prefix not ending in "/" seeks around the directories it covers when
#: they hold this many keys each on average, else scans the key range: measured, a
#: seek costs about as much as summing 60-80 keys.
SEEK_WORTH = 100
#: ``du`` of a partial prefix reads up to this many subdirectory rows, and this many
#: per subdirectory it covers, to learn whether their directory holds objects of its own.
_CHECK_AT_LEAST = 64
_CHECK_PER_COVERED = 4
#: How many subdirectories ``du`` seeks before it judges whether seeking pays.
_PROBE = 8

_USAGE = "SELECT objects, bytes FROM aggregates WHERE bucket = ? AND prefix = ?"
_CHILD = "SELECT prefix, objects, bytes FROM aggregates WHERE bucket = ?"
#: The subdirectories (rows of one depth) of a directory from a prefix on, one index range.
_LEVEL = (
    "FROM aggregates INDEXED BY aggregates_by_depth"
    f" WHERE bucket = ? AND {DEPTH} = ? AND prefix >= ?"
)


def key_range(bucket: str, low: str, inclusive: bool, high: str | None) -> tuple[str, list[Any]]:
    """The SQL condition and arguments of ``bucket``'s keys from ``low`` up to below ``high``."""
    condition = "bucket = ? AND key >= ?" if inclusive else "bucket = ? AND key > ?"
    args: list[Any] = [bucket, low]
    if high is not None:
        condition += " AND key < ?"
        args.append(high)
    return condition, args


def _usage(row: tuple[int, int] | None) -> Usage:
    return Usage() if row is None else Usage(row[0], row[1])


def prefix_usage(conn: sqlite3.Connection, bucket: str, prefix: str) -> Usage:
    """The aggregate row of ``""`` or of a prefix ending in ``/`` (zero when absent)."""
    return _usage(conn.execute(_USAGE, (bucket, prefix)).fetchone())


def range_sum(conn: sqlite3.Connection, bucket: str, low: str | None, high: str | None) -> Usage:
    """The entries from ``low`` (inclusive; ``None``: none at all) below ``high``, summed."""
    if low is None:
        return Usage()
    condition, args = key_range(bucket, low, True, high)
    row = conn.execute(f"SELECT count(*), total(size) FROM entries WHERE {condition}", args)
    count, size = row.fetchone()
    return Usage(int(count), int(size))


def _level_range(bucket: str, level: int, low: str, high: str | None) -> tuple[str, list[Any]]:
    """The condition and arguments of the aggregate rows of ``level`` slashes in ``[low, high)``."""
    return (_LEVEL if high is None else _LEVEL + " AND prefix < ?"), (
        [bucket, level, low] if high is None else [bucket, level, low, high]
    )


def _level_sum(
    conn: sqlite3.Connection,
    bucket: str,
    level: int,
    low: str,
    high: str | None,
    most: int | None = None,
) -> tuple[Usage, int]:
    """The sum of the aggregate rows of ``level`` in ``[low, high)`` and how many there are.

    With ``most``, reads at most ``most + 1`` rows: a count above ``most``
    means the sum is of those only.
    """
    where, args = _level_range(bucket, level, low, high)
    if most is None:
        sql = f"SELECT total(objects), total(bytes), count(*) {where}"
    else:
        sql = f"SELECT total(objects), total(bytes), count(*) FROM (SELECT * {where} LIMIT ?)"
        args.append(most + 1)
    objects, size, rows = conn.execute(sql, args).fetchone()
    return Usage(int(objects), int(size)), rows


def partial_usage(conn: sqlite3.Connection, bucket: str, prefix: str) -> Usage:
    """``du`` of a prefix not ending in ``/``: its subdirectories' rows plus the objects between.

    The subdirectories are those of the directory the prefix is in whose
    names start with the rest of the prefix: one range of the
    ``aggregates_by_depth`` index, summed in one query. Then whether the
    directory holds objects of its own (its total minus all its
    subdirectories, read only where they are not many more than those
    covered); only where it may is the key range read around the
    subdirectories (:func:`_around_subdirectories`).
    """
    directory = prefix[: prefix.rfind("/") + 1]
    level = directory.count("/") + 1
    high = prefix_upper_bound(prefix)
    inside, covered = _level_sum(conn, bucket, level, prefix, high)
    most = _CHECK_AT_LEAST + _CHECK_PER_COVERED * covered
    every, rows = _level_sum(conn, bucket, level, directory, prefix_upper_bound(directory), most)
    if rows <= most and (prefix_usage(conn, bucket, directory) - every).objects == 0:
        return inside
    return _around_subdirectories(conn, bucket, prefix, len(directory), high)


def _around_subdirectories(
    conn: sqlite3.Connection, bucket: str, prefix: str, depth: int, high: str | None
) -> Usage:
    """The subdirectories' rows plus the range sums of the objects between them.

    Each subdirectory is found with one seek in the aggregates (its row
    sorts before any deeper one), so the cost follows the number of
    subdirectories, not of the keys below them. Where the first few turn out
    small (under :data:`SEEK_WORTH` keys on average), the rest of the range
    is summed instead.
    """
    bound = "" if high is None else " AND prefix < ?"
    seek = f"{_CHILD} AND prefix >= ?{bound} ORDER BY prefix LIMIT 1"
    total = Usage()
    low: str | None = prefix
    seen = 0
    while low is not None:
        if seen >= _PROBE and total.objects < SEEK_WORTH * seen:
            break  # small subdirectories: one range sum beats a seek each
        row = conn.execute(seek, (bucket, low) if high is None else (bucket, low, high)).fetchone()
        if row is None:
            break
        child = row[0][: row[0].index("/", depth) + 1]
        usage = Usage(row[1], row[2]) if child == row[0] else prefix_usage(conn, bucket, child)
        total = total + usage + range_sum(conn, bucket, low, child)
        low = prefix_upper_bound(child)
        seen += 1
    return total + range_sum(conn, bucket, low, high)


def children_rows(conn: sqlite3.Connection, bucket: str, prefix: str) -> list[tuple[str, int, int]]:
    """``(subdirectory, objects, bytes)`` of each subdirectory of ``""`` or a ``/`` prefix.

    One range of the depth index, in key order.
    """
    where, args = _level_range(bucket, prefix.count("/") + 1, prefix, prefix_upper_bound(prefix))
    return conn.execute(f"SELECT prefix, objects, bytes {where} ORDER BY prefix", args).fetchall()


def leaf_rows(bucket: str, prefix: str) -> tuple[str, list[Any]]:
    """A query of the entries under ``""`` or a ``/`` prefix, in key order, none if it has
    subdirectories (one statement: one snapshot), and its arguments."""
    high = prefix_upper_bound(prefix)
    where, args = key_range(bucket, prefix, True, high)
    level, level_args = _level_range(bucket, prefix.count("/") + 1, prefix, high)
    # A LIMIT of 0 where a subdirectory exists: a condition in WHERE would be tested per row.
    sql = (
        f"SELECT {COLUMNS} FROM entries WHERE {where} ORDER BY key"
        f" LIMIT CASE WHEN EXISTS (SELECT 1 {level}) THEN 0 ELSE -1 END"
    )
    return sql, [*args, *level_args]


def children_usage(conn: sqlite3.Connection, bucket: str, prefix: str) -> dict[str, Usage]:
    """``du_children`` of ``""`` or a prefix ending in ``/``: one range of the depth index."""
    total = prefix_usage(conn, bucket, prefix)
    rows = children_rows(conn, bucket, prefix) if total.objects else []
    direct = Usage(
        total.objects - sum(row[1] for row in rows), total.bytes - sum(row[2] for row in rows)
    )
    result: dict[str, Usage] = {"": direct} if direct.objects else {}
    result.update((child, Usage(objects, size)) for child, objects, size in rows)
    return result
