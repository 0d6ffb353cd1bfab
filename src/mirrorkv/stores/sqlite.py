"""`SQLiteStore`: the embedded default, one SQLite file in WAL mode.

One ``WITHOUT ROWID`` table keyed by the key holds the metadata and small
values inline, so the common put and get touch one b-tree; large values live
in a table of blobs of their own (see :mod:`._sqlite_schema`) and stream both
ways through SQLite's incremental BLOB I/O (see :mod:`._sqlite_io`). Listing
follows the key's b-tree, whose BINARY collation compares the UTF-8 bytes of
the keys (S3 order).
"""

from __future__ import annotations

import functools
import hashlib
import io
import itertools
import json
import operator
import os
import sqlite3
import time
import weakref
from collections.abc import Iterable, Iterator
from typing import IO, Any, BinaryIO, cast

from ..errors import InvalidValue, KeyNotFound, MirrorKVError, PreconditionFailed
from ..keys import check_key, prefix_upper_bound
from ..meta import DEFAULT_CONTENT_TYPE, Meta
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
from ..urls import StoreURL
from ._sqlite_connections import Connections, file_options, file_url
from ._sqlite_io import (
    BlobReader,
    ErrorTranslator,
    open_blob,
    sized_source,
    transaction,
    write_blob,
)
from ._sqlite_schema import (
    ANY_BLOB,
    COLUMNS,
    COPY_INLINE,
    DELETE,
    EMPTY,
    ETAG,
    GET,
    GET_WITH_META,
    HEAD,
    NEW_BLOB,
    NEW_ZEROBLOB,
    PUT,
    PUT_BLOB,
    PUT_PLAIN,
    SCHEMA_VERSION,
    VALUE,
    dump_metadata,
    list_sql,
    row_meta,
)

__all__ = ["INLINE_LIMIT", "SCHEMA_VERSION", "SQLiteStore"]

#: Values of at most this many bytes are kept inline in their entry; larger
#: ones go to a blob row of their own. Reading never depends on it: an entry
#: says where its value is. Measured: a row that outgrows one cell of the
#: WITHOUT ROWID b-tree (about 1,000 bytes on 4 KiB pages) spills to overflow
#: pages, and from there on a value read from the blob table is as fast or
#: faster (1.5x at 4 KiB, 3x at 64 KiB) while puts cost the same; below
#: 512 bytes inline puts are some 20% faster. 512 leaves room in the cell
#: for a long key and metadata.
INLINE_LIMIT = 512
#: Streams of at most this many bytes are read whole (by ``open``, ``put_file``).
_SMALL = CHUNK_SIZE
#: Listing pages grow from the first to the last size, so an early ``break`` stays cheap.
_FIRST_PAGE = 64
_LAST_PAGE = 4096
_new_meta = tuple.__new__
_OPEN = f"SELECT CASE WHEN size <= ? THEN {VALUE} END FROM entries WHERE key = ?"
_first = operator.itemgetter(0)
_make_meta = functools.partial(tuple.__new__, Meta)
_repeat = itertools.repeat
_now = time.time
_md5 = hashlib.md5

# Versions: a random per-process prefix and a counter. Unique across
# processes (and across a delete and re-put) without a write to a shared
# sequence; renewed in a forked child, which must not repeat its parent's.
_version_prefix = os.urandom(8).hex() + "."
_version_counter = itertools.count(1)


def _next_version() -> str:
    return f"{_version_prefix}{next(_version_counter):x}"


def _after_fork_in_child() -> None:
    global _version_prefix
    _version_prefix = os.urandom(8).hex() + "."


os.register_at_fork(after_in_child=_after_fork_in_child)


class SQLiteStore(Store):
    """A store in one SQLite file: the embedded default.

    Layout: one ``WITHOUT ROWID`` table, one row per key, holding the
    metadata (size, etag = hex MD5, stored for a large value and computed on
    demand from a small one, modified time, content type, user metadata as
    JSON, version) and, for values of at most
    :data:`INLINE_LIMIT` bytes, the value itself; a larger value is kept in
    a row of a separate table of blobs, written and deleted in the same
    transaction as its entry. The schema version is kept in the file; a file
    written by a newer schema, or an SQLite database of another application,
    is refused with :class:`MirrorKVError`.

    Memory: each thread that uses the store has its own connection, whose
    page cache grows on demand up to 16 MiB (``_sqlite_connections.CACHE_KIB``; SQLite's
    default is 2 MiB, which made every get of a 20,000-key store miss and
    read from the file) and stays allocated until the connection closes
    (when the thread ends, or at :meth:`close`). It never exceeds the size
    of the file, so a small store costs little; a process whose N threads
    all touch a store larger than 16 MiB may hold up to N x 16 MiB of cached
    pages, on top of the operating system's file cache. Connections held by
    open streams keep SQLite's default (2 MiB). The file is read with
    ``read()``, not memory-mapped: ``mmap`` measured no faster here, and
    with it an I/O error or a file truncated underneath would kill the
    process with SIGBUS instead of raising.

    Durability, in WAL mode:

    * ``fsync=False`` (``synchronous=NORMAL``): a write that returned is in
      the write-ahead log and survives the process being killed at any
      moment (``kill -9``, a crash). An operating-system crash or a power
      loss may undo the most recent writes, back to an earlier consistent
      state; it never leaves a torn value or a corrupt file.
    * ``fsync=True`` (``synchronous=FULL``): every write also flushes the log
      to the disk before it returns, so it survives power loss too (as far as
      the disk honours a flush). Writes are slower.

    Concurrency: every thread uses its own connection; several processes may
    open the same file. Every write is one transaction: readers see the old
    value or the new one; conditional writes, ``incr``, ``copy``,
    ``put_many`` and ``delete_many`` are atomic. A writer waits up to
    ``timeout`` seconds for another writer's lock, then raises
    :class:`StoreUnavailable` (retryable).

    Streams from :meth:`open` read a snapshot: the value as it was when the
    stream was opened, even if the key is overwritten or deleted meanwhile.
    An open stream of a large value holds a read transaction, so close it
    promptly (a long-lived one keeps the log from being checkpointed).
    """

    capabilities = (
        Capability.CONDITIONAL_WRITES
        | Capability.NATIVE_COUNTERS
        | Capability.TRANSACTIONS
        | Capability.MULTI_PROCESS
        | Capability.SERVER_SIDE_COPY
    )

    #: SQLite's default limit on the size of one BLOB (SQLITE_MAX_LENGTH).
    max_value_size = 1_000_000_000
    #: Values of at most this many bytes are kept inline; see :data:`INLINE_LIMIT`.
    inline_limit = INLINE_LIMIT

    def __init__(
        self, path: str | os.PathLike[str], *, fsync: bool = False, timeout: float = 30.0
    ) -> None:
        """Open (creating where absent) the store in the SQLite file ``path``.

        Parent directories are created. Raises :class:`MirrorKVError` when the
        file is not a mirrorkv database (:class:`CorruptValue` when it is not
        an SQLite database at all) or has a newer schema.
        """
        raw = os.fspath(path)
        if not isinstance(raw, str) or raw in ("", ":memory:") or raw.startswith("file:"):
            raise InvalidValue(
                f"SQLiteStore takes the path of a file, not {raw!r} (use memory:// for memory)"
            )
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
            raise InvalidValue(f"timeout must be a number of seconds >= 0, not {timeout!r}")
        self._path = os.path.abspath(raw)
        self._fsync = bool(fsync)
        self._timeout = float(timeout)
        self._errors = ErrorTranslator(self._path)
        self._connections = Connections(
            self._path, fsync=self._fsync, timeout=self._timeout, errors=self._errors
        )
        parent = os.path.dirname(self._path)
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as error:
            raise MirrorKVError(f"cannot create the directory {parent!r}: {error}") from error
        self._connections.connect()
        # A store dropped without close() still closes its connections.
        weakref.finalize(self, self._connections.close)

    @classmethod
    def from_url(cls, url: StoreURL, **options: Any) -> SQLiteStore:
        """``sqlite:///abs/path.db`` or ``sqlite:rel/path.db``; options ``fsync``, ``timeout``."""
        path, fsync, timeout = file_options(url, options)
        return cls(path, fsync=fsync, timeout=timeout)

    @property
    def path(self) -> str:
        """The absolute path of the database file."""
        return self._path

    @property
    def url(self) -> str:
        """A URL that reopens this file with the same options, e.g. ``sqlite:///srv/app.db``."""
        return file_url(self._path, self._fsync, self._timeout)

    def __repr__(self) -> str:
        flags = ", fsync=True" if self._fsync else ""
        return f"SQLiteStore({self._path!r}{flags})"

    # -- connections --------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        """The calling thread's connection."""
        try:
            conn: sqlite3.Connection = self._connections.local.conn
        except AttributeError:
            conn = self._connections.connect()
        return conn

    def close(self) -> None:
        """Close every connection of every thread, and those of open streams.

        Closing twice is harmless; any later call raises :class:`MirrorKVError`.
        """
        self._connections.close()

    # -- primitives ---------------------------------------------------------

    def _get(self, key: str) -> bytes:
        conn = self._conn()
        with self._errors:
            row = conn.execute(GET, (key,)).fetchone()
        if row is None:
            raise KeyNotFound(key)
        value: bytes = row[0]
        return value

    def _put(self, key: str, data: bytes, options: PutOptions) -> Meta:
        conn = self._conn()
        size = len(data)
        now = _now()
        version = f"{_version_prefix}{next(_version_counter):x}"
        content_type, metadata = options.content_type, options.metadata
        if size > self.inline_limit:
            etag = _md5(data, usedforsecurity=False).hexdigest()
            self._put_large(conn, key, data, options, (key, etag, now, version))
            meta: Meta = _new_meta(Meta, (key, size, etag, now, content_type, metadata, version))
            return meta
        elif options is DEFAULT_PUT_OPTIONS or (
            content_type == DEFAULT_CONTENT_TYPE
            and not metadata
            and options.if_match is None
            and options.if_none_match is None
        ):
            with self._errors:
                conn.execute(PUT_PLAIN, (key, now, version, size, data))
        else:
            stored_type = None if content_type == DEFAULT_CONTENT_TYPE else content_type
            row = (key, None, now, stored_type, dump_metadata(metadata), version, size, data)
            with self._errors:
                if options.if_match is None and options.if_none_match is None:
                    conn.execute(PUT, row)
                else:
                    with transaction(conn):
                        self._check_condition(conn, key, options)
                        conn.execute(PUT, row)
        # An inline value's etag is computed from it when first asked for.
        meta = _new_meta(Meta, (key, size, data, now, content_type, metadata, version))
        return meta

    def _put_large(
        self,
        conn: sqlite3.Connection,
        key: str,
        data: bytes,
        options: PutOptions,
        fields: tuple[str, str, float, str],
    ) -> None:
        """Write a value above the inline limit to a blob row and its entry, in one transaction."""
        _, etag, now, version = fields
        metadata_json = dump_metadata(options.metadata)
        with self._errors, transaction(conn):
            self._check_condition(conn, key, options)
            blob = conn.execute(NEW_BLOB, (data,)).lastrowid
            row = (key, etag, now, options.content_type, metadata_json, version, len(data), blob)
            conn.execute(PUT_BLOB, row)

    def _check_condition(self, conn: sqlite3.Connection, key: str, options: PutOptions) -> None:
        """Inside a write transaction: raise PreconditionFailed unless ``options`` hold."""
        if options.if_match is None and options.if_none_match is None:
            return
        row = conn.execute(ETAG, (key,)).fetchone()
        check_precondition(key, None if row is None else Meta(key, 0, row[0], 0.0), options)

    def _delete(self, key: str) -> None:
        conn = self._conn()
        with self._errors:
            conn.execute(DELETE, (key,))

    def _delete_if(self, key: str, etag: str) -> None:
        """Remove ``key`` (and its blob row) in one write transaction if its etag is ``etag``."""
        conn = self._conn()
        with self._errors, transaction(conn):
            row = conn.execute(ETAG, (key,)).fetchone()
            if row is None or Meta(key, 0, row[0], 0.0).etag != etag:
                raise PreconditionFailed(f"{key!r} does not have etag {etag!r}")
            conn.execute(DELETE, (key,))  # the entries_drop_blob trigger removes a large value

    def _head(self, key: str) -> Meta:
        conn = self._conn()
        with self._errors:
            row = conn.execute(HEAD, (key,)).fetchone()
        if row is None:
            raise KeyNotFound(key)
        return row_meta(row)

    def _get_with_meta(self, key: str) -> tuple[bytes, Meta]:
        conn = self._conn()
        with self._errors:
            row = conn.execute(GET_WITH_META, (key,)).fetchone()
        if row is None:
            raise KeyNotFound(key)
        return row[7], row_meta(row)

    def _pages(self, columns: str, prefix: str, start_after: str | None) -> Iterator[list[Any]]:
        """Rows in key order, page by page.

        Each page is one complete statement, so no statement stays open (and
        no read snapshot stays pinned) while the caller holds the iterator.
        """
        if start_after is not None and start_after >= prefix:
            lower, inclusive = start_after, False
        else:
            lower, inclusive = prefix, True
        upper = prefix_upper_bound(prefix) if prefix else None
        limit = _FIRST_PAGE
        while True:
            conn = self._conn()
            sql = list_sql(columns, inclusive, upper is not None)
            params = (lower, limit) if upper is None else (lower, upper, limit)
            with self._errors:
                rows = conn.execute(sql, params).fetchall()
            if rows:
                yield rows
            if len(rows) < limit:
                return
            lower, inclusive = rows[-1][0], False
            limit = min(limit * 4, _LAST_PAGE)

    def _list(self, prefix: str, start_after: str | None) -> Iterator[Meta]:
        for rows in self._pages(COLUMNS, prefix, start_after):
            yield from map(row_meta, rows)

    def _keys(self, prefix: str, start_after: str | None) -> Iterator[str]:
        for rows in self._pages("key", prefix, start_after):
            yield from map(_first, rows)

    # -- streams --------------------------------------------------------------

    def _open(self, key: str) -> BinaryIO:
        conn = self._conn()
        with self._errors:
            row = conn.execute(_OPEN, (_SMALL, key)).fetchone()
        if row is None:
            raise KeyNotFound(key)
        if row[0] is not None:  # at most _SMALL bytes: read whole
            return io.BytesIO(row[0])
        # Large: read it under a read transaction of a connection of its own, a snapshot.
        reader = self._connections.reader()
        try:
            with self._errors:
                reader.execute("BEGIN")
                found = reader.execute("SELECT blob FROM entries WHERE key = ?", (key,))
                found_row = found.fetchone()
                if found_row is None:
                    raise KeyNotFound(key)
                if found_row[0] is None:  # overwritten by an inline value meanwhile
                    value = reader.execute(GET, (key,)).fetchone()[0]
                    self._connections.release_reader(reader)
                    return io.BytesIO(value)
                blob = open_blob(reader, found_row[0])
        except BaseException:
            self._connections.release_reader(reader)
            raise
        stream = BlobReader(blob, self._errors, lambda: self._connections.release_reader(reader))
        return cast(BinaryIO, stream)

    def _put_stream(self, key: str, stream: IO[bytes], options: PutOptions) -> Meta:
        with sized_source(stream, _SMALL) as (source, size):
            if size <= _SMALL:
                return self._put(key, self._checked_size(source.read()), options)
            if size > self.max_value_size:
                raise InvalidValue(
                    f"SQLiteStore holds values of at most {self.max_value_size} bytes, "
                    f"this one has {size}"
                )
            conn = self._conn()
            now = _now()
            version = _next_version()
            metadata_json = dump_metadata(options.metadata)
            with self._errors, transaction(conn):
                self._check_condition(conn, key, options)
                blob = conn.execute(NEW_ZEROBLOB, (size,)).lastrowid
                assert blob is not None
                etag = write_blob(conn, blob, source, size)
                row = (key, etag, now, options.content_type, metadata_json, version, size, blob)
                conn.execute(PUT_BLOB, row)
        fields = (key, size, etag, now, options.content_type, options.metadata, version)
        meta: Meta = _new_meta(Meta, fields)
        return meta

    # -- atomic and batched versions of the derived API ---------------------

    def copy(self, source: str, target: str) -> Meta:
        """Copy a value with its content type and metadata inside the database, atomically."""
        check_key(source)
        check_key(target)
        conn = self._conn()
        now = _now()
        version = _next_version()
        with self._errors, transaction(conn):
            row = conn.execute(f"SELECT {COLUMNS}, blob FROM entries WHERE key = ?", (source,))
            found = row.fetchone()
            if found is None:
                raise KeyNotFound(source)
            meta = row_meta((target, *found[1:3], now, *found[4:6], version))
            if source == target:
                conn.execute(
                    "UPDATE entries SET modified = ?, version = ? WHERE key = ?",
                    (now, version, source),
                )
            elif found[7] is None:
                conn.execute(COPY_INLINE, (target, now, version, source))
            else:
                self._copy_large(conn, found, meta)
        return meta

    def _copy_large(self, conn: sqlite3.Connection, found: tuple[Any, ...], meta: Meta) -> None:
        """Copy a blob row to a new one, a chunk at a time, and point the target's entry at it.

        Runs inside the caller's transaction; the target's old blob row, if
        any, goes with the REPLACE of its entry (a trigger).
        """
        size = found[1]
        blob = conn.execute(NEW_ZEROBLOB, (size,)).lastrowid
        assert blob is not None
        with open_blob(conn, found[7]) as source:
            write_blob(conn, blob, source, size, hashed=False)
        row = (meta.key, found[2], meta[3], found[4], found[5], meta.version, size, blob)
        conn.execute(PUT_BLOB, row)

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        """The values of the keys that exist (absent keys left out), read in one statement."""
        wanted = [check_key(key) for key in keys]
        if not wanted:
            return {}
        conn = self._conn()
        with self._errors:
            rows = conn.execute(
                f"SELECT key, {VALUE} FROM entries WHERE key IN (SELECT value FROM json_each(?))",
                (json.dumps(wanted, ensure_ascii=False),),
            ).fetchall()
        return dict(rows)

    def _put_many(self, keys: list[str], values: list[bytes]) -> list[Meta]:
        """Store checked items in one transaction: all or nothing."""
        sizes = list(map(len, values))
        # One version and one time serve the whole batch: it writes each key
        # once, so the version still differs from every earlier write of it.
        now = _now()
        version = _next_version()
        conn = self._conn()
        if max(sizes) <= self.inline_limit:
            rows = _plain_rows(keys, sizes, values, now, version)
            with self._errors, transaction(conn):
                if conn.execute(ANY_BLOB).fetchone() is None:
                    # No blob row exists (and none can appear: this transaction
                    # holds the write lock), so REPLACE cannot orphan one and the
                    # delete triggers, some 20% of a bulk load, can stay off.
                    conn.execute("PRAGMA recursive_triggers=OFF")
                    try:
                        _insert_rows(conn, rows)
                    finally:
                        conn.execute("PRAGMA recursive_triggers=ON")
                else:
                    _insert_rows(conn, rows)
        else:
            self._write_mixed(conn, keys, values, sizes, (now, version))
        # Each Meta holds its value in the etag slot: hashed only if asked for.
        fields = zip(  # noqa: B905 - the repeats are endless
            keys,
            sizes,
            values,
            _repeat(now),
            _repeat(DEFAULT_CONTENT_TYPE),
            _repeat(EMPTY),
            _repeat(version),
        )
        return list(map(_make_meta, fields))

    def _write_mixed(
        self,
        conn: sqlite3.Connection,
        keys: list[str],
        values: list[bytes],
        sizes: list[int],
        stamp: tuple[float, str],
    ) -> None:
        """put_many's batch with large values among the small, in order, in one transaction."""
        now, version = stamp
        limit = self.inline_limit
        start = 0
        with self._errors, transaction(conn):
            for index, size in enumerate(sizes):
                if size <= limit:
                    continue
                rows = _plain_rows(
                    keys[start:index], sizes[start:index], values[start:index], now, version
                )
                conn.executemany(PUT_PLAIN, rows)
                blob = conn.execute(NEW_BLOB, (values[index],)).lastrowid
                etag = _md5(values[index], usedforsecurity=False).hexdigest()
                row = (keys[index], etag, now, DEFAULT_CONTENT_TYPE, None, version)
                conn.execute(PUT_BLOB, (*row, size, blob))
                start = index + 1
            rows = _plain_rows(keys[start:], sizes[start:], values[start:], now, version)
            conn.executemany(PUT_PLAIN, rows)

    def _delete_many(self, keys: list[str]) -> None:
        conn = self._conn()
        with self._errors, transaction(conn):
            conn.executemany(DELETE, [(key,) for key in keys])

    def incr(self, key: str, delta: int = 1, *, initial: int = 0) -> int:
        """Add ``delta`` to the counter at ``key`` in one transaction; see :meth:`Store.incr`."""
        check_key(key)
        check_counter_arguments(delta, initial)
        conn = self._conn()
        with self._errors, transaction(conn):
            row = conn.execute(
                f"SELECT {VALUE}, content_type, metadata FROM entries WHERE key = ?", (key,)
            ).fetchone()
            if row is None:
                value = initial + delta
                content_type, metadata = None, None  # NULL: the default content type
            else:
                value = parse_counter(key, row[0]) + delta
                content_type, metadata = row[1], row[2]
            data = b"%d" % value  # inline (a counter is short): its etag is left to be computed
            row = (key, None, _now(), content_type, metadata, _next_version(), len(data), data)
            conn.execute(PUT, row)
        return value


#: Rows per multi-row INSERT of a put_many, at most (5 parameters each).
_ROWS_PER_INSERT = 2000


@functools.lru_cache(maxsize=8)
def _put_plain_rows(rows: int) -> str:
    """:data:`PUT_PLAIN` with ``rows`` rows of parameters."""
    return PUT_PLAIN + ", (?, ?, ?, ?, ?)" * (rows - 1)


def _insert_rows(conn: sqlite3.Connection, rows: Iterator[tuple[Any, ...]]) -> None:
    """Run :data:`PUT_PLAIN` for every row, up to 2,000 rows per statement.

    ``executemany`` steps once per row and releases the GIL at each step, so
    another busy thread of the process (a write-behind writer, say) stalls
    the load row by row: 20,000 rows took 3.5x longer with one such thread
    running (2.0x with multi-row statements), and alone 1.35x longer.
    """
    per_statement = min(_ROWS_PER_INSERT, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // 5)
    while chunk := list(itertools.islice(rows, per_statement)):
        conn.execute(_put_plain_rows(len(chunk)), list(itertools.chain.from_iterable(chunk)))


def _plain_rows(
    keys: list[str],
    sizes: list[int],
    values: list[bytes],
    now: float,
    version: str,
) -> Iterator[tuple[str, float, str, int, bytes]]:
    """The parameters of :data:`PUT_PLAIN` for each item, lazily."""
    return zip(keys, _repeat(now), _repeat(version), sizes, values)  # noqa: B905
