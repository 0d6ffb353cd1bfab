"""`PostgresIndex`: the metadata index in a PostgreSQL database, shared by many processes.

For teams that already run PostgreSQL: one database (and one table prefix)
holds the index of several buckets for every process and machine that opens
it. See :mod:`._postgres_index_schema` for the tables and server-side
functions, :mod:`._postgres_index_queries` for the statements (every write
is one round trip), and docs/mirror-index.md.
"""

from __future__ import annotations

import builtins
import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, cast

from ..errors import InvalidURL, InvalidValue
from ..keys import check_key, check_prefix, prefix_upper_bound
from ..meta import Listing, Meta
from ..stores._sql_errors import ErrorTranslator
from ..stores._sql_schema import check_table_name
from ..stores._sql_setup import create_engine, url_arguments
from ..urls import StoreURL, parse_url
from . import _postgres_index_queries as _queries
from ._index_rows import meta_row, row_meta, rows_metas
from ._postgres_index_io import Runner
from ._postgres_index_queries import CEILING, COLUMNS, Queries, key_range, queries
from ._postgres_index_schema import drop_sql, names, prepare
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

__all__ = ["CHUNK", "DEFAULT_TABLE", "PostgresIndex"]

#: The table option's default: the tables are ``mirrorkv_index_entries`` and so on.
DEFAULT_TABLE = "mirrorkv_index"
#: ``record_many`` and ``forget_many`` commit every this many keys.
CHUNK = 10_000
#: Iterators read pages growing from the first size to the last.
_FIRST_PAGE = 64
_LAST_PAGE = 4096
_SCHEMES = ("postgresql", "postgres")

_Row = tuple[int, str, float, str | None, str | None, str]


def _row(meta: Meta) -> tuple[str, _Row]:
    """``(key, stored fields)`` of a record; PostgreSQL text holds no NUL, so refuse one."""
    key = check_key(meta.key)
    row = meta_row(meta)
    for text in row[1:]:
        if isinstance(text, str) and "\x00" in text:
            raise InvalidValue(f"a record of {key!r} holds a NUL character, which text cannot")
    return key, row


def _columns(rows: dict[str, Any]) -> list[list[Any]]:
    """The arrays the batch statements take: the keys sorted, then one list per stored field."""
    keys = sorted(rows)
    return [keys, *([rows[key][i] for key in keys] for i in range(6))]


def _directory_params(bucket: str, prefix: str) -> dict[str, Any]:
    """The named parameters of the reads over a prefix's subdirectories.

    ``directory`` is the prefix up to its last "/" (``""`` where it has
    none), ``level`` the number of "/" in that directory's subdirectories,
    ``low`` the prefix and ``high`` its upper bound (:data:`CEILING` where it
    has none).
    """
    directory = prefix[: prefix.rfind("/") + 1]
    return {
        "bucket": bucket,
        "low": prefix,
        "directory": directory,
        "level": directory.count("/") + 1,
        "high": prefix_upper_bound(prefix) or CEILING,
        "directory_high": prefix_upper_bound(directory) or CEILING,
    }


class PostgresIndex(MetadataIndex):
    """A metadata index in tables of a PostgreSQL database, for many processes at once.

    Writes: each is one transaction (and one round trip; ``replace_range``
    reads the range's keys first) that changes the entries and adds the
    differences to the aggregate rows of ``""`` and of every ``/`` prefix
    of their keys. ``record`` is one upsert statement
    that returns the size of the row it replaced (under that row's lock);
    ``record_many`` the same over arrays, one per :data:`CHUNK` records;
    ``forget``/``forget_many``, ``replace_range`` and ``compare_and_set``
    one call of a server-side function each (``forget_many`` per
    :data:`CHUNK` keys).
    Entry rows are locked in key order and aggregate rows in prefix order,
    so concurrent writers wait rather than deadlock; a write that still
    meets a deadlock or serialization failure runs again (up to 20 times).
    ``du`` is exact with any number of writers.

    Reads: ``du`` of ``""`` or a ``/`` prefix reads one row; of any other
    prefix, one query over the subdirectories it covers (see :meth:`du`).
    ``du_children`` and ``ls`` (delimiter ``/``) are one query each over
    the index of the aggregate rows by depth (see
    :mod:`._postgres_index_schema`).
    Iterators read pages of 64 growing to 4,096 in short queries (keyset
    pagination), holding no transaction between pages. ``find`` filters
    sizes, times, the content type and an outline of the glob in SQL and the
    patterns in Python, over the key range of their literal prefix; a glob
    ending in literal text that few keys end in reads only those keys,
    through the index of the keys reversed (see :meth:`_by_suffix`).

    Connections: a SQLAlchemy pool (psycopg 3) shared by the index's threads,
    each thread keeping the connection it took (the SQL store's plumbing).
    :class:`StoreUnavailable` where the server cannot be reached (a read
    retries once on a fresh connection after a disconnect),
    :class:`AccessDenied` for refused credentials. The password is never in
    ``repr``, :attr:`url` or an error message.
    """

    def __init__(
        self,
        url: str | StoreURL,
        *,
        table: str = DEFAULT_TABLE,
        pool_size: int = 5,
        max_overflow: int = 10,
        pool_timeout: float = 30.0,
        connect_timeout: float = 10.0,
    ) -> None:
        """Open (creating where absent) the index with table prefix ``table`` at ``url``.

        Raises :class:`InvalidURL` for a URL that is not ``postgresql://`` or
        ``postgres://``, :class:`InvalidValue` for a bad table name or pool
        setting, :class:`StoreUnavailable` / :class:`AccessDenied` as the
        server answers, :class:`MirrorKVError` for tables of that name that
        are not a mirrorkv index of this schema version.
        """
        parsed = parse_url(url) if isinstance(url, str) else url
        if parsed.scheme not in _SCHEMES:
            raise InvalidURL(f"PostgresIndex opens postgresql:// URLs, not {parsed.redacted()}")
        self._table = check_table_name(table)
        for name, number in (("pool_size", pool_size), ("max_overflow", max_overflow)):
            if isinstance(number, bool) or not isinstance(number, int) or number < 0:
                raise InvalidValue(f"{name} must be a whole number >= 0, not {number!r}")
        if pool_size < 1:
            raise InvalidValue("pool_size must be at least 1")
        for name, seconds in (("pool_timeout", pool_timeout), ("connect_timeout", connect_timeout)):
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
                raise InvalidValue(f"{name} must be a number of seconds > 0, not {seconds!r}")
        self._url = parsed
        self._where = f"{parsed.redacted()} (index {self._table})"
        self._errors = ErrorTranslator(self._where)
        self._names = names(self._table)
        self._sql: Queries = queries(self._names)
        engine = create_engine(
            parsed,
            "postgresql+psycopg",
            pool_size,
            max_overflow,
            float(pool_timeout),
            float(connect_timeout),
        )
        self._runner = runner = Runner(engine, self._errors, repr(self))
        self._read = runner.read
        self._write = runner.write
        try:
            self._by_suffix_index = runner.transaction(
                lambda cursor: prepare(cursor, self._names, self._where)
            )
        except BaseException:
            runner.close()
            raise

    @classmethod
    def from_url(cls, url: StoreURL, **options: Any) -> PostgresIndex:
        """``postgresql://user@host:port/db`` (or ``postgres://``).

        Options: ``table`` (the table prefix, default ``mirrorkv_index``),
        ``pool_size`` (5), ``max_overflow`` (10), ``pool_timeout`` and
        ``connect_timeout`` (seconds, 30 and 10). Anything else is an
        :class:`InvalidURL`.
        """
        return cls(url, **url_arguments(url, options))

    @property
    def table(self) -> str:
        """The table prefix (the option ``table``)."""
        return self._table

    @property
    def url(self) -> str:
        """The index's URL with the password redacted (``***``) and its table option."""
        return f"{self._url.redacted()}?table={self._table}"

    def __repr__(self) -> str:
        return f"PostgresIndex({self._url.redacted()!r}, table={self._table!r})"

    def close(self) -> None:
        """Give back every connection and close the pool; later calls raise MirrorKVError."""
        self._runner.close()

    def drop_tables(self) -> None:
        """Drop the index's tables and functions (everything in them), then close it."""

        def drop(cursor: Any) -> None:
            for statement in drop_sql(self._names):
                cursor.execute(statement)

        self._runner.transaction(drop)
        self.close()

    # -- writes ---------------------------------------------------------------

    def record(self, bucket: str, meta: Meta) -> None:
        """See :meth:`MetadataIndex.record`: one call of the server-side function."""
        check_bucket(bucket)
        key, row = _row(meta)
        self._write(self._sql.record_one, (bucket, key, *row, bucket, parent_prefixes(key)))

    def record_many(self, bucket: str, metas: Iterable[Meta]) -> None:
        """See :meth:`MetadataIndex.record_many`; one transaction every :data:`CHUNK` records."""
        check_bucket(bucket)
        iterator = iter(metas)
        while chunk := list(itertools.islice(iterator, CHUNK)):
            rows = dict(_row(meta) for meta in chunk)
            self._write(self._sql.record, (bucket, *_columns(rows), bucket))

    def compare_and_set(
        self, bucket: str, key: str, expected: tuple[str, str] | None, meta: Meta | None
    ) -> bool:
        """See :meth:`MetadataIndex.compare_and_set`: one call of the server-side function.

        The function locks the key's row (``FOR UPDATE``) and compares it;
        where there is none, it inserts with ``ON CONFLICT DO NOTHING``, so a
        concurrent insert of the key makes the swap fail rather than be
        overwritten. Entry, then aggregates in prefix order, as every writer.
        """
        check_bucket(bucket)
        check_swap(key, meta)
        want: tuple[str | None, ...] = (None, None)
        if expected is not None:
            if not isinstance(expected, tuple) or [type(part) for part in expected] != [str, str]:
                raise InvalidValue(f"expected is (etag, version) or None, not {expected!r}")
            if any("\x00" in part for part in expected):
                return False  # text holds no NUL, so no stored entry is that one
            want = expected
        row = (None,) * 6 if meta is None else _row(meta)[1]
        result = self._write(self._sql.swap, (bucket, key, *want, *row))
        return bool(result[0])

    def forget(self, bucket: str, key: str) -> None:
        """See :meth:`MetadataIndex.forget`."""
        check_bucket(bucket)
        self._write(self._sql.forget, (bucket, [check_key(key)]))

    def forget_many(self, bucket: str, keys: Iterable[str]) -> None:
        """See :meth:`MetadataIndex.forget_many`; one transaction every :data:`CHUNK` keys."""
        check_bucket(bucket)
        iterator = iter(keys)
        while chunk := list(itertools.islice(iterator, CHUNK)):
            for key in chunk:
                check_key(key)
            self._write(self._sql.forget, (bucket, sorted(set(chunk))))

    def replace_range(
        self,
        bucket: str,
        prefix: str,
        metas: Iterable[Meta],
        *,
        start_after: str | None = None,
        until: str | None = None,
    ) -> tuple[int, int, int]:
        """See :meth:`MetadataIndex.replace_range`: one read of the range's keys, one call.

        The call (one transaction) passes over the stored and the given keys
        in key order, locking each and comparing it with its record, so the
        counts and aggregates are those of the rows as locked. A key another
        writer adds to the range between the read and the call stays (as if
        written after this replace).
        """
        inside = replace_range_check(bucket, prefix, start_after, until)
        low, inclusive, high = key_bounds(prefix, start_after)
        rows: dict[str, _Row] = {}
        for meta in metas:
            key, row = _row(meta)
            rows[inside(key)] = row
        condition, args = key_range(low, inclusive, high)
        if until is not None:
            condition += " AND key <= %s"
            args.append(until)
        stored = self._read(self._sql.range_keys(condition), (bucket, *args))
        every: dict[str, Any] = dict.fromkeys((row[0] for row in stored), (None,) * 6)
        every.update(rows)
        counts = self._write(self._sql.replace_range, (bucket, *_columns(every)))
        return int(counts[0]), int(counts[1]), int(counts[2])

    # -- reads ----------------------------------------------------------------

    def get(self, bucket: str, key: str) -> Meta | None:
        """See :meth:`MetadataIndex.get`."""
        check_bucket(bucket)
        check_key(key)
        row = self._read(self._sql.get, (bucket, key), many=False)
        return None if row is None else row_meta(row)

    def _pages(
        self,
        bucket: str,
        low: str,
        inclusive: bool,
        high: str | None,
        filters: str = "",
        filter_args: tuple[Any, ...] = (),
        columns: str = COLUMNS,
    ) -> Iterator[tuple[Any, ...]]:
        """Rows in ``[low, high)`` passing ``filters`` (SQL), one short query per page."""
        page = _FIRST_PAGE
        while True:
            condition, args = key_range(low, inclusive, high)
            sql = self._sql.page(condition + filters, columns)
            rows = self._read(sql, (bucket, *args, *filter_args, page))
            yield from rows
            if len(rows) < page:
                return
            low, inclusive = rows[-1][0], False
            page = min(page * 4, _LAST_PAGE)

    def list(self, bucket: str, prefix: str = "", start_after: str | None = None) -> Iterator[Meta]:
        """See :meth:`MetadataIndex.list`."""
        check_listing(bucket, prefix, start_after)
        return map(row_meta, self._pages(bucket, *key_bounds(prefix, start_after)))

    def keys(self, bucket: str, prefix: str = "", start_after: str | None = None) -> Iterator[str]:
        """See :meth:`MetadataIndex.keys`: reads the keys only."""
        check_listing(bucket, prefix, start_after)
        rows = self._pages(bucket, *key_bounds(prefix, start_after), columns="key")
        return (row[0] for row in rows)

    def ls(self, bucket: str, prefix: str = "", delimiter: str = "/") -> Listing:
        """See :meth:`MetadataIndex.ls`.

        With the delimiter ``/``, one query: the common prefixes are the
        aggregate rows of the subdirectories (one range of the depth index),
        the objects those of the directory's own between them, read only
        where the directory holds some (see
        :func:`._postgres_index_queries.listing`). Any other delimiter skips
        over each common prefix with one seek.
        """
        check_bucket(bucket)
        check_prefix(prefix)
        check_delimiter(delimiter)
        if delimiter == "/":
            params = _directory_params(bucket, prefix)
            listing = Listing()
            for row in self._read(self._sql.listing, params):
                if row[0]:
                    listing.prefixes.append(row[1])
                else:
                    listing.objects.append(row_meta(row[1:]))
            return listing

        def read(low: str, inclusive: bool, high: str | None, limit: int) -> Sequence[Any]:
            condition, args = key_range(low, inclusive, high)
            rows: Sequence[Any] = self._read(self._sql.page(condition), (bucket, *args, limit))
            return rows

        return seek_listing(prefix, delimiter, read, rows_metas, _LAST_PAGE)

    def du(self, bucket: str, prefix: str = "") -> Usage:
        """See :meth:`MetadataIndex.du`: one row for ``""`` and ``/`` prefixes.

        Any other prefix, say ``logs/2024-0`` in the directory ``logs/``, is one
        query: the aggregate rows of the subdirectories it covers
        (``logs/2024-01/``, ...; one range of the depth index), and that is
        all where ``logs/`` holds no objects of its own (its total less its
        subdirectories' rows, read where they are not too many more than
        those covered). Otherwise the objects directly in ``logs/`` between
        those subdirectories are added (a range probe per gap), or, where
        the subdirectories hold under 10 keys each on average
        (:data:`._postgres_index_queries.SEEK_WORTH`), the key range is
        summed instead. Exact in every case.
        """
        check_bucket(bucket)
        check_prefix(prefix)
        if prefix == "" or prefix.endswith("/"):
            row = self._read(self._sql.usage, (bucket, prefix), many=False)
            return Usage() if row is None else Usage(int(row[0]), int(row[1]))
        if prefix_upper_bound(prefix) is None:
            row = self._read(self._sql.range_sum_open, (bucket, prefix), many=False)
        else:
            params = _directory_params(bucket, prefix)
            params["seek_worth"] = _queries.SEEK_WORTH
            row = self._read(self._sql.partial_usage, params, many=False)
        return Usage(int(row[0]), int(row[1]))

    def du_children(self, bucket: str, prefix: str = "") -> dict[str, Usage]:
        """See :meth:`MetadataIndex.du_children`: one query, one range of the depth index."""
        check_bucket(bucket)
        check_prefix(prefix)
        if prefix and not prefix.endswith("/"):
            raise InvalidValue(f"du_children takes '' or a prefix ending in '/', not {prefix!r}")
        total = Usage()
        children: dict[str, Usage] = {}
        for child, objects, size in self._read(
            self._sql.children, _directory_params(bucket, prefix)
        ):
            if child is None:
                total = Usage(int(objects), int(size))
            else:
                children[child] = Usage(int(objects), int(size))
        inner = Usage()
        for usage in children.values():
            inner = inner + usage
        direct = Usage(total.objects - inner.objects, total.bytes - inner.bytes)
        result: dict[str, Usage] = {"": direct} if direct.objects else {}
        result.update(children)
        return result

    def _find(self, bucket: str, query: FindQuery, low: str) -> Iterator[Meta]:
        """See :meth:`MetadataIndex.find`: bounds and a glob's outline in SQL; patterns here."""
        high = prefix_upper_bound(low)
        sql, args = query.sql("%s", "like")
        if "\x00" in low or any(isinstance(arg, str) and "\x00" in arg for arg in args):
            # A NUL in a glob's literal text, a regex's start or the content type:
            # no entry holds one (text cannot), and the server would refuse it.
            return iter(())
        suffix = "" if query.glob is None else glob_literal_suffix(query.glob)
        if self._by_suffix_index and len(suffix) >= SUFFIX_SHORTEST:
            rows = self._by_suffix(bucket, query, low, high, suffix)
            if rows is not None:
                return map(row_meta, rows)
        return query.keep(map(row_meta, self._pages(bucket, low, True, high, sql, args)))

    def _by_suffix(
        self, bucket: str, query: FindQuery, low: str, high: str | None, suffix: str
    ) -> builtins.list[Any] | None:
        """The rows ``find`` asks for, through ``T_entries_by_suffix``, in key order.

        Only where fewer keys in the bucket end in ``suffix`` than an eighth
        of the keys of the directory the range is in (one query: that
        directory's aggregate row and a count over the index, stopping at
        the bound); else ``None``, and the caller scans the key range.
        Over the whole bucket the rows are read with the keys, in one more
        query. Within a range, the keys ending so are read from the index
        alone (those in the range and ``LIKE`` the glob's outline), matched
        here, and the rows of those that match read by key, per
        :data:`CHUNK` keys. The queries are separate (no transaction is held
        between them), as a listing's pages are.
        """
        reverse_low = suffix[::-1]
        reverse_high = prefix_upper_bound(reverse_low) or CEILING
        directory = low[: low.rfind("/") + 1]
        bound, count = self._read(
            self._sql.suffix_count,
            (bucket, directory, SUFFIX_SHARE, SUFFIX_MOST, bucket, reverse_low, reverse_high),
            many=False,
        )
        if count > bound:
            return None
        outline = glob_prefilter(cast(str, query.glob), "like") or "%"
        filters, filter_args = query.sql("%s")
        where = (bucket, reverse_low, reverse_high, outline)
        keeps = query.keeps
        if not low:  # the whole bucket: each key ending so is read with its row at once
            rows = self._read(self._sql.suffix_rows(filters), (*where, *filter_args))
            return [row for row in rows if keeps(row[0])]
        found = self._read(self._sql.suffix_keys, (*where, low, high or CEILING))
        keys = sorted(key for (key,) in found if keeps(key))
        read = self._sql.rows_by_key(filters)
        rows = []
        for start in range(0, len(keys), CHUNK):
            rows += self._read(read, (bucket, keys[start : start + CHUNK], *filter_args))
        return rows

    # -- journal and checkpoints ---------------------------------------------

    def mark_dirty(self, bucket: str, keys: Iterable[str]) -> None:
        """See :meth:`MetadataIndex.mark_dirty`."""
        check_bucket(bucket)
        batch = sorted({check_key(key) for key in keys})
        if batch:
            self._write(self._sql.mark_dirty, (bucket, batch))

    def dirty(self, bucket: str) -> builtins.list[str]:
        """See :meth:`MetadataIndex.dirty`."""
        check_bucket(bucket)
        return [row[0] for row in self._read(self._sql.dirty, (bucket,))]

    def clear_dirty(self, bucket: str, keys: Iterable[str]) -> None:
        """See :meth:`MetadataIndex.clear_dirty`."""
        check_bucket(bucket)
        batch = sorted({check_key(key) for key in keys})
        if batch:
            self._write(self._sql.clear_dirty, (bucket, batch))

    def set_checkpoint(self, bucket: str, name: str, value: str | None) -> None:
        """See :meth:`MetadataIndex.set_checkpoint`."""
        check_bucket(bucket)
        if not isinstance(name, str) or not name or "\x00" in name:
            raise InvalidValue(f"a checkpoint name is a non-empty str without NUL, not {name!r}")
        if value is None:
            self._write(self._sql.delete_checkpoint, (bucket, name))
            return
        if not isinstance(value, str) or "\x00" in value:
            raise InvalidValue(f"a checkpoint value is a str without NUL or None, not {value!r}")
        self._write(self._sql.set_checkpoint, (bucket, name, value))

    def checkpoint(self, bucket: str, name: str) -> str | None:
        """See :meth:`MetadataIndex.checkpoint`."""
        check_bucket(bucket)
        if not isinstance(name, str) or "\x00" in name:
            raise InvalidValue(f"a checkpoint name is a str without NUL, not {name!r}")
        row = self._read(self._sql.checkpoint, (bucket, name), many=False)
        return None if row is None else str(row[0])

    def buckets(self) -> builtins.list[str]:
        """See :meth:`MetadataIndex.buckets`."""
        return [row[0] for row in self._read(self._sql.buckets, ())]
