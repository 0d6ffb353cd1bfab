"""`SQLiteIndex`: the default metadata index, one SQLite file in WAL mode.

See :mod:`._sqlite_index_schema` for the tables. Every write is one
``BEGIN IMMEDIATE`` transaction that reads the old entry, writes the new one
and adds the difference to the aggregate row of ``""`` and of every ``/``
prefix of the key, so ``du`` stays exact with any number of threads and
processes writing. Connections are the store's (one per thread, dropped
untouched in a forked child).
"""

from __future__ import annotations

import builtins
import functools
import itertools
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, cast

from ..errors import InvalidValue
from ..keys import check_key, check_prefix, prefix_upper_bound
from ..meta import Details, Listing, Meta
from ..stores._sqlite_connections import file_options, file_url
from ..stores._sqlite_io import ErrorTranslator, transaction
from ..urls import StoreURL
from ._index_rows import meta_row, row_meta, rows_metas
from ._sqlite_index_schema import COLUMNS, IndexConnections
from ._sqlite_index_usage import (
    children_rows,
    children_usage,
    key_range,
    leaf_rows,
    partial_usage,
    prefix_usage,
)
from .index import (
    SUFFIX_MOST,
    SUFFIX_SHARE,
    SUFFIX_SHORTEST,
    FindQuery,
    MetadataIndex,
    Usage,
    check_bucket,
    check_delimiter,
    check_listing,
    check_swap,
    glob_literal_suffix,
    glob_prefilter,
    key_bounds,
    parent_prefixes,
    replace_range_check,
    seek_listing,
)

__all__ = ["CHUNK", "SQLiteIndex"]

#: ``record_many`` and ``forget_many`` commit every this many keys.
CHUNK = 50_000
#: Rows read per query by key (``IN``), well under SQLite's limit on arguments.
_KEYS_PER_READ = 500
#: How long ``find`` keeps its choice of reading through the suffix index, and
#: for how many (bucket, directory, ending) at most before it forgets them all.
_PLAN_SECONDS = 10.0
_PLANS_KEPT = 256
#: Iterators read pages growing from the first size to the last.
_FIRST_PAGE = 64
_LAST_PAGE = 4096
#: Arguments: bucket, the key, its stored record (see ``meta_row``) and the key reversed.
_UPSERT = (
    f"INSERT OR REPLACE INTO entries (bucket, {COLUMNS}, rkey) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_OLD_SIZE = "SELECT size FROM entries WHERE bucket = ? AND key = ?"
_OLD_STATE = "SELECT size, etag, version FROM entries WHERE bucket = ? AND key = ?"
_DELETE = "DELETE FROM entries WHERE bucket = ? AND key = ?"
_ADD = (
    "INSERT INTO aggregates (bucket, prefix, objects, bytes) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (bucket, prefix) DO UPDATE"
    " SET objects = objects + excluded.objects, bytes = bytes + excluded.bytes"
)
_DROP_EMPTY = "DELETE FROM aggregates WHERE bucket = ? AND prefix = ? AND objects <= 0"


def _ending_in(bucket: str, suffix: str) -> tuple[str, builtins.list[Any]]:
    """``FROM`` and ``WHERE`` of the keys of ``bucket`` ending in ``suffix`` (one range of
    ``entries_by_suffix``), and their arguments."""
    reverse_low = suffix[::-1]
    reverse_high = prefix_upper_bound(reverse_low)
    source = "entries INDEXED BY entries_by_suffix WHERE bucket = ? AND rkey >= ?"
    args: builtins.list[Any] = [bucket, reverse_low]
    if reverse_high is not None:
        source += " AND rkey < ?"
        args.append(reverse_high)
    return source, args


def suffix_rows_query(
    bucket: str,
    suffix: str,
    outline: str | None,
    low: str,
    high: str | None,
    filters: str = "",
) -> tuple[str, builtins.list[Any]]:
    """The statement ``find`` reads a glob's rows with through the suffix index, and its
    arguments (the filters' own arguments follow them).

    The keys in ``[low, high)`` that end in ``suffix`` and match the GLOB
    ``outline`` come from the suffix index alone, then their rows by key:
    SQLite would otherwise read each row before testing its key.
    """
    source, args = _ending_in(bucket, suffix)
    if outline is not None:
        source += " AND key GLOB ?"
        args.append(outline)
    if low:
        source += " AND key >= ?"
        args.append(low)
    if high is not None:
        source += " AND key < ?"
        args.append(high)
    sql = (
        f"SELECT {COLUMNS} FROM entries WHERE bucket = ?"
        f" AND key IN (SELECT key FROM {source}){filters} ORDER BY key"
    )
    return sql, [bucket, *args]


class SQLiteIndex(MetadataIndex):
    """A metadata index in one SQLite file (``WITHOUT ROWID`` tables, WAL mode).

    ``record`` is one transaction of a few b-tree writes (the entry and one
    aggregate row per ``/`` level); ``du`` of ``""`` or of a prefix ending in
    ``/`` reads one aggregate row; ``du`` of any other prefix sums the sizes
    of its key range. ``record_many``/``forget_many`` commit every
    :data:`CHUNK` keys. Writers wait up to ``timeout`` seconds for another
    writer's lock, then raise :class:`StoreUnavailable`. Durability is the
    store's: ``fsync=False`` survives a killed process, ``fsync=True`` also
    power loss.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, fsync: bool = False, timeout: float = 30.0
    ) -> None:
        """Open (creating where absent) the index in the SQLite file ``path``.

        Raises :class:`MirrorKVError` for a file that is not a mirrorkv index.
        """
        raw = os.fspath(path)
        if not isinstance(raw, str) or raw in ("", ":memory:") or raw.startswith("file:"):
            raise InvalidValue(f"SQLiteIndex takes the path of a file, not {raw!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
            raise InvalidValue(f"timeout must be a number of seconds >= 0, not {timeout!r}")
        self._path = os.path.abspath(raw)
        directory = os.path.dirname(self._path)
        os.makedirs(directory, exist_ok=True)
        self._fsync = bool(fsync)
        self._timeout = float(timeout)
        self._errors = ErrorTranslator(self._path)
        self._connections = IndexConnections(
            self._path, fsync=self._fsync, timeout=self._timeout, errors=self._errors
        )
        #: (bucket, directory, ending) -> (until when, whether the suffix index pays).
        self._suffix_plans: dict[tuple[str, str, str], tuple[float, bool]] = {}
        self._conn()  # create or check the schema now, not at the first call

    @classmethod
    def from_url(cls, url: StoreURL, **options: Any) -> SQLiteIndex:
        """``sqlite:///abs/path.db`` or ``sqlite:rel/path.db``; options ``fsync``, ``timeout``."""
        path, fsync, timeout = file_options(url, options)
        return cls(path, fsync=fsync, timeout=timeout)

    @property
    def path(self) -> str:
        """The absolute path of the index file."""
        return self._path

    @property
    def url(self) -> str:
        """A URL that reopens this index with the same options."""
        return file_url(self._path, self._fsync, self._timeout)

    def __repr__(self) -> str:
        return f"SQLiteIndex({self._path!r})"

    def _conn(self) -> sqlite3.Connection:
        try:
            conn: sqlite3.Connection = self._connections.local.conn
        except AttributeError:
            conn = self._connections.connect()
        return conn

    def close(self) -> None:
        """Close every thread's connection; later calls raise :class:`MirrorKVError`."""
        self._connections.close()

    # -- writes ---------------------------------------------------------------

    def record(self, bucket: str, meta: Meta) -> None:
        """See :meth:`MetadataIndex.record`."""
        check_bucket(bucket)
        key = check_key(meta.key)
        row = meta_row(meta)
        with self._errors:
            conn = self._conn()
            with transaction(conn):
                old = conn.execute(_OLD_SIZE, (bucket, key)).fetchone()
                conn.execute(_UPSERT, (bucket, key, *row, key[::-1]))
                if old is None:
                    objects, size = 1, row[0]
                else:
                    objects, size = 0, row[0] - old[0]
                if objects or size:
                    conn.executemany(
                        _ADD, [(bucket, p, objects, size) for p in parent_prefixes(key)]
                    )

    def record_many(self, bucket: str, metas: Iterable[Meta]) -> None:
        """See :meth:`MetadataIndex.record_many`; commits every :data:`CHUNK` records."""
        check_bucket(bucket)
        iterator = iter(metas)
        while chunk := list(itertools.islice(iterator, CHUNK)):
            rows: dict[str, tuple[Any, ...]] = {}
            for meta in chunk:
                rows[check_key(meta.key)] = meta_row(meta)
            with self._errors:
                conn = self._conn()
                with transaction(conn):
                    deltas: dict[str, list[int]] = {}
                    for key, row in rows.items():
                        old = conn.execute(_OLD_SIZE, (bucket, key)).fetchone()
                        objects, size = (1, row[0]) if old is None else (0, row[0] - old[0])
                        if objects or size:
                            _count(deltas, key, objects, size)
                    conn.executemany(_UPSERT, [(bucket, k, *r, k[::-1]) for k, r in rows.items()])
                    self._apply(conn, bucket, deltas)

    @staticmethod
    def _apply(conn: sqlite3.Connection, bucket: str, deltas: dict[str, list[int]]) -> None:
        conn.executemany(_ADD, [(bucket, p, d[0], d[1]) for p, d in deltas.items() if any(d)])
        conn.executemany(_DROP_EMPTY, [(bucket, p) for p, d in deltas.items() if d[0] < 0])

    def forget(self, bucket: str, key: str) -> None:
        """See :meth:`MetadataIndex.forget`."""
        self.forget_many(bucket, (key,))

    def forget_many(self, bucket: str, keys: Iterable[str]) -> None:
        """See :meth:`MetadataIndex.forget_many`; commits every :data:`CHUNK` keys."""
        check_bucket(bucket)
        iterator = iter(keys)
        while chunk := list(itertools.islice(iterator, CHUNK)):
            for key in chunk:
                check_key(key)
            with self._errors:
                conn = self._conn()
                with transaction(conn):
                    self._forget(conn, bucket, dict.fromkeys(chunk))

    def _forget(self, conn: sqlite3.Connection, bucket: str, keys: Iterable[str]) -> int:
        deltas: dict[str, list[int]] = {}
        removed = 0
        for key in keys:
            old = conn.execute(_OLD_SIZE, (bucket, key)).fetchone()
            if old is None:
                continue
            removed += 1
            conn.execute(_DELETE, (bucket, key))
            _count(deltas, key, -1, -old[0])
        self._apply(conn, bucket, deltas)
        return removed

    def compare_and_set(
        self, bucket: str, key: str, expected: tuple[str, str] | None, meta: Meta | None
    ) -> bool:
        """See :meth:`MetadataIndex.compare_and_set`: one ``BEGIN IMMEDIATE`` transaction."""
        return not self.compare_and_set_many(bucket, [(key, expected, meta)])

    def compare_and_set_many(
        self, bucket: str, changes: Iterable[tuple[str, tuple[str, str] | None, Meta | None]]
    ) -> builtins.list[str]:
        """See :meth:`MetadataIndex.compare_and_set_many`: one ``BEGIN IMMEDIATE`` transaction."""
        check_bucket(bucket)
        rows: builtins.list[tuple[str, tuple[str, str] | None, tuple[Any, ...] | None]] = []
        for key, expected, meta in changes:
            check_swap(key, meta)
            rows.append((key, expected, None if meta is None else meta_row(meta)))
        lost: builtins.list[str] = []
        with self._errors:
            conn = self._conn()
            with transaction(conn):
                deltas: dict[str, builtins.list[int]] = {}
                for key, expected, row in rows:
                    old = conn.execute(_OLD_STATE, (bucket, key)).fetchone()
                    if (None if old is None else (old[1], old[2])) != expected:
                        lost.append(key)
                        continue
                    if row is None:
                        if old is None:
                            continue
                        conn.execute(_DELETE, (bucket, key))
                        objects, size = -1, -old[0]
                    else:
                        conn.execute(_UPSERT, (bucket, key, *row, key[::-1]))
                        objects, size = (1, row[0]) if old is None else (0, row[0] - old[0])
                    if objects or size:
                        _count(deltas, key, objects, size)
                self._apply(conn, bucket, deltas)
        return lost

    def replace_range(
        self,
        bucket: str,
        prefix: str,
        metas: Iterable[Meta],
        *,
        start_after: str | None = None,
        until: str | None = None,
    ) -> tuple[int, int, int]:
        """See :meth:`MetadataIndex.replace_range`."""
        inside = replace_range_check(bucket, prefix, start_after, until)
        low, inclusive, high = key_bounds(prefix, start_after)
        rows = {inside(meta.key): meta_row(meta) for meta in metas}
        where, args = key_range(bucket, low, inclusive, high)
        if until is not None:
            where += " AND key <= ?"
            args.append(until)
        added = changed = 0
        with self._errors:
            conn = self._conn()
            with transaction(conn):
                stored = {
                    row[0]: row[1:]
                    for row in conn.execute(f"SELECT {COLUMNS} FROM entries WHERE {where}", args)
                }
                self._forget(conn, bucket, [k for k in stored if k not in rows])
                deltas: dict[str, list[int]] = {}
                writes = []
                for key, row in rows.items():
                    old = stored.get(key)
                    if old == row:
                        continue
                    writes.append((bucket, key, *row, key[::-1]))
                    if old is None:
                        added += 1
                        objects, size = 1, row[0]
                    else:
                        changed += 1
                        objects, size = 0, row[0] - old[0]
                    if objects or size:
                        _count(deltas, key, objects, size)
                conn.executemany(_UPSERT, writes)
                self._apply(conn, bucket, deltas)
        return added, changed, len([k for k in stored if k not in rows])

    # -- reads ----------------------------------------------------------------

    def get(self, bucket: str, key: str) -> Meta | None:
        """See :meth:`MetadataIndex.get`."""
        check_bucket(bucket)
        check_key(key)
        with self._errors:
            row = (
                self._conn()
                .execute(
                    f"SELECT {COLUMNS} FROM entries WHERE bucket = ? AND key = ?", (bucket, key)
                )
                .fetchone()
            )
        return None if row is None else row_meta(row)

    def get_many(self, bucket: str, keys: Sequence[str]) -> dict[str, Meta]:
        """See :meth:`MetadataIndex.get_many`: one query per 500 keys, in one snapshot."""
        check_bucket(bucket)
        wanted = [check_key(key) for key in keys]
        rows: builtins.list[Any] = []
        with self._errors:
            conn = self._conn()
            with transaction(conn, "DEFERRED"):
                for start in range(0, len(wanted), _KEYS_PER_READ):
                    chunk = wanted[start : start + _KEYS_PER_READ]
                    marks = ", ".join("?" * len(chunk))
                    sql = f"SELECT {COLUMNS} FROM entries WHERE bucket = ? AND key IN ({marks})"
                    rows += conn.execute(sql, (bucket, *chunk)).fetchall()
        return {meta[0]: meta for meta in rows_metas(rows)}

    def _row_pages(
        self,
        bucket: str,
        low: str,
        inclusive: bool,
        high: str | None,
        filters: str = "",
        filter_args: tuple[Any, ...] = (),
    ) -> Iterator[builtins.list[Any]]:
        """Rows of entries in ``[low, high)`` passing ``filters`` (SQL), a short query a page."""
        page = _FIRST_PAGE
        while True:
            where, args = key_range(bucket, low, inclusive, high)
            sql = f"SELECT {COLUMNS} FROM entries WHERE {where}{filters} ORDER BY key LIMIT ?"
            with self._errors:
                rows = self._conn().execute(sql, (*args, *filter_args, page)).fetchall()
            if rows:
                yield rows
            if len(rows) < page:
                return
            low, inclusive = rows[-1][0], False
            page = min(page * 4, _LAST_PAGE)

    def list(self, bucket: str, prefix: str = "", start_after: str | None = None) -> Iterator[Meta]:
        """See :meth:`MetadataIndex.list`."""
        return itertools.chain.from_iterable(self.list_pages(bucket, prefix, start_after))

    def list_pages(
        self,
        bucket: str,
        prefix: str = "",
        start_after: str | None = None,
        listed: Details | None = None,
    ) -> Iterator[builtins.list[Meta]]:
        """See :meth:`MetadataIndex.list_pages`: a page is one query's rows."""
        check_listing(bucket, prefix, start_after)
        pages = self._row_pages(bucket, *key_bounds(prefix, start_after))
        return (rows_metas(rows, listed) for rows in pages)

    def keys(self, bucket: str, prefix: str = "", start_after: str | None = None) -> Iterator[str]:
        """See :meth:`MetadataIndex.keys`."""
        check_listing(bucket, prefix, start_after)
        return self._key_pages(bucket, *key_bounds(prefix, start_after))

    def _key_pages(self, bucket: str, low: str, inclusive: bool, high: str | None) -> Iterator[str]:
        page = _FIRST_PAGE
        while True:
            where, args = key_range(bucket, low, inclusive, high)
            sql = f"SELECT key FROM entries WHERE {where} ORDER BY key LIMIT ?"
            with self._errors:
                keys = [row[0] for row in self._conn().execute(sql, (*args, page))]
            yield from keys
            if len(keys) < page:
                return
            low, inclusive = keys[-1], False
            page = min(page * 4, _LAST_PAGE)

    def ls(self, bucket: str, prefix: str = "", delimiter: str = "/") -> Listing:
        """See :meth:`MetadataIndex.ls` and :meth:`ls_listed`."""
        return self.ls_listed(bucket, prefix, delimiter)

    def ls_listed(
        self, bucket: str, prefix: str = "", delimiter: str = "/", listed: Details | None = None
    ) -> Listing:
        """See :meth:`MetadataIndex.ls_listed`.

        A directory (``""`` or a prefix ending in ``/``, delimiter ``/``)
        without subdirectories is its key range, read in one query that
        also checks there are none; one without objects of its own is listed
        from its subdirectories' aggregate rows in one query. Otherwise the
        listing reads the keys and skips over each common prefix with one seek.
        """
        check_bucket(bucket)
        check_prefix(prefix)
        check_delimiter(delimiter)
        if delimiter == "/" and (prefix == "" or prefix.endswith("/")):
            with self._errors:
                conn = self._conn()
                objects = conn.execute(*leaf_rows(bucket, prefix)).fetchall()
                if objects:  # no subdirectories: every key under the prefix is at this level
                    return Listing(rows_metas(objects, listed))
                with transaction(conn, "DEFERRED"):
                    total = prefix_usage(conn, bucket, prefix).objects
                    rows = children_rows(conn, bucket, prefix) if total else []
            if total == sum(row[1] for row in rows):  # no objects directly in the directory
                return Listing([], [row[0] for row in rows])

        def read(low: str, inclusive: bool, high: str | None, limit: int) -> list[Any]:
            where, args = key_range(bucket, low, inclusive, high)
            sql = f"SELECT {COLUMNS} FROM entries WHERE {where} ORDER BY key LIMIT ?"
            with self._errors:
                return self._conn().execute(sql, (*args, limit)).fetchall()

        return seek_listing(
            prefix, delimiter, read, functools.partial(rows_metas, listed=listed), _LAST_PAGE
        )

    def du(self, bucket: str, prefix: str = "") -> Usage:
        """See :meth:`MetadataIndex.du`: one row for ``""`` and ``/`` prefixes.

        Any other prefix, say ``logs/2024-0`` under the directory ``logs/``,
        adds the aggregate rows of the directories it covers
        (``logs/2024-01/``, ...) to the range sums of the objects directly in
        ``logs/`` between them, in one read snapshot: its cost grows with
        the number of such directories and direct objects, not with the
        number of keys inside the directories. When those directories are
        small (under 100 keys each on average) it sums the key range instead.
        """
        check_bucket(bucket)
        check_prefix(prefix)
        with self._errors:
            conn = self._conn()
            if prefix == "" or prefix.endswith("/"):
                return prefix_usage(conn, bucket, prefix)
            with transaction(conn, "DEFERRED"):
                return partial_usage(conn, bucket, prefix)

    def du_children(self, bucket: str, prefix: str = "") -> dict[str, Usage]:
        """See :meth:`MetadataIndex.du_children`: one seek per child prefix."""
        check_bucket(bucket)
        check_prefix(prefix)
        if prefix and not prefix.endswith("/"):
            raise InvalidValue(f"du_children takes '' or a prefix ending in '/', not {prefix!r}")
        with self._errors:
            conn = self._conn()
            # One read transaction: the total and the children come from one snapshot.
            with transaction(conn, "DEFERRED"):
                return children_usage(conn, bucket, prefix)

    def _find(self, bucket: str, query: FindQuery, low: str) -> Iterator[Meta]:
        """See :meth:`MetadataIndex.find`: bounds and a glob's outline in SQL; patterns here."""
        high = prefix_upper_bound(low)
        suffix = "" if query.glob is None else glob_literal_suffix(query.glob)
        if len(suffix) >= SUFFIX_SHORTEST:
            # The rows are read by key: no glob there, or SQLite would range over the keys.
            rows = self._by_suffix(bucket, query, low, high, suffix, *query.sql("?"))
            if rows is not None:
                return iter(rows_metas(rows, query.listed))
        sql, args = query.sql("?", "glob")
        pages = self._row_pages(bucket, low, True, high, sql, args)
        if query.patterns:
            keeps = query.keeps
            pages = ([row for row in rows if keeps(row[0])] for rows in pages)
        return itertools.chain.from_iterable(rows_metas(rows, query.listed) for rows in pages)

    _find_fills_listed = True

    def _by_suffix(
        self,
        bucket: str,
        query: FindQuery,
        low: str,
        high: str | None,
        suffix: str,
        filters: str,
        filter_args: tuple[Any, ...],
    ) -> builtins.list[Any] | None:
        """The rows ``find`` asks for, through ``entries_by_suffix``, in key order.

        Only where fewer keys in the bucket end in ``suffix`` than an eighth
        of the keys of the directory the range is in (counted on the index alone,
        stopping at that bound); else ``None``, and the caller scans the
        key range. The keys in the range that end so and fit the glob's
        outline come from that index alone, then their rows by key, in one
        statement. The choice is a plan, kept for a few seconds: it decides
        how fast the answer comes, never what it is.
        """
        source, args = _ending_in(bucket, suffix)
        directory = low[: low.rfind("/") + 1]
        plan = (bucket, directory, suffix)
        known = self._suffix_plans.get(plan)
        with self._errors:
            conn = self._conn()
            if known is None or known[0] < time.monotonic():
                with transaction(conn, "DEFERRED"):
                    # The keys of the directory the range is in: an upper bound of the range's.
                    scope = prefix_usage(conn, bucket, directory).objects
                    bound = min(scope // SUFFIX_SHARE, SUFFIX_MOST)
                    count = f"SELECT count(*) FROM (SELECT 1 FROM {source} LIMIT ?)"
                    worth = conn.execute(count, (*args, bound + 1)).fetchone()[0] <= bound
                if len(self._suffix_plans) >= _PLANS_KEPT:
                    self._suffix_plans.clear()
                self._suffix_plans[plan] = (time.monotonic() + _PLAN_SECONDS, worth)
            else:
                worth = known[1]
            if not worth:
                return None
            outline = glob_prefilter(cast(str, query.glob), "glob")
            sql, args = suffix_rows_query(bucket, suffix, outline, low, high, filters)
            found = conn.execute(sql, (*args, *filter_args))
            keeps = query.keeps
            return [row for row in found if keeps(row[0])]

    # -- journal and checkpoints ---------------------------------------------

    def mark_dirty(self, bucket: str, keys: Iterable[str]) -> None:
        """See :meth:`MetadataIndex.mark_dirty`."""
        check_bucket(bucket)
        rows = [(bucket, check_key(key)) for key in keys]
        with self._errors:
            conn = self._conn()
            with transaction(conn):
                conn.executemany("INSERT OR IGNORE INTO dirty VALUES (?, ?)", rows)

    def dirty(self, bucket: str) -> builtins.list[str]:
        """See :meth:`MetadataIndex.dirty`."""
        check_bucket(bucket)
        with self._errors:
            rows = self._conn().execute(
                "SELECT key FROM dirty WHERE bucket = ? ORDER BY key", (bucket,)
            )
            return [row[0] for row in rows]

    def clear_dirty(self, bucket: str, keys: Iterable[str]) -> None:
        """See :meth:`MetadataIndex.clear_dirty`."""
        check_bucket(bucket)
        rows = [(bucket, check_key(key)) for key in keys]
        with self._errors:
            conn = self._conn()
            with transaction(conn):
                conn.executemany("DELETE FROM dirty WHERE bucket = ? AND key = ?", rows)

    def set_checkpoint(self, bucket: str, name: str, value: str | None) -> None:
        """See :meth:`MetadataIndex.set_checkpoint`."""
        check_bucket(bucket)
        if not isinstance(name, str) or not name:
            raise InvalidValue(f"a checkpoint name is a non-empty str, not {name!r}")
        if value is not None and not isinstance(value, str):
            raise InvalidValue(f"a checkpoint value is a str or None, not {value!r}")
        with self._errors:
            conn = self._conn()
            if value is None:
                conn.execute(
                    "DELETE FROM checkpoints WHERE bucket = ? AND name = ?", (bucket, name)
                )
            else:
                conn.execute(
                    "INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?)", (bucket, name, value)
                )

    def checkpoint(self, bucket: str, name: str) -> str | None:
        """See :meth:`MetadataIndex.checkpoint`."""
        check_bucket(bucket)
        with self._errors:
            row = (
                self._conn()
                .execute(
                    "SELECT value FROM checkpoints WHERE bucket = ? AND name = ?", (bucket, name)
                )
                .fetchone()
            )
        return None if row is None else str(row[0])

    def buckets(self) -> builtins.list[str]:
        """See :meth:`MetadataIndex.buckets`."""
        with self._errors:
            rows = self._conn().execute(
                "SELECT bucket FROM aggregates WHERE prefix = ''"
                " UNION SELECT bucket FROM dirty UNION SELECT bucket FROM checkpoints"
                " ORDER BY 1"
            )
            return [row[0] for row in rows]


def _count(deltas: dict[str, list[int]], key: str, objects: int, size: int) -> None:
    """Add a change of ``objects`` and ``size`` at ``key`` to the delta of each of its levels."""
    for prefix in parent_prefixes(key):
        delta = deltas.setdefault(prefix, [0, 0])
        delta[0] += objects
        delta[1] += size
