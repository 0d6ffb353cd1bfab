"""`SQLStore`: a store in one table of PostgreSQL or MySQL/MariaDB.

Opened by URL: ``postgresql://user:password@host:5432/db?table=kv`` (also
``postgres://``), ``mysql://...`` or ``mariadb://...``. It runs through
SQLAlchemy 2 (its engine, connection pool and Core schema) with psycopg 3
for PostgreSQL and PyMySQL for MySQL and MariaDB; the hot paths execute
prepared SQL on the pooled driver connections directly. See
:mod:`._sql_schema` for the tables and docs/stores/sql.md for the figures.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, BinaryIO, TypeVar, cast

from ..errors import InvalidURL, InvalidValue, KeyNotFound, MirrorKVError, PreconditionFailed
from ..keys import check_key, check_keys, prefix_upper_bound
from ..meta import DEFAULT_CONTENT_TYPE, NO_METADATA, Meta
from ..store import (
    CHUNK_SIZE,
    DEFAULT_PUT_OPTIONS,
    Capability,
    PutOptions,
    Store,
    check_counter_arguments,
    check_precondition,
    parse_counter,
)
from ..urls import StoreURL, parse_url
from ._sql_errors import ErrorTranslator, is_disconnect, is_duplicate, is_retryable_conflict
from ._sql_io import ChunkReader, Lease, Leases, Once, batches, split_chunks
from ._sql_rows import dump_metadata, new_blob_id, next_version, row_meta, text
from ._sql_schema import (
    INLINE_LIMIT,
    SCHEMA_VERSION,
    Statements,
    check_table_name,
    expand_in,
    list_sql,
    statements,
    tables,
)
from ._sql_setup import DRIVERS, create_engine, prepare, url_arguments

__all__ = ["DEFAULT_TABLE", "INLINE_LIMIT", "SCHEMA_VERSION", "SQLStore"]

#: The table a store uses unless told otherwise.
DEFAULT_TABLE = "mirrorkv"

#: Listing pages grow from the first to the last size, so an early ``break`` stays cheap.
_FIRST_PAGE = 100
_LAST_PAGE = 2000
#: How often a transaction that met a deadlock or a concurrent insert runs again.
_ATTEMPTS = 20

_new_meta = tuple.__new__
_now = time.time
_T = TypeVar("_T")


class SQLStore(Store):
    """A store in one table of a PostgreSQL or MySQL/MariaDB database.

    Layout: one row per key with its metadata and, for values of at most
    :data:`INLINE_LIMIT` bytes, the value itself; a larger value is kept in
    chunks of 1 MiB in a second table, written chunk by chunk and read
    lazily, so neither ``put_file`` nor ``open`` holds it whole. The tables
    are created (with their schema version) by the first store opened on
    them, and a table of another layout, schema version or application is
    refused with :class:`MirrorKVError`.

    Order: keys sort by their UTF-8 bytes on both servers (PostgreSQL
    ``COLLATE "C"``, MySQL ``VARBINARY``), and listings are range scans of the
    primary key, fetched a page at a time.

    Atomicity: every write is one statement or one transaction. ``put`` of
    an inline value is one upsert; conditional writes compare the etag in
    the statement (``UPDATE ... WHERE etag = ...``, an insert that fails on
    an existing key) or under a row lock; ``incr`` is one statement on
    PostgreSQL and a locked read-modify-write transaction on MySQL;
    ``put_many`` and ``delete_many`` are one transaction each, all or nothing.
    Transactions that meet a deadlock run again.

    Connections: a SQLAlchemy pool (``pool_size`` + ``max_overflow``) shared
    by the store's threads; each thread keeps the connection it took until
    it ends or the store is closed, and an open stream of a large value holds
    one more. After the server went away the pool is emptied: the call that
    met the failure raises :class:`StoreUnavailable`, reads retry once on a
    fresh connection, and later calls reconnect.

    Streams from :meth:`open` read a snapshot (a repeatable-read
    transaction): the value as it was when the stream was opened.

    The password of the URL is never shown: ``repr``, :attr:`url` and every
    error message use the redacted URL.
    """

    capabilities = (
        Capability.CONDITIONAL_WRITES
        | Capability.NATIVE_COUNTERS
        | Capability.TRANSACTIONS
        | Capability.MULTI_PROCESS
    )

    #: Values of at most this many bytes are kept inline; larger ones in chunks.
    inline_limit = INLINE_LIMIT

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
        """Open the store in ``table`` of the database ``url`` names, creating the tables.

        Raises :class:`InvalidURL` for a URL of another scheme,
        :class:`InvalidValue` for a bad table name or pool setting,
        :class:`StoreUnavailable` where the server cannot be reached,
        :class:`AccessDenied` for refused credentials, :class:`MirrorKVError`
        for a table of another layout or schema version.
        """
        parsed = parse_url(url) if isinstance(url, str) else url
        driver = DRIVERS.get(parsed.scheme)
        if driver is None:
            raise InvalidURL(f"SQLStore opens {', '.join(DRIVERS)} URLs, not {parsed.redacted()}")
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
        self._settings = (pool_size, max_overflow, float(pool_timeout), float(connect_timeout))
        self._where = f"{parsed.redacted()} (table {self._table})"
        self._errors = ErrorTranslator(self._where)
        self._engine = create_engine(parsed, driver, *self._settings)
        self._postgres = self._engine.dialect.name == "postgresql"
        self._sql: Statements = statements(self._table, self._engine.dialect)
        self._leases = Leases(self._engine, self._errors)
        try:
            prepare(self._engine, self._table, self._where, self._errors)
        except BaseException:
            self._leases.close()
            raise

    @classmethod
    def from_url(cls, url: StoreURL, **options: Any) -> SQLStore:
        """``postgresql://``, ``postgres://``, ``mysql://``, ``mariadb://`` URLs.

        Options: ``table`` (default ``mirrorkv``), ``pool_size`` (5),
        ``max_overflow`` (10), ``pool_timeout`` and ``connect_timeout``
        (seconds, 30 and 10). Anything else is an :class:`InvalidURL`.
        """
        return cls(url, **url_arguments(url, options))

    @property
    def table(self) -> str:
        """The name of the store's table."""
        return self._table

    @property
    def url(self) -> str:
        """The store's URL with the password redacted (``***``) and its table option."""
        return f"{self._url.redacted()}?table={self._table}"

    def __repr__(self) -> str:
        return f"SQLStore({self._url.redacted()!r}, table={self._table!r})"

    # -- set-up -------------------------------------------------------------

    def drop_tables(self) -> None:
        """Drop the store's tables and everything in them, then close the store."""
        meta, entries, chunks = tables(self._table)
        self._leases.close()
        with self._errors, self._engine.connect() as conn:
            for table in (chunks, entries, meta):
                table.drop(conn, checkfirst=True)
            conn.commit()
        self._engine.dispose()

    def close(self) -> None:
        """Give back every connection and close the pool. Closing twice is harmless.

        Any later call raises :class:`MirrorKVError`.
        """
        self._leases.close()

    # -- running statements -------------------------------------------------

    def _failed(self, lease: Lease, error: BaseException) -> MirrorKVError:
        """Drop ``lease`` after ``error`` and return the error to raise."""
        self._leases.failed(lease, error)
        return self._errors.translate(error)

    def _read(self, sql: str, params: tuple[Any, ...] | list[Any], many: bool = False) -> Any:
        """Run a read statement: its first row (``many``: all rows).

        A read that finds its pooled connection dead runs once more on a
        fresh one, so the first call after a server restart succeeds.
        """
        for attempt in (0, 1):
            lease = self._leases.get()
            try:
                cursor = lease.cursor
                cursor.execute(sql, params)
                return cursor.fetchall() if many else cursor.fetchone()
            except self._errors.catches as error:
                translated = self._failed(lease, error)
                if attempt or not is_disconnect(error):
                    raise translated from error
        raise AssertionError("unreachable")

    def _write(self, sql: str, params: tuple[Any, ...]) -> int:
        """Run one write statement in autocommit; its row count."""
        lease = self._leases.get()
        try:
            cursor = lease.cursor
            cursor.execute(sql, params)
            count: int = cursor.rowcount
            return count
        except self._errors.catches as error:
            raise self._failed(lease, error) from error

    def _transaction(
        self, work: Callable[[Any], _T], *, replayable: Callable[[], bool] = lambda: True
    ) -> _T:
        """Run ``work(cursor)`` in one transaction; again after a deadlock while ``replayable()``.

        ``work`` raises :class:`_Again` to roll back and run again.
        """
        for attempt in range(_ATTEMPTS):
            lease = self._leases.get()
            cursor = lease.cursor
            try:
                cursor.execute("BEGIN")
                result = work(cursor)
                cursor.execute("COMMIT")
                return result
            except _Again:
                self._leases.rollback(lease, None)
            except self._errors.catches as error:
                self._leases.rollback(lease, error)
                again = is_retryable_conflict(error) and replayable()
                if not again or attempt == _ATTEMPTS - 1:
                    raise self._errors.translate(error) from error
            except BaseException:
                self._leases.rollback(lease, None)
                raise
            time.sleep(0.002 * attempt)
        raise MirrorKVError(f"{self._where}: a transaction kept meeting concurrent writers")

    # -- primitives ---------------------------------------------------------

    def _get(self, key: str) -> bytes:
        while True:
            row = self._read(self._sql.get, (key,))
            if row is None:
                raise KeyNotFound(key)
            if row[1] is None:
                return bytes(row[0])
            data = self._read_chunks(row[1])
            if data is not None and len(data) == row[2]:
                return data
            # Overwritten or deleted between the two statements: read again.

    def _read_chunks(self, blob_id: int) -> bytes | None:
        rows = self._read(self._sql.read_chunks, (blob_id,), many=True)
        return b"".join(bytes(row[0]) for row in rows) if rows else None

    def _put(self, key: str, data: bytes, options: PutOptions) -> Meta:
        size = len(data)
        if size > INLINE_LIMIT:
            view = memoryview(data)
            chunks = (bytes(view[i : i + CHUNK_SIZE]) for i in range(0, size, CHUNK_SIZE))
            return self._put_large(key, chunks, options)
        now = _now()
        version = next_version()
        if options is DEFAULT_PUT_OPTIONS:
            content_type, metadata_json = None, None
        else:
            content_type = options.content_type
            if content_type == DEFAULT_CONTENT_TYPE:
                content_type = None
            metadata_json = dump_metadata(options.metadata)
        sql = self._sql
        row = (key, size, None, now, content_type, metadata_json, version, data, None)
        if options.if_none_match is not None:
            self._insert_new(key, row)
        elif options.if_match is not None:
            fields = (size, now, content_type, metadata_json, version, data, key, options.if_match)
            if self._write(sql.update_if_match, fields) == 0:
                # The etag differs, or the old value is a large one: decide under a lock.
                self._locked_write(key, options, row, None)
        elif self._write(sql.put_inline, row) == 0:
            # The old value is a large one, which the upsert leaves alone.
            self._locked_write(key, options, row, None)
        meta: Meta = _new_meta(
            Meta, (key, size, data, now, options.content_type, options.metadata, version)
        )
        return meta

    def _insert_new(self, key: str, row: tuple[Any, ...]) -> None:
        """Insert an inline value where the key is absent; :class:`PreconditionFailed` if not."""
        lease = self._leases.get()
        try:
            lease.cursor.execute(self._sql.insert_inline, row)
            inserted = lease.cursor.rowcount
        except self._errors.catches as error:
            if is_duplicate(error):
                inserted = 0
            else:
                raise self._failed(lease, error) from error
        if not inserted:
            raise PreconditionFailed(f"{key!r} exists (if_none_match='*')")

    def _put_large(self, key: str, chunks: Iterator[bytes], options: PutOptions) -> Meta:
        now = _now()
        version = next_version()
        content_type = (
            None if options.content_type == DEFAULT_CONTENT_TYPE else options.content_type
        )
        row = (key, 0, None, now, content_type, dump_metadata(options.metadata), version, None)
        size, etag = self._locked_write(key, options, (*row, None), chunks)
        meta: Meta = _new_meta(
            Meta, (key, size, etag, now, options.content_type, options.metadata, version)
        )
        return meta

    def _locked_write(
        self,
        key: str,
        options: PutOptions,
        row: tuple[Any, ...],
        chunks: Iterator[bytes] | None,
    ) -> tuple[int, str | None]:
        """Write a row under its lock, in one transaction; return (size, etag).

        ``row`` is the full row (for a large value its size, etag and blob
        id are filled in here from ``chunks``). The row lock is taken (or the
        row inserted) before ``chunks`` is consumed, so a transaction that has
        to run again never needs the chunks twice.
        """

        once = None if chunks is None else Once(chunks)

        def work(cursor: Any) -> tuple[int, str | None]:
            return self._write_row(cursor, key, options, row, once)

        return self._transaction(work, replayable=lambda: once is None or not once.started)

    def _write_row(
        self,
        cursor: Any,
        key: str,
        options: PutOptions,
        row: tuple[Any, ...],
        chunks: Iterable[bytes] | None,
    ) -> tuple[int, str | None]:
        """Inside a transaction: write ``row`` (and ``chunks``) over whatever ``key`` holds."""
        sql = self._sql
        cursor.execute(sql.lock, (key,))
        found = cursor.fetchone()
        current = None if found is None else Meta(key, 0, text(found[0]), 0.0)
        check_precondition(key, current, options)
        if found is None:
            try:
                cursor.execute(sql.insert_row, row)
            except self._errors.catches as error:
                if is_duplicate(error):
                    raise _Again from error  # a concurrent insert of the key
                raise
            if chunks is None:
                return row[1], row[2]
        if chunks is None:
            size, etag, value, blob_id = row[1], row[2], row[7], row[8]
        else:
            blob_id = new_blob_id()
            digest = hashlib.md5(usedforsecurity=False)
            size = 0
            for seq, chunk in enumerate(chunks):
                digest.update(chunk)
                size += len(chunk)
                cursor.execute(sql.insert_chunk, (blob_id, seq, chunk))
            etag, value = digest.hexdigest(), None
        cursor.execute(sql.update_row, (size, etag, *row[3:7], value, blob_id, key))
        if found is not None and found[1] is not None:
            cursor.execute(sql.delete_chunks, (found[1],))
        return size, etag

    def _delete(self, key: str) -> None:
        self._write(self._sql.delete, (key,))

    def _delete_if(self, key: str, etag: str) -> None:
        """Remove ``key`` and its chunks in one statement that matches the etag column."""
        lease = self._leases.get()
        try:
            cursor = lease.cursor
            cursor.execute(self._sql.delete_if, (key, etag))
            deleted = cursor.fetchone()[0] if self._postgres else cursor.rowcount
        except self._errors.catches as error:
            raise self._failed(lease, error) from error
        if not deleted:
            raise PreconditionFailed(f"{key!r} does not have etag {etag!r}")

    def _head(self, key: str) -> Meta:
        row = self._read(self._sql.head, (key,))
        if row is None:
            raise KeyNotFound(key)
        return row_meta(row)

    def _pages(self, columns: str, prefix: str, start_after: str | None) -> Iterator[list[Any]]:
        """Rows in key order, a page (one statement) at a time."""
        if start_after is not None and start_after >= prefix:
            lower, inclusive = start_after, False
        else:
            lower, inclusive = prefix, True
        upper = prefix_upper_bound(prefix) if prefix else None
        limit = _FIRST_PAGE
        table = self._sql.table
        while True:
            sql = list_sql(table, columns, inclusive, upper is not None)
            params = (lower, limit) if upper is None else (lower, upper, limit)
            rows = self._read(sql, params, many=True)
            if rows:
                yield rows
            if len(rows) < limit:
                return
            lower, inclusive = text(rows[-1][0]), False
            limit = min(limit * 4, _LAST_PAGE)

    def _list(self, prefix: str, start_after: str | None) -> Iterator[Meta]:
        for rows in self._pages(self._sql.list_columns, prefix, start_after):
            yield from map(row_meta, rows)

    def _keys(self, prefix: str, start_after: str | None) -> Iterator[str]:
        for rows in self._pages("name", prefix, start_after):
            for row in rows:
                yield text(row[0])

    # -- streams --------------------------------------------------------------

    def _open(self, key: str) -> BinaryIO:
        row = self._read(self._sql.open, (key,))
        if row is None:
            raise KeyNotFound(key)
        if row[0] is None:
            return io.BytesIO(bytes(row[1]))
        # Large: read it in a snapshot on a connection of its own.
        lease = self._leases.private()
        try:
            for statement in self._sql.begin_snapshot:
                lease.cursor.execute(statement)
            lease.cursor.execute(self._sql.open, (key,))
            row = lease.cursor.fetchone()
        except self._errors.catches as error:
            raise self._failed(lease, error) from error
        if row is None or row[0] is None:  # deleted or overwritten by a small value meanwhile
            with self._errors:
                lease.cursor.execute("ROLLBACK")
            lease.release()
            if row is None:
                raise KeyNotFound(key)
            return io.BytesIO(bytes(row[1]))
        reader = ChunkReader(
            lease, self._sql.read_chunk, row[0], row[2], self._errors, self._leases.failed
        )
        return cast(BinaryIO, reader)

    def _put_stream(self, key: str, stream: IO[bytes], options: PutOptions) -> Meta:
        first = stream.read(INLINE_LIMIT + 1)
        if not isinstance(first, bytes):
            first = bytes(first)
        if len(first) <= INLINE_LIMIT:
            return self._put(key, first, options)
        return self._put_large(key, split_chunks(first, stream.read, CHUNK_SIZE), options)

    # -- batched and atomic versions of the derived API ---------------------

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        """The values of the keys that exist (absent keys left out), fetched in few statements."""
        wanted = list(keys)
        if not wanted:
            return {}
        check_keys(wanted)
        if self._postgres:
            # Keys come back as str: the rows make the dict in one C-level call.
            found: dict[str, bytes] = dict(self._read(self._sql.get_many, (wanted,), many=True))
            large = (
                [key for key, value in found.items() if value is None]
                if None in found.values()
                else []
            )
        else:
            found = {}
            large = []
            for part in batches(wanted):
                for name, value in self._read(
                    expand_in(self._sql.get_many, len(part)), part, many=True
                ):
                    if value is None:
                        large.append(text(name))
                    else:
                        found[text(name)] = value
        for key in large:
            found.pop(key, None)
            with contextlib.suppress(KeyNotFound):
                found[key] = self._get(key)
        return found

    def _put_many(self, keys: list[str], values: list[bytes]) -> list[Meta]:
        """Store checked items in one transaction, all or nothing; a repeated key's last wins."""
        now = _now()
        version = next_version()
        latest = dict(zip(keys, values, strict=True))
        small = {key: value for key, value in latest.items() if len(value) <= INLINE_LIMIT}
        large = {key: value for key, value in latest.items() if len(value) > INLINE_LIMIT}

        def work(cursor: Any) -> None:
            if small:
                self._put_small_batch(cursor, small, now, version)
            for key, value in large.items():
                view = memoryview(value)
                chunks = (bytes(view[i : i + CHUNK_SIZE]) for i in range(0, len(value), CHUNK_SIZE))
                row = (key, 0, None, now, None, None, version, None, None)
                self._write_row(cursor, key, DEFAULT_PUT_OPTIONS, row, chunks)

        self._transaction(work)
        metas: list[Meta] = []
        for key, value in zip(keys, values, strict=True):
            fields = (key, len(value), value, now, DEFAULT_CONTENT_TYPE, NO_METADATA, version)
            metas.append(_new_meta(Meta, fields))
        return metas

    def _put_small_batch(
        self, cursor: Any, items: dict[str, bytes], now: float, version: str
    ) -> None:
        """Inside a transaction: upsert inline values, replacing any large ones among them."""
        sql = self._sql
        keys = list(items)
        if self._postgres:
            cursor.execute(sql.put_many, (now, version, keys, list(items.values())))
            if cursor.rowcount == len(keys):
                return
            cursor.execute(sql.large_among, (keys,))
            replaced = cursor.fetchall()
        else:
            replaced = []
            for part in batches(keys):
                cursor.execute(expand_in(sql.large_among, len(part)), part)
                replaced.extend(cursor.fetchall())
        for name, blob_id in replaced:
            key = text(name)
            value = items[key]
            fields = (len(value), None, now, None, None, version, value, None, key)
            cursor.execute(sql.update_row, fields)
            cursor.execute(sql.delete_chunks, (blob_id,))
        if not self._postgres:
            rows = [
                (key, len(value), None, now, None, None, version, value, None)
                for key, value in items.items()
            ]
            cursor.executemany(sql.put_inline, rows)

    def _delete_many(self, keys: list[str]) -> None:
        if not keys:
            return
        sql = self._sql.delete_many
        if self._postgres:
            self._write(sql, (keys,))  # one statement: atomic
            return

        def work(cursor: Any) -> None:
            for part in batches(keys):
                cursor.execute(expand_in(sql, len(part)), part)

        self._transaction(work)

    def incr(self, key: str, delta: int = 1, *, initial: int = 0) -> int:
        """Add ``delta`` to the counter at ``key`` atomically; see :meth:`Store.incr`.

        One upsert statement on PostgreSQL (the server does the arithmetic,
        in ``numeric``, for counters of up to 4,000 digits); a transaction
        holding the row's lock on MySQL.
        """
        check_key(key)
        check_counter_arguments(delta, initial)
        if not self._postgres:
            return self._incr_locked(key, delta, initial)
        start = b"%d" % (initial + delta)
        sql = self._sql.incr
        while True:
            params = (key, len(start), _now(), next_version(), start, delta, delta)
            lease = self._leases.get()
            try:
                lease.cursor.execute(sql, params)
                row = lease.cursor.fetchone()
            except self._errors.catches as error:
                raise self._failed(lease, error) from error
            if row is not None:
                return int(bytes(row[0]))
            # The key holds something that is not a counter: say so as every store does.
            row = self._read(self._sql.open, (key,))
            if row is None:
                continue  # deleted meanwhile: count from initial
            # A large value (above the inline limit) is never a counter.
            parse_counter(key, b"" if row[0] is not None else bytes(row[1]))

    def _incr_locked(self, key: str, delta: int, initial: int) -> int:
        sql = self._sql

        def work(cursor: Any) -> int:
            cursor.execute(sql.incr, (key,))
            found = cursor.fetchone()
            now, version = _now(), next_version()
            if found is None:
                value = initial + delta
                data = b"%d" % value
                row = (key, len(data), None, now, None, None, version, data, None)
                try:
                    cursor.execute(sql.insert_row, row)
                except self._errors.catches as error:
                    if is_duplicate(error):
                        raise _Again from error
                    raise
                return value
            current = bytes(found[0]) if found[1] is None else b""
            value = parse_counter(key, current) + delta
            data = b"%d" % value
            fields = (len(data), None, now, found[2], found[3], version, data, None, key)
            cursor.execute(sql.update_row, fields)
            return value

        return self._transaction(work)


class _Again(Exception):
    """Raised inside a transaction's work: roll back and run it again."""
