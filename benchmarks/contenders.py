"""The contenders of ``bench_core.py``: mirrorkv's stores and their peers, each behind an `Adapter`.

Each ``open_*`` function opens one store in a fresh directory with the
durability settings ``bench_core.py``'s docstring lists, and returns the
calls the workload times as plain callables (bound methods where the store
has them, so that no wrapper adds to the figures).
"""

from __future__ import annotations

import inspect
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

Item = tuple[str, bytes]


@dataclass
class Adapter:
    """One opened contender: the calls the workload times, as plain callables."""

    put: Callable[[str, bytes], object]
    get: Callable[[str], object]
    keys: Callable[[], Iterable[object]]
    delete: Callable[[str], object]
    put_many: Callable[[list[Item]], object]
    list: Callable[[], Iterable[object]] | None = None
    close: Callable[[], object] = lambda: None
    #: Applied to every key before timing (minimalkv forbids "/").
    map_key: Callable[[str], str] | None = None
    #: Untimed bulk load of the keys a capped put phase left out (default: ``put_many``).
    fill: Callable[[list[Item]], object] | None = None
    #: Whether ``put_many`` is one transaction (timed whole) or not (timed in chunks, capped).
    transactional: bool = True


@dataclass
class Contender:
    """A store to benchmark: its name, whether it is ours, and how to open it in a directory."""

    name: str
    ours: bool
    durability: str
    open: Callable[[str], Adapter]
    note: str = ""


def _sqlite_connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def open_raw_sqlite(directory: str) -> Adapter:
    """Raw sqlite3: the limit for a SQLite-backed store with the same durability."""
    conn = _sqlite_connect(os.path.join(directory, "raw.db"))
    conn.execute("CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID")
    execute = conn.execute

    def put(key: str, value: bytes) -> None:
        execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, value))

    def get(key: str) -> bytes:
        row = execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        value: bytes = row[0]
        return value

    def keys() -> Iterator[str]:
        return (row[0] for row in execute("SELECT key FROM kv ORDER BY key"))

    def listing() -> Iterator[tuple[str, int]]:
        return iter(execute("SELECT key, length(value) FROM kv ORDER BY key"))

    def delete(key: str) -> None:
        execute("DELETE FROM kv WHERE key = ?", (key,))

    def put_many(items: list[Item]) -> None:
        execute("BEGIN")
        conn.executemany("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", items)
        execute("COMMIT")

    return Adapter(put, get, keys, delete, put_many, listing, conn.close)


def open_dict(directory: str) -> Adapter:
    """A plain dict: the limit for an in-memory store."""
    data: dict[str, bytes] = {}
    return Adapter(
        put=data.__setitem__,
        get=data.__getitem__,
        keys=lambda: sorted(data),
        delete=data.__delitem__,
        put_many=data.update,
        list=lambda: ((key, len(data[key])) for key in sorted(data)),
    )


def _dotted(key: str) -> str:
    return key.replace("/", ".")


def _minimalkv_adapter(
    store: Any,
    close: Callable[[], object] = lambda: None,
    fill: Callable[[list[Item]], object] | None = None,
) -> Adapter:
    put = store.put

    def put_many(items: list[Item]) -> None:
        for key, value in items:
            put(key, value)

    return Adapter(
        put=put,
        get=store.get,
        keys=lambda: sorted(store.iter_keys()),
        delete=store.delete,
        put_many=put_many,
        close=close,
        map_key=_dotted,
        fill=fill,
        transactional=False,
    )


def open_minimalkv_dict(directory: str) -> Adapter:
    """minimalkv DictStore."""
    from minimalkv.memory import DictStore

    return _minimalkv_adapter(DictStore())


def open_minimalkv_fs(directory: str) -> Adapter:
    """minimalkv FilesystemStore (writes in place, no fsync)."""
    from minimalkv.fs import FilesystemStore

    return _minimalkv_adapter(FilesystemStore(os.path.join(directory, "fs")))


def open_minimalkv_sql(directory: str) -> Adapter:
    """minimalkv SQLAlchemyStore on a SQLite file, switched to WAL and synchronous=NORMAL."""
    from minimalkv.db.sql import SQLAlchemyStore
    from sqlalchemy import MetaData, create_engine, event

    engine = create_engine(f"sqlite:///{os.path.join(directory, 'sa.db')}")

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    metadata = MetaData()
    store = SQLAlchemyStore(engine, metadata, "kv")
    metadata.create_all(engine)

    def fill(items: list[Item]) -> None:
        with engine.begin() as conn:
            conn.execute(store.table.insert(), [{"key": k, "value": v} for k, v in items])

    return _minimalkv_adapter(store, engine.dispose, fill)


def open_diskcache(directory: str) -> Adapter:
    """diskcache.Cache with its defaults (WAL, synchronous=NORMAL)."""
    import diskcache

    cache = diskcache.Cache(os.path.join(directory, "dc"))
    assert cache.sqlite_synchronous == 1 and cache.sqlite_journal_mode.lower() == "wal"
    set_ = cache.set

    def put_many(items: list[Item]) -> None:
        with cache.transact():
            for key, value in items:
                set_(key, value)

    def get(key: str) -> bytes:
        value: bytes = cache[key]
        return value

    return Adapter(
        put=set_,
        get=get,
        keys=lambda: list(cache.iterkeys()),  # already ordered by key
        delete=cache.__delitem__,
        put_many=put_many,
        close=cache.close,
    )


def open_sqlitedict(directory: str) -> Adapter:
    """sqlitedict with autocommit, switched to WAL and synchronous=NORMAL."""
    from sqlitedict import SqliteDict

    data = SqliteDict(os.path.join(directory, "sd.db"), autocommit=True, journal_mode="WAL")
    data.conn.execute("PRAGMA synchronous=NORMAL")
    data.conn.commit()

    return Adapter(
        put=data.__setitem__,
        get=data.__getitem__,
        keys=lambda: sorted(data.keys()),
        delete=data.__delitem__,
        put_many=data.update,
        close=data.close,
    )


def open_lmdb(directory: str) -> Adapter:
    """LMDB with sync=False (process-crash safe, not power-loss safe), one txn per write."""
    import lmdb

    env = lmdb.open(os.path.join(directory, "lmdb"), map_size=1 << 30, sync=False)

    def put(key: str, value: bytes) -> None:
        with env.begin(write=True) as txn:
            txn.put(key.encode(), value)

    def get(key: str) -> bytes:
        with env.begin(buffers=False) as txn:
            value = txn.get(key.encode())
        if value is None:
            raise KeyError(key)
        return value  # type: ignore[no-any-return]

    def keys() -> list[str]:
        with env.begin() as txn:
            return [key.decode() for key in txn.cursor().iternext(values=False)]

    def listing() -> list[tuple[str, int]]:
        with env.begin() as txn:
            return [(key.decode(), len(value)) for key, value in txn.cursor()]

    def delete(key: str) -> None:
        with env.begin(write=True) as txn:
            txn.delete(key.encode())

    def put_many(items: list[Item]) -> None:
        with env.begin(write=True) as txn:
            txn.cursor().putmulti([(key.encode(), value) for key, value in items])

    return Adapter(put, get, keys, delete, put_many, listing, env.close)


def _mirrorkv_adapter(store: Any, transactional: bool = True) -> Adapter:
    return Adapter(
        put=store.put,
        get=store.get,
        keys=store.keys,
        delete=store.delete,
        put_many=store.put_many,
        list=store.list,
        close=store.close,
        transactional=transactional,
    )


def _no_fsync(cls: type) -> dict[str, Any]:
    """``fsync=False`` if the store takes that option (its documented default anyway)."""
    return {"fsync": False} if "fsync" in inspect.signature(cls).parameters else {}


def open_memory(directory: str) -> Adapter:
    """mirrorkv MemoryStore."""
    from mirrorkv.stores.memory import MemoryStore

    return _mirrorkv_adapter(MemoryStore())


def open_sqlite(directory: str) -> Adapter:
    """mirrorkv SQLiteStore (default durability: WAL, synchronous=NORMAL)."""
    from mirrorkv.stores.sqlite import SQLiteStore

    return _mirrorkv_adapter(
        SQLiteStore(os.path.join(directory, "mkv.db"), **_no_fsync(SQLiteStore))
    )


def open_file(directory: str) -> Adapter:
    """mirrorkv FileStore (default durability: temporary file and rename, no fsync)."""
    from mirrorkv.stores.file import FileStore

    store = FileStore(os.path.join(directory, "files"), **_no_fsync(FileStore))
    return _mirrorkv_adapter(store, transactional=False)


SQLITE_NORMAL = "SQLite WAL, synchronous=NORMAL"

CONTENDERS = [
    Contender("memory", True, "none (in memory)", open_memory),
    Contender("sqlite", True, SQLITE_NORMAL + " (fsync=False, the default)", open_sqlite),
    Contender("file", True, "temp file + rename, no fsync (fsync=False, the default)", open_file),
    Contender("dict", False, "none (in memory)", open_dict, "the in-memory limit"),
    Contender("minimalkv-dict", False, "none (in memory)", open_minimalkv_dict),
    Contender(
        "sqlite3",
        False,
        SQLITE_NORMAL + ", autocommit",
        open_raw_sqlite,
        "the SQLite limit: one statement per call, (key, value) WITHOUT ROWID",
    ),
    Contender("diskcache", False, SQLITE_NORMAL + " (its defaults)", open_diskcache),
    Contender(
        "sqlitedict",
        False,
        SQLITE_NORMAL + " (set by us; its defaults are DELETE, FULL), autocommit",
        open_sqlitedict,
    ),
    Contender(
        "minimalkv-sql",
        False,
        SQLITE_NORMAL + " (set by us; SQLite's defaults are DELETE, FULL)",
        open_minimalkv_sql,
        "SQLAlchemyStore; keys with '/' mapped to '.'",
    ),
    Contender(
        "lmdb",
        False,
        "sync=False: process-crash safe; power loss may lose or corrupt",
        open_lmdb,
    ),
    Contender(
        "minimalkv-fs",
        False,
        "file written in place (can tear), no fsync",
        open_minimalkv_fs,
        "FilesystemStore; keys with '/' mapped to '.'",
    ),
]
