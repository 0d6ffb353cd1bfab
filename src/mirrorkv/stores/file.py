"""`FileStore`: one file per value in a directory tree."""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import secrets
import stat
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any, BinaryIO

from ..errors import KeyNotFound, NotSupported, PreconditionFailed, StoreUnavailable
from ..keys import check_key
from ..meta import DEFAULT_CONTENT_TYPE, EtagSource, Meta, etag_of
from ..store import (
    Capability,
    PutOptions,
    Store,
    check_counter_arguments,
    check_precondition,
    parse_counter,
)
from ..urls import StoreURL, parse_bool, reject_unknown
from ._file_errors import OSErrorTranslator
from ._file_io import (
    EMPTY,
    BytesSource,
    LazyEtag,
    Source,
    StreamSource,
    adopt,
    fsync_dir,
    is_plain,
    read_all,
    read_sidecar,
    remove_tree_quietly,
    sidecar_of,
    sidecar_record,
    unlink_quietly,
    version_of,
    write_all,
)
from ._file_keys import LOCK_NAME, MAX_NAME, TEMP_PREFIX, VALUE_NAME, encode_key, plain_key
from ._file_lock import StoreLock
from ._file_walk import walk

__all__ = ["FileStore"]

_new_meta = tuple.__new__
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC
_RETRIES = 100


class FileStore(Store):
    """A store kept as one file per value under a root directory.

    **Layout.** A key maps to a path below ``root`` as
    :mod:`mirrorkv.stores._file_keys` describes: keys of ordinary characters
    (``photos/2026/cat.jpg``) are their own path, anything else is escaped
    with ``%XX``, and no key can leave the root or share a path with another.
    Where a key is also a directory (``a`` next to ``a/b``) its value lives at
    ``a/%%v``. Names starting with ``%%`` belong to the store (values of
    directories, metadata sidecars, temporary files, the lock) and never
    appear as keys.

    **Files of other tools.** A file written straight into the tree is a value:
    readable, and listed under the key its path decodes to, with the default
    content type and no metadata. A name that is not the canonical encoding
    of a key (``CON``, ``%zz``, ``a%2fb``, names with a trailing dot, names not
    valid UTF-8, ``%%`` names) is skipped by listings. Symbolic links to files
    are values; symbolic links to directories, sockets and the like are skipped.

    **Writes.** A value is written to a temporary file in its target directory
    and renamed over the old one, so a reader sees the old value or the new,
    never part of one, and the metadata it sees belongs to the value it reads.
    Content type and user metadata, where not the defaults, go to a sidecar
    file ``%%m.<name>`` that names the exact file (inode, size, nanosecond
    mtime) it describes: a sidecar left behind by a crash, or by a later
    write without metadata, describes no current value and is ignored.
    ``version`` is made of the file's nanosecond mtime and inode, so it survives
    a restart and changes on every write; ``etag`` is the MD5 of the content,
    read from the file only when first asked for (if the value was replaced
    in between, the etag reads ``stale:<version>``, which equals no etag, so
    a conditional write with it fails as it should).

    **Durability.** With ``fsync=False`` (the default) a write that returned
    is in the operating system's cache: it survives the process being killed
    (``kill -9``) or crashing, but after a power loss or kernel crash a write
    made shortly before may be missing (the key then holds its previous
    value, or on some file systems an empty file, or is absent). With
    ``fsync=True`` the file is flushed to the device before it is renamed into
    place, and its directory (and any directory created for it) after, so a
    write that returned also survives a power loss; a delete that returned
    does too. Neither setting ever leaves a partly written value under a key.

    **Concurrency.** Any number of threads and processes may use one root.
    Plain writes take no lock (a rename is atomic); conditional writes,
    writes with metadata, counters, deletes, and moving a value aside to make
    room for a directory take one exclusive lock (``flock`` on ``%%lock`` in
    the root, plus a thread lock), so ``incr`` from several processes loses
    no update. A read that finds nothing checks again under the lock, so a
    value being moved aside is never reported missing. Temporary files left
    by a crashed writer are invisible to listings, and removed by a listing
    that meets one untouched for an hour.

    **Listing** yields keys in ascending UTF-8 byte order, one directory read
    at a time; ``prefix`` and ``start_after`` skip whole directories.

    **Limits.** The encoded path of a key is at most about 3,100 bytes, so a
    root path longer than about 900 bytes may make the longest keys fail
    with :class:`MirrorKVError` (the system's path limit).
    """

    capabilities = Capability.CONDITIONAL_WRITES | Capability.MULTI_PROCESS | Capability.URLS

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = False) -> None:
        """Open (and create if absent) the store rooted at directory ``root``."""
        self._root = os.path.abspath(os.fspath(root))
        self._prefix = self._root.rstrip("/") + "/"
        self._errors = OSErrorTranslator(self._root, self._prefix)
        self._fsync = bool(fsync)
        self._token = secrets.token_hex(6) + "."
        self._counter = itertools.count()
        self._lock = StoreLock(self._prefix + LOCK_NAME)
        with self._errors(None):
            os.makedirs(self._root, exist_ok=True)

    @classmethod
    def from_url(cls, url: StoreURL, **options: Any) -> FileStore:
        """``file:///abs/root`` (absolute) or ``file:rel/root``; option ``fsync`` (bool)."""
        reject_unknown(url, options, ("fsync",))
        fsync = parse_bool("fsync", options.get("fsync", False))
        return cls(os.path.abspath(url.local_path()), fsync=fsync)

    @property
    def root(self) -> str:
        """The absolute path of the root directory."""
        return self._root

    @property
    def url(self) -> str:
        """The URL that opens this store again: ``file:///abs/root``."""
        return Path(self._root).as_uri()

    def __repr__(self) -> str:
        return f"FileStore({self._root!r}, fsync={self._fsync})"

    def close(self) -> None:
        """Release the lock file. The store stays usable; closing twice is harmless."""
        with self._errors(None):
            self._lock.close()

    def _url_for(self, key: str, method: str, expires: float | None) -> str:
        """The ``file://`` URL of the file that holds (or would hold) the value of ``key``.

        It never expires; only GET (a URL to write through would skip the
        temporary file, rename and metadata of a real put).
        """
        if method != "GET":
            raise NotSupported("FileStore URLs read a value; write through put()")
        path = self._path(key)
        if os.path.isdir(path):
            path += "/" + VALUE_NAME
        return Path(path).as_uri()

    # -- fast paths: the common case inlined (keys that are their own path, no options) --

    def get(self, key: str) -> bytes:
        """The value of ``key``. Raises :class:`KeyNotFound` where absent."""
        if key.__class__ is str and len(key) <= MAX_NAME and plain_key(key):
            try:
                fd = os.open(self._prefix + key, _READ_FLAGS)
            except OSError:
                return self._get(key)  # absent, moved aside, or an error: the slow path decides
            try:
                return read_all(fd)
            except OSError:
                pass  # a directory (the value is inside it) or an error
            finally:
                os.close(fd)
        return super().get(key)

    def put(
        self,
        key: str,
        data: bytes | bytearray | memoryview,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> Meta:
        """Store ``data`` under ``key`` atomically; see :meth:`Store.put`."""
        if (
            content_type is None
            and metadata is None
            and if_match is None
            and if_none_match is None
            and data.__class__ is bytes
            and key.__class__ is str
            and len(key) <= MAX_NAME
            and plain_key(key)
        ):
            path = self._prefix + key
            temp = f"{path[: path.rfind('/')]}/{TEMP_PREFIX}{self._token}{next(self._counter):x}"
            try:
                fd = os.open(temp, _TEMP_FLAGS, 0o666)
            except OSError:
                fd = -1  # no directory yet, or an error: the slow path decides
            if fd >= 0:
                try:
                    try:
                        write_all(fd, data)
                        if self._fsync:
                            os.fsync(fd)
                        info = os.fstat(fd)
                    finally:
                        os.close(fd)
                    os.replace(temp, path)
                except OSError:
                    unlink_quietly(temp)  # a directory in the way, or an error: go slow
                else:
                    if self._fsync:
                        fsync_dir(path[: path.rfind("/")])
                    fields = (key, len(data), data, info.st_mtime, DEFAULT_CONTENT_TYPE, EMPTY)
                    meta: Meta = _new_meta(Meta, (*fields, version_of(info)))
                    return meta
        return super().put(
            key,
            data,
            content_type=content_type,
            metadata=metadata,
            if_match=if_match,
            if_none_match=if_none_match,
        )

    # -- reads --------------------------------------------------------------

    def _get(self, key: str) -> bytes:
        path = self._prefix + encode_key(key)
        with self._errors(key):
            try:
                fd = os.open(path, _READ_FLAGS)
            except (FileNotFoundError, NotADirectoryError):
                return self._confirm(key, path)[0]
            try:
                return read_all(fd)
            except IsADirectoryError:
                return self._confirm(key, path)[0]
            finally:
                os.close(fd)

    def _get_with_meta(self, key: str) -> tuple[bytes, Meta]:
        path = self._prefix + encode_key(key)
        with self._errors(key):
            data, info, where = self._confirm(key, path)
            return data, self._meta(key, where, info, data)

    def _head(self, key: str) -> Meta:
        path = self._prefix + encode_key(key)
        with self._errors(key):
            found = self._stat(path)
            if found is None:
                with self._lock:
                    found = self._stat(path)
                if found is None:
                    raise KeyNotFound(key)
            where, info = found
            return self._meta(key, where, info, None)

    def _open(self, key: str) -> BinaryIO:
        path = self._prefix + encode_key(key)
        with self._errors(key):
            fd = self._open_value(path)
            if fd < 0:
                with self._lock:
                    fd = self._open_value(path)
                if fd < 0:
                    raise KeyNotFound(key)
            return open(fd, "rb")

    def _confirm(self, key: str, path: str) -> tuple[bytes, os.stat_result, str]:
        """The value at ``path``, looked for again under the lock if it seems absent."""
        found = self._load(path)
        if found is None:
            with self._lock:
                found = self._load(path)
            if found is None:
                raise KeyNotFound(key)
        return found

    def _load(self, path: str) -> tuple[bytes, os.stat_result, str] | None:
        """The value of the key at ``path``, its file's stat and where it was; ``None``: absent."""
        for where in (path, path + "/" + VALUE_NAME):
            try:
                fd = os.open(where, _READ_FLAGS)
            except (FileNotFoundError, NotADirectoryError):
                return None
            try:
                info = os.fstat(fd)
                if stat.S_ISDIR(info.st_mode):
                    continue
                return read_all(fd), info, where
            finally:
                os.close(fd)
        return None

    def _open_value(self, path: str) -> int:
        """An open descriptor on the value's file, or -1 where the key is absent."""
        for where in (path, path + "/" + VALUE_NAME):
            try:
                fd = os.open(where, _READ_FLAGS)
            except (FileNotFoundError, NotADirectoryError):
                return -1
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                return fd
            os.close(fd)
        return -1

    def _stat(self, path: str) -> tuple[str, os.stat_result] | None:
        """Where the value of the key at ``path`` is, and its stat; ``None``: absent."""
        for where in (path, path + "/" + VALUE_NAME):
            try:
                info = os.stat(where)
            except (FileNotFoundError, NotADirectoryError):
                return None
            if not stat.S_ISDIR(info.st_mode):
                return where, info
        return None

    def _meta(
        self,
        key: str,
        where: str,
        info: os.stat_result,
        data: bytes | None,
        sidecar: bool | None = None,
    ) -> Meta:
        """The Meta of the value in file ``where`` (``sidecar=False``: known to have none)."""
        content_type, metadata = DEFAULT_CONTENT_TYPE, EMPTY
        if sidecar is not False:
            content_type, metadata = read_sidecar(where, info)
        etag: EtagSource = data if data is not None else LazyEtag(where, info)
        fields = (key, info.st_size, etag, info.st_mtime, content_type, metadata, version_of(info))
        meta: Meta = _new_meta(Meta, fields)
        return meta

    # -- writes -------------------------------------------------------------

    def _put(self, key: str, data: bytes, options: PutOptions) -> Meta:
        path = self._prefix + encode_key(key)
        with self._errors(key):
            if options.if_match is None and options.if_none_match is None and is_plain(options):
                return self._write(key, path, BytesSource(data), options)
            with self._lock:
                self._check(key, path, options)
                return self._write(key, path, BytesSource(data), options)

    def _put_stream(self, key: str, stream: IO[bytes], options: PutOptions) -> Meta:
        path = self._prefix + encode_key(key)
        with self._errors(key):
            if options.if_match is None and options.if_none_match is None and is_plain(options):
                return self._write(key, path, StreamSource(stream), options)
            with self._lock:
                self._check(key, path, options)
                return self._write(key, path, StreamSource(stream), options)

    def _check(self, key: str, path: str, options: PutOptions) -> None:
        """Raise PreconditionFailed unless the value at ``path`` meets the write's conditions."""
        if options.if_match is None and options.if_none_match is None:
            return
        found = self._load(path)
        current = None if found is None else Meta(key, len(found[0]), found[0], 0.0)
        check_precondition(key, current, options)

    def incr(self, key: str, delta: int = 1, *, initial: int = 0) -> int:
        """Add ``delta`` to the counter at ``key`` under the store lock; see :meth:`Store.incr`."""
        check_key(key)
        check_counter_arguments(delta, initial)
        path = self._prefix + encode_key(key)
        with self._errors(key), self._lock:
            found = self._load(path)
            if found is None:
                value = initial + delta
                options = PutOptions()
            else:
                data, info, where = found
                value = parse_counter(key, data) + delta
                options = PutOptions(*read_sidecar(where, info))
            self._write(key, path, BytesSource(b"%d" % value), options)
        return value

    def _write(self, key: str, path: str, source: Source, options: PutOptions) -> Meta:
        """Write a value to a temporary file and rename it to ``path`` (or ``path/%%v``)."""
        with_sidecar = not is_plain(options)
        fd, temp = self._create_temp(path)
        try:
            try:
                etag = source.write(fd)
                if with_sidecar:
                    # A fine-grained mtime ties the sidecar to this file even if a
                    # later file reuses the inode number within one clock tick.
                    now = time.time_ns()
                    os.utime(fd, ns=(now, now))
                if self._fsync:
                    os.fsync(fd)
                info = os.fstat(fd)
            finally:
                os.close(fd)
            self._place(path, temp, info, options if with_sidecar else None)
        except BaseException:
            unlink_quietly(temp)
            raise
        fields = (
            key,
            info.st_size,
            etag,
            info.st_mtime,
            options.content_type,
            options.metadata,
            version_of(info),
        )
        meta: Meta = _new_meta(Meta, fields)
        return meta

    def _create_temp(self, path: str) -> tuple[int, str]:
        directory = path[: path.rfind("/")]
        for _ in range(_RETRIES):
            temp = f"{directory}/{TEMP_PREFIX}{self._token}{next(self._counter):x}"
            try:
                return os.open(temp, _TEMP_FLAGS, 0o666), temp
            except FileExistsError:  # another process drew the same token
                self._token = secrets.token_hex(6) + "."
            except (FileNotFoundError, NotADirectoryError):
                self._make_dir(directory)
        raise StoreUnavailable(
            f"could not create a temporary file in {self._errors.relative(directory)}"
        )

    def _place(
        self, path: str, temp: str, info: os.stat_result, options: PutOptions | None
    ) -> None:
        """Rename ``temp`` to ``path``, or into ``path`` where that is a directory.

        With ``options``, writes the sidecar first (the caller holds the lock).
        """
        in_dir = False
        for _ in range(_RETRIES):
            target = path + "/" + VALUE_NAME if in_dir else path
            try:
                if options is not None:
                    self._write_sidecar(target, info, options)
                os.replace(temp, target)
            except IsADirectoryError:
                if in_dir:
                    raise
                in_dir = True
                continue
            except (FileNotFoundError, NotADirectoryError):
                if not in_dir:
                    raise
                in_dir = False  # the directory was removed meanwhile: a file will do
                continue
            if options is not None and in_dir:
                unlink_quietly(sidecar_of(path))
            if self._fsync:
                fsync_dir(target[: target.rfind("/")])
            return
        raise StoreUnavailable(f"could not place a value at {self._errors.relative(path)}")

    def _write_sidecar(self, target: str, info: os.stat_result, options: PutOptions) -> None:
        fd, temp = self._create_temp(target)
        try:
            try:
                write_all(fd, sidecar_record(info, options))
                if self._fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, sidecar_of(target))
        except BaseException:
            unlink_quietly(temp)
            raise

    def _make_dir(self, directory: str) -> None:
        """Create ``directory`` and its parents, moving aside values in the way."""
        for _ in range(_RETRIES):
            try:
                os.makedirs(directory, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                if not self._clear_way(directory):
                    raise  # nothing of ours in the way (the root itself is not a directory)
            except FileNotFoundError:
                continue  # a parent was removed as we went: go again
            else:
                if self._fsync:
                    while len(directory) >= len(self._prefix):
                        directory = directory[: directory.rfind("/")]
                        fsync_dir(directory)
                return
        raise StoreUnavailable(f"could not create directory {self._errors.relative(directory)}")

    def _clear_way(self, directory: str) -> bool:
        """Move aside the value files where ``directory`` needs directories; False: none found."""
        moved = False
        with self._lock:
            current = self._root
            for name in directory[len(self._prefix) :].split("/"):
                current = f"{current}/{name}"
                if os.path.lexists(current) and not os.path.isdir(current):
                    self._move_aside(current)
                    moved = True
        return moved

    def _move_aside(self, path: str) -> None:
        """Turn the value file at ``path`` into a directory holding it as ``%%v``.

        Done under the lock. Readers that miss the value in between look again
        under the lock. A plain write that lands on ``path`` meanwhile is newer
        than the value being moved, which is then dropped.
        """
        parent = path[: path.rfind("/")]
        with self._lock:
            for _ in range(_RETRIES):
                if os.path.isdir(path):
                    return
                holder = f"{parent}/{TEMP_PREFIX}{self._token}{next(self._counter):x}"
                os.mkdir(holder)
                try:
                    with contextlib.suppress(FileNotFoundError):
                        os.rename(sidecar_of(path), sidecar_of(f"{holder}/{VALUE_NAME}"))
                    with contextlib.suppress(FileNotFoundError):
                        os.rename(path, f"{holder}/{VALUE_NAME}")
                    try:
                        os.rename(holder, path)
                    except OSError as error:
                        if error.errno not in (errno.ENOTDIR, errno.ENOTEMPTY, errno.EEXIST):
                            raise
                        if not os.path.isdir(path):
                            continue  # a newer value took the name: move that one
                        # A writer of a key below made the directory meanwhile: keep the
                        # value inside it unless a newer one got there first.
                        adopt(holder, path)
                    if self._fsync:
                        fsync_dir(parent)
                    return
                finally:
                    remove_tree_quietly(holder)
            raise StoreUnavailable(f"could not make room for {self._errors.relative(path)}")

    # -- deletes ------------------------------------------------------------

    def _delete(self, key: str) -> None:
        path = self._prefix + encode_key(key)
        with self._errors(key), self._lock:
            self._remove(path)

    def _delete_if(self, key: str, etag: str) -> None:
        """Remove ``key`` under the lock if its value's etag is ``etag``.

        Plain writes take no lock, so the value file is first renamed aside:
        the file the rename took is the one checked, and a write landing after
        it is kept. A file that turns out not to match is put back unless a
        newer value took its name meanwhile.
        """
        path = self._prefix + encode_key(key)
        with self._errors(key), self._lock:
            found = self._load(path)
            if found is None or etag_of(found[0]) != etag:
                raise PreconditionFailed(f"{key!r} does not have etag {etag!r}")
            seen, where = found[1], found[2]
            aside = f"{where[: where.rfind('/')]}/{TEMP_PREFIX}{self._token}{next(self._counter):x}"
            try:
                os.rename(where, aside)
            except (FileNotFoundError, NotADirectoryError):
                raise PreconditionFailed(f"{key!r} does not have etag {etag!r}") from None
            taken = os.stat(aside)
            same = (taken.st_ino, taken.st_size, taken.st_mtime_ns)
            if same != (seen.st_ino, seen.st_size, seen.st_mtime_ns):
                fd = os.open(aside, _READ_FLAGS)  # replaced between the check and the rename
                try:
                    data = read_all(fd)
                finally:
                    os.close(fd)
                if etag_of(data) != etag:
                    self._put_back(aside, where, path)
                    raise PreconditionFailed(f"{key!r} does not have etag {etag!r}")
            os.unlink(aside)
            self._tidy(where)

    def _put_back(self, aside: str, where: str, path: str) -> None:
        """Put value file ``aside`` back at ``where`` unless a newer value is there (locked)."""
        if where == path and os.path.isdir(path):
            where = path + "/" + VALUE_NAME  # a key below made the name a directory meanwhile
        try:
            os.link(aside, where, follow_symlinks=False)
        except FileExistsError:
            pass  # a newer value is there: it wins
        except OSError:
            if os.path.lexists(where):
                raise
            os.rename(aside, where)  # no hard links here; the lock keeps other movers out
            return
        unlink_quietly(aside)

    def _delete_many(self, keys: list[str]) -> None:
        with self._errors(None), self._lock:
            for key in keys:
                self._remove(self._prefix + encode_key(key))

    def _remove(self, path: str) -> None:
        """Remove the value at ``path``, its sidecar and any parents left empty (under the lock)."""
        target = path
        try:
            os.unlink(target)
        except (IsADirectoryError, PermissionError):
            if not os.path.isdir(path):
                raise
            target = path + "/" + VALUE_NAME
            try:
                os.unlink(target)
            except FileNotFoundError:
                return
        except (FileNotFoundError, NotADirectoryError):
            return
        self._tidy(target)

    def _tidy(self, target: str) -> None:
        """After value file ``target`` was removed: its sidecar and the parents left empty."""
        unlink_quietly(sidecar_of(target))
        directory = target[: target.rfind("/")]
        while len(directory) >= len(self._prefix):
            try:
                os.rmdir(directory)
            except OSError:
                break
            directory = directory[: directory.rfind("/")]
        if self._fsync:
            fsync_dir(directory)

    # -- listing ------------------------------------------------------------

    def _list(self, prefix: str, start_after: str | None) -> Iterator[Meta]:
        with self._errors(None):
            for key, where, info, sidecar in walk(self._root, prefix, start_after, True):
                assert info is not None
                yield self._meta(key, where, info, None, sidecar)

    def _keys(self, prefix: str, start_after: str | None) -> Iterator[str]:
        with self._errors(None):
            for key, _where, _info, _sidecar in walk(self._root, prefix, start_after, False):
                yield key

    # -- paths ----------------------------------------------------------------

    def _path(self, key: str) -> str:
        return self._prefix + encode_key(key)
