"""`SQLiteStore`: the embedded default, one SQLite file in WAL mode.

One table holds every key: the value as a BLOB and the metadata in columns.
Listing follows the primary key index, whose BINARY collation compares the
UTF-8 bytes of the keys (S3 order). Large values stream both ways through
SQLite's incremental BLOB I/O (see :mod:`._sqlite_io`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
import operator
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any, BinaryIO, cast
from urllib.parse import quote

from ..errors import InvalidValue, KeyNotFound, MirrorKVError
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
    to_bytes,
)
from ..urls import StoreURL, parse_bool, reject_unknown
from ._sqlite_io import (
    BlobReader,
    ErrorTranslator,
    sized_source,
    transaction,
    write_blob,
)
from ._sqlite_schema import (
    COLUMNS,
    DELETE,
    EMPTY,
    ETAG,
    GET,
    GET_WITH_META,
    HEAD,
    REPLACE,
    REPLACE_PLAIN,
    REPLACE_ZEROS,
    SCHEMA_VERSION,
    STORED,
    dump_metadata,
    list_sql,
    prepare,
    row_meta,
)

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]

#: Values up to this size are read whole by ``open`` and copied by one statement.
_SMALL = CHUNK_SIZE
#: Listing pages grow from the first to the last size, so an early ``break`` stays cheap.
_FIRST_PAGE = 64
_LAST_PAGE = 4096
_new_meta = tuple.__new__
_first = operator.itemgetter(0)
_now = time.time
_md5 = hashlib.md5

# Versions: a random per-process prefix and a counter. Unique across
# processes (and across a delete and re-put) without a write to a shared
# sequence; renewed in a forked child, which must not repeat its parent's.
_version_prefix = os.urandom(8).hex() + "."
_version_counter = itertools.count(1)


def _next_version() -> str:
    return f"{_version_prefix}{next(_version_counter):x}"


def _close_quietly(conn: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        conn.close()


class _ThreadSlot:
    """Lives in a thread's local storage; when the thread ends, its connection closes."""

    __slots__ = ("__weakref__",)


_open_stores: weakref.WeakSet[SQLiteStore] = weakref.WeakSet()
#: Connections inherited through fork: never used, never closed (closing could
#: checkpoint or unlock on behalf of the parent), only kept from the collector.
_inherited: list[sqlite3.Connection] = []


def _after_fork_in_child() -> None:
    global _version_prefix
    _version_prefix = os.urandom(8).hex() + "."
    for store in list(_open_stores):
        store._forget_connections()


os.register_at_fork(after_in_child=_after_fork_in_child)


class SQLiteStore(Store):
    """A store in one SQLite file: the embedded default.

    Layout: one table, one row per key, the value as a BLOB and the metadata
    (size, etag = hex MD5 computed at write, modified time, content type,
    user metadata as JSON, version) in columns. The schema version is kept in
    the file; a file written by a newer schema, or an SQLite database of
    another application, is refused with :class:`MirrorKVError`.

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
        self._lock = threading.Lock()
        self._local = threading.local()
        self._finalizers: list[weakref.finalize[Any, Any]] = []
        self._idle_readers: list[sqlite3.Connection] = []
        self._readers: set[sqlite3.Connection] = set()
        self._closed = False
        self._ready = False
        parent = os.path.dirname(self._path)
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as error:
            raise MirrorKVError(f"cannot create the directory {parent!r}: {error}") from error
        self._connect()
        _open_stores.add(self)

    @classmethod
    def from_url(cls, url: StoreURL, **options: Any) -> SQLiteStore:
        """``sqlite:///abs/path.db`` or ``sqlite:rel/path.db``; options ``fsync``, ``timeout``."""
        from ..errors import InvalidURL

        reject_unknown(url, options, ("fsync", "timeout"))
        fsync = parse_bool("fsync", options.get("fsync", False))
        raw_timeout = options.get("timeout", 30.0)
        try:
            timeout = float(raw_timeout)
        except (TypeError, ValueError):
            raise InvalidURL(f"option timeout takes seconds, not {raw_timeout!r}") from None
        if timeout < 0:
            raise InvalidURL(f"option timeout takes seconds >= 0, not {raw_timeout!r}")
        return cls(url.local_path(), fsync=fsync, timeout=timeout)

    @property
    def path(self) -> str:
        """The absolute path of the database file."""
        return self._path

    @property
    def url(self) -> str:
        """A URL that reopens this file with the same options, e.g. ``sqlite:///srv/app.db``."""
        options = []
        if self._fsync:
            options.append("fsync=true")
        if self._timeout != 30.0:
            options.append(f"timeout={self._timeout:g}")
        query = f"?{'&'.join(options)}" if options else ""
        return f"sqlite://{quote(self._path)}{query}"

    def __repr__(self) -> str:
        flags = ", fsync=True" if self._fsync else ""
        return f"SQLiteStore({self._path!r}{flags})"

    # -- connections --------------------------------------------------------

    def _new_connection(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._path,
            timeout=self._timeout,
            isolation_level=None,  # autocommit: transactions are explicit
            check_same_thread=False,  # close() closes every thread's connection
        )
        try:
            conn.execute("PRAGMA synchronous=FULL" if self._fsync else "PRAGMA synchronous=NORMAL")
            if not self._ready:
                prepare(conn, self._path)
                self._ready = True
        except BaseException:
            conn.close()
            raise
        return conn

    def _connect(self) -> sqlite3.Connection:
        """The calling thread's connection, opened on its first use."""
        with self._lock:
            self._check_open()
            with self._errors:
                conn = self._new_connection()
            slot = _ThreadSlot()
            self._finalizers = [f for f in self._finalizers if f.alive]
            self._finalizers.append(weakref.finalize(slot, _close_quietly, conn))
        self._local.slot = slot
        self._local.conn = conn
        return conn

    def _check_open(self) -> None:
        if self._closed:
            raise MirrorKVError(f"{self!r} is closed")

    def _reader(self) -> sqlite3.Connection:
        """A connection of its own for a stream, which holds a read transaction."""
        with self._lock:
            self._check_open()
            if self._idle_readers:
                return self._idle_readers.pop()
        with self._errors:
            conn = self._new_connection()
        with self._lock:
            self._readers.add(conn)
        return conn

    def _release_reader(self, conn: sqlite3.Connection) -> None:
        with contextlib.suppress(sqlite3.Error):
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        with self._lock:
            if not self._closed and len(self._idle_readers) < 4:
                self._idle_readers.append(conn)
                return
            self._readers.discard(conn)
        _close_quietly(conn)

    def _forget_connections(self) -> None:
        """In a forked child: drop the parent's connections without touching them."""
        self._lock = threading.Lock()
        self._local = threading.local()
        for finalizer in self._finalizers:
            detached = finalizer.detach()
            if detached is not None:
                _inherited.append(detached[2][0])
        self._finalizers = []
        _inherited.extend(self._readers)
        self._readers = set()
        self._idle_readers = []

    def close(self) -> None:
        """Close every connection of every thread, and those of open streams.

        Closing twice is harmless; any later call raises :class:`MirrorKVError`.
        """
        with self._lock:
            self._closed = True
            finalizers, self._finalizers = self._finalizers, []
            readers, self._readers = self._readers, set()
            self._idle_readers = []
            self._local = threading.local()
        for finalizer in finalizers:
            finalizer()
        for conn in readers:
            _close_quietly(conn)
        _open_stores.discard(self)

    # -- primitives ---------------------------------------------------------

    def _get(self, key: str) -> bytes:
        try:
            conn = self._local.conn
        except AttributeError:
            conn = self._connect()
        with self._errors:
            row = conn.execute(GET, (key,)).fetchone()
        if row is None:
            raise KeyNotFound(key)
        value: bytes = row[0]
        return value

    def _put(self, key: str, data: bytes, options: PutOptions) -> Meta:
        try:
            conn = self._local.conn
        except AttributeError:
            conn = self._connect()
        size = len(data)
        etag = _md5(data, usedforsecurity=False).hexdigest()
        now = _now()
        version = f"{_version_prefix}{next(_version_counter):x}"
        content_type, metadata = options.content_type, options.metadata
        if options is DEFAULT_PUT_OPTIONS or (
            content_type == DEFAULT_CONTENT_TYPE
            and not metadata
            and options.if_match is None
            and options.if_none_match is None
        ):
            with self._errors:
                conn.execute(REPLACE_PLAIN, (key, etag, now, version, data))
        else:
            row = (key, etag, now, content_type, dump_metadata(metadata), version, data)
            with self._errors:
                if options.if_match is None and options.if_none_match is None:
                    conn.execute(REPLACE, row)
                else:
                    with transaction(conn):
                        self._check_condition(conn, key, options)
                        conn.execute(REPLACE, row)
        meta: Meta = _new_meta(Meta, (key, size, etag, now, content_type, metadata, version))
        return meta

    def _check_condition(self, conn: sqlite3.Connection, key: str, options: PutOptions) -> None:
        """Inside a write transaction: raise PreconditionFailed unless ``options`` hold."""
        if options.if_match is None and options.if_none_match is None:
            return
        row = conn.execute(ETAG, (key,)).fetchone()
        check_precondition(key, None if row is None else Meta(key, 0, row[0], 0.0), options)

    def _delete(self, key: str) -> None:
        try:
            conn = self._local.conn
        except AttributeError:
            conn = self._connect()
        with self._errors:
            conn.execute(DELETE, (key,))

    def _head(self, key: str) -> Meta:
        try:
            conn = self._local.conn
        except AttributeError:
            conn = self._connect()
        with self._errors:
            row = conn.execute(HEAD, (key,)).fetchone()
        if row is None:
            raise KeyNotFound(key)
        return row_meta(row)

    def _get_with_meta(self, key: str) -> tuple[bytes, Meta]:
        try:
            conn = self._local.conn
        except AttributeError:
            conn = self._connect()
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
            try:
                conn = self._local.conn
            except AttributeError:
                conn = self._connect()
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
        try:
            conn = self._local.conn
        except AttributeError:
            conn = self._connect()
        with self._errors:
            row = conn.execute(
                "SELECT CASE WHEN length(value) <= ? THEN value END FROM entries WHERE key = ?",
                (_SMALL, key),
            ).fetchone()
        if row is None:
            raise KeyNotFound(key)
        if row[0] is not None:
            return io.BytesIO(row[0])
        # Large: read it under a read transaction of a connection of its own, a snapshot.
        reader = self._reader()
        try:
            with self._errors:
                reader.execute("BEGIN")
                found = reader.execute("SELECT rowid FROM entries WHERE key = ?", (key,))
                found_row = found.fetchone()
                if found_row is None:
                    raise KeyNotFound(key)
                blob = reader.blobopen("entries", "value", found_row[0], readonly=True)
        except BaseException:
            self._release_reader(reader)
            raise
        stream = BlobReader(blob, self._errors, lambda: self._release_reader(reader))
        return cast(BinaryIO, stream)

    def _put_stream(self, key: str, stream: IO[bytes], options: PutOptions) -> Meta:
        with sized_source(stream, _SMALL) as (source, size):
            if size <= _SMALL:
                return self._put(key, source.read(), options)
            if size > self.max_value_size:
                raise InvalidValue(
                    f"SQLiteStore holds values of at most {self.max_value_size} bytes, "
                    f"this one has {size}"
                )
            try:
                conn = self._local.conn
            except AttributeError:
                conn = self._connect()
            now = _now()
            version = _next_version()
            metadata_json = dump_metadata(options.metadata)
            with self._errors, transaction(conn):
                self._check_condition(conn, key, options)
                row = (key, "", now, options.content_type, metadata_json, version, size)
                cursor = conn.execute(REPLACE_ZEROS, row)
                rowid = cursor.lastrowid
                assert rowid is not None
                etag = write_blob(conn, rowid, source, size)
                conn.execute("UPDATE entries SET etag = ? WHERE rowid = ?", (etag, rowid))
        fields = (key, size, etag, now, options.content_type, options.metadata, version)
        meta: Meta = _new_meta(Meta, fields)
        return meta

    # -- atomic and batched versions of the derived API ---------------------

    def copy(self, source: str, target: str) -> Meta:
        """Copy a value with its content type and metadata inside the database, atomically."""
        check_key(source)
        check_key(target)
        try:
            conn = self._local.conn
        except AttributeError:
            conn = self._connect()
        now = _now()
        version = _next_version()
        with self._errors, transaction(conn):
            row = conn.execute(f"SELECT {COLUMNS}, rowid FROM entries WHERE key = ?", (source,))
            found = row.fetchone()
            if found is None:
                raise KeyNotFound(source)
            meta = row_meta((target, *found[1:3], now, *found[4:6], version))
            if source == target:
                conn.execute(
                    "UPDATE entries SET modified = ?, version = ? WHERE rowid = ?",
                    (now, version, found[7]),
                )
            elif found[1] <= _SMALL:
                conn.execute(
                    f"INSERT OR REPLACE INTO entries ({STORED}) SELECT ?, etag, ?, "
                    "content_type, metadata, ?, value FROM entries WHERE rowid = ?",
                    (target, now, version, found[7]),
                )
            else:
                self._copy_large(conn, found, meta)
        return meta

    def _copy_large(self, conn: sqlite3.Connection, found: tuple[Any, ...], meta: Meta) -> None:
        """Copy a large value blob to blob, a chunk at a time, inside the caller's transaction."""
        size = found[1]
        row = (meta.key, found[2], meta[3], found[4], found[5], meta.version, size)
        cursor = conn.execute(REPLACE_ZEROS, row)
        target_rowid = cursor.lastrowid
        assert target_rowid is not None
        with conn.blobopen("entries", "value", found[7], readonly=True) as source:
            write_blob(conn, target_rowid, source, size, hashed=False)

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        """The values of the keys that exist (absent keys left out), read in one statement."""
        wanted = [check_key(key) for key in keys]
        if not wanted:
            return {}
        try:
            conn = self._local.conn
        except AttributeError:
            conn = self._connect()
        with self._errors:
            rows = conn.execute(
                "SELECT key, value FROM entries WHERE key IN (SELECT value FROM json_each(?))",
                (json.dumps(wanted, ensure_ascii=False),),
            ).fetchall()
        return dict(rows)

    def put_many(self, items: Mapping[str, bytes] | Iterable[tuple[str, bytes]]) -> list[Meta]:
        """Store many values in one transaction: all or nothing. Every item is checked first."""
        # The base class's checks, the rows and the Metas in one pass: the bulk-load path.
        # One version and one time serve the whole batch: it writes each key
        # once, so the version still differs from every earlier write of it.
        now = _now()
        version = _next_version()
        limit = self.max_value_size
        content_type = DEFAULT_CONTENT_TYPE
        rows = []
        metas = []
        for key, data in items.items() if isinstance(items, Mapping) else items:
            if not (
                key.__class__ is str and 0 < len(key) <= 256 and key.isascii() and "\x00" not in key
            ):
                check_key(key)
            if data.__class__ is not bytes:
                data = to_bytes(data)
            size = len(data)
            if size > limit:
                self._checked_size(data)
            etag = _md5(data, usedforsecurity=False).hexdigest()
            rows.append((key, etag, now, version, data))
            metas.append(_new_meta(Meta, (key, size, etag, now, content_type, EMPTY, version)))
        self._write_rows(rows)
        return metas

    def _put_many(self, items: list[tuple[str, bytes]]) -> list[Meta]:
        return self.put_many(items)

    def _write_rows(self, rows: list[tuple[str, str, float, str, bytes]]) -> None:
        try:
            conn = self._local.conn
        except AttributeError:
            conn = self._connect()
        with self._errors, transaction(conn):
            conn.executemany(REPLACE_PLAIN, rows)

    def _delete_many(self, keys: list[str]) -> None:
        try:
            conn = self._local.conn
        except AttributeError:
            conn = self._connect()
        with self._errors, transaction(conn):
            conn.executemany(DELETE, [(key,) for key in keys])

    def incr(self, key: str, delta: int = 1, *, initial: int = 0) -> int:
        """Add ``delta`` to the counter at ``key`` in one transaction; see :meth:`Store.incr`."""
        check_key(key)
        check_counter_arguments(delta, initial)
        try:
            conn = self._local.conn
        except AttributeError:
            conn = self._connect()
        with self._errors, transaction(conn):
            row = conn.execute(
                "SELECT value, content_type, metadata FROM entries WHERE key = ?", (key,)
            ).fetchone()
            if row is None:
                value = initial + delta
                content_type, metadata = DEFAULT_CONTENT_TYPE, None
            else:
                value = parse_counter(key, row[0]) + delta
                content_type, metadata = row[1], row[2]
            data = b"%d" % value
            etag = _md5(data, usedforsecurity=False).hexdigest()
            conn.execute(
                REPLACE,
                (key, etag, _now(), content_type, metadata, _next_version(), data),
            )
        return value
