"""File-level helpers of :class:`~mirrorkv.stores.file.FileStore`: values, sidecars, etags.

Nothing here knows about keys; paths come in already encoded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import IO

from ..errors import MirrorKVError
from ..meta import DEFAULT_CONTENT_TYPE, NO_METADATA, EtagSource
from ..store import CHUNK_SIZE, PutOptions
from ._file_keys import META_PREFIX, VALUE_NAME

__all__ = [
    "EMPTY",
    "BytesSource",
    "LazyEtag",
    "Source",
    "StreamSource",
    "adopt",
    "fsync_dir",
    "is_plain",
    "read_all",
    "read_sidecar",
    "remove_tree_quietly",
    "same_file",
    "sidecar_of",
    "sidecar_record",
    "unlink_quietly",
    "version_of",
    "write_all",
]

#: The metadata of a value stored without any.
EMPTY = NO_METADATA
_READ_SIZE = 1 << 16


class Source:
    """What a write copies into its temporary file."""

    __slots__ = ()

    def write(self, fd: int) -> EtagSource:
        """Write everything to ``fd``; return the etag or something Meta computes it from."""
        raise NotImplementedError


class BytesSource(Source):
    __slots__ = ("_data",)

    def __init__(self, data: bytes) -> None:
        self._data = data

    def write(self, fd: int) -> EtagSource:
        write_all(fd, self._data)
        return self._data


class StreamSource(Source):
    __slots__ = ("_stream",)

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    def write(self, fd: int) -> EtagSource:
        digest = hashlib.md5(usedforsecurity=False)
        while chunk := self._stream.read(CHUNK_SIZE):
            digest.update(chunk)
            write_all(fd, chunk)
        return digest.hexdigest()


class LazyEtag:
    """The MD5 of one file's content, read on the first call and then remembered."""

    __slots__ = ("_info", "_path", "_value")

    def __init__(self, path: str, info: os.stat_result) -> None:
        self._path = path
        self._info = info
        self._value: str | None = None

    def __call__(self) -> str:
        if self._value is None:
            self._value = self._compute()
        return self._value

    def _compute(self) -> str:
        stale = f"stale:{version_of(self._info)}"
        try:
            with open(self._path, "rb", buffering=0) as file:
                if not same_file(os.fstat(file.fileno()), self._info):
                    return stale
                digest = hashlib.md5(usedforsecurity=False)
                while chunk := file.read(CHUNK_SIZE):
                    digest.update(chunk)
                return digest.hexdigest()
        except FileNotFoundError:
            return stale
        except OSError as error:
            raise MirrorKVError(f"could not read a value to compute its etag: {error}") from error


def is_plain(options: PutOptions) -> bool:
    return options.content_type == DEFAULT_CONTENT_TYPE and not options.metadata


def same_file(info: os.stat_result, other: os.stat_result) -> bool:
    return (
        info.st_ino == other.st_ino
        and info.st_size == other.st_size
        and info.st_mtime_ns == other.st_mtime_ns
    )


def version_of(info: os.stat_result) -> int:
    """The version of the file ``info`` describes: its nanosecond mtime and inode in one int.

    A new value is a new file, created while the old one still exists, so it
    never has the old one's inode: the version changes on every write.
    (Meta turns it into a string when asked.)
    """
    return info.st_mtime_ns << 64 | info.st_ino


def sidecar_of(path: str) -> str:
    cut = path.rfind("/") + 1
    return f"{path[:cut]}{META_PREFIX}{path[cut:]}"


def sidecar_record(info: os.stat_result, options: PutOptions) -> bytes:
    """The sidecar of the file ``info`` describes: its identity, content type and metadata."""
    record = {
        "ino": info.st_ino,
        "size": info.st_size,
        "mtime_ns": info.st_mtime_ns,
        "content_type": options.content_type,
        "metadata": dict(options.metadata),
    }
    return json.dumps(record, ensure_ascii=False).encode("utf-8")


def read_sidecar(where: str, info: os.stat_result) -> tuple[str, Mapping[str, str]]:
    """Content type and metadata of the value in file ``where``, if its sidecar describes it."""
    try:
        with open(sidecar_of(where), "rb", buffering=0) as file:
            record = json.loads(file.read())
        if (
            record["ino"] == info.st_ino
            and record["size"] == info.st_size
            and record["mtime_ns"] == info.st_mtime_ns
        ):
            metadata = record["metadata"]
            content_type = record["content_type"]
            if isinstance(content_type, str) and isinstance(metadata, dict):
                return content_type, MappingProxyType(
                    {str(name): str(value) for name, value in metadata.items()}
                )
    except (FileNotFoundError, NotADirectoryError):
        pass
    except (ValueError, KeyError, TypeError):
        pass  # not a sidecar we wrote: ignore it like a stale one
    return DEFAULT_CONTENT_TYPE, EMPTY


def read_all(fd: int) -> bytes:
    data = os.read(fd, _READ_SIZE)
    if not data:
        return data
    parts = [data]
    while chunk := os.read(fd, CHUNK_SIZE if len(data) == _READ_SIZE else _READ_SIZE):
        parts.append(chunk)
    return data if len(parts) == 1 else b"".join(parts)


def write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    if written < len(data):
        view = memoryview(data)
        while written < len(data):
            written += os.write(fd, view[written:])


def fsync_dir(directory: str) -> None:
    fd = os.open(directory or "/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def remove_tree_quietly(directory: str) -> None:
    """Remove a directory of the store's own making with the files in it, if it still exists."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        unlink_quietly(f"{directory}/{name}")
    with contextlib.suppress(OSError):
        os.rmdir(directory)


def adopt(holder: str, directory: str) -> None:
    """Move ``holder``'s value (and sidecar) into ``directory``, never over a newer value."""
    value = f"{holder}/{VALUE_NAME}"
    if not os.path.exists(value):
        return
    with contextlib.suppress(FileNotFoundError):
        os.replace(sidecar_of(value), sidecar_of(f"{directory}/{VALUE_NAME}"))
    with contextlib.suppress(FileExistsError):
        os.link(value, f"{directory}/{VALUE_NAME}")
