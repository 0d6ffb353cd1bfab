"""Listing a :class:`~mirrorkv.stores.file.FileStore`: keys in UTF-8 byte order, lazily.

A directory's entries are read at once, decoded and sorted by the key text
they stand for, a directory sorting as its name followed by ``/`` (so that
``a-`` < ``a/...`` < ``a0``, as bytes order them) and the value a directory
holds (``%%v``) as its bare name. Directories are entered only when the
walk reaches them, and skipped whole when ``prefix`` or ``start_after`` rules
out every key below them. Names that are not canonical key encodings are
skipped (see :mod:`mirrorkv.stores._file_keys`).
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Iterator

from ._file_keys import (
    CHAIN_PREFIX,
    META_PREFIX,
    RESERVED,
    TEMP_PREFIX,
    VALUE_NAME,
    decode_name,
    decode_piece,
    encode_segment,
    key_names,
)

__all__ = ["STALE_TEMP_SECONDS", "Found", "walk"]

#: A temporary file untouched for this long belongs to a writer that died; listings remove it.
STALE_TEMP_SECONDS = 3600.0

#: What the walk yields for each value: key, file path, its stat (if asked), has-sidecar.
Found = tuple[str, str, os.stat_result | None, bool]

# Entry kinds: a value file, the value a directory holds, a directory's contents.
_FILE, _DIR_VALUE, _DIR = 0, 1, 2

_Entry = tuple[str, int, str]


def walk(root: str, prefix: str, start_after: str | None, with_stat: bool) -> Iterator[Found]:
    """Every value below ``root`` whose key starts with ``prefix`` and sorts after ``start_after``.

    The walk starts in the deepest directory that ``prefix`` names whole.
    ``with_stat=False`` skips the ``stat`` of plain value files (listing keys only).
    """
    if not stat.S_ISDIR(os.stat(root).st_mode):  # a vanished root is an error, not emptiness
        raise NotADirectoryError(errno.ENOTDIR, "the store's root is not a directory", root)
    cut = prefix.rfind("/")
    if cut < 0:
        return _walk_dir(root, "", prefix, start_after, with_stat)
    directory = root + "/" + "/".join(key_names(prefix[:cut]))
    return _walk_dir(directory, prefix[: cut + 1], prefix, start_after, with_stat)


def _walk_dir(
    directory: str, base: str, prefix: str, start_after: str | None, with_stat: bool
) -> Iterator[Found]:
    entries: list[_Entry] = []
    sidecars: set[str] = set()
    _scan(directory, "", (), entries, sidecars)
    entries.sort()
    for name, kind, where in entries:
        key = base + name
        if kind == _DIR:
            if not key.startswith(prefix) and not prefix.startswith(key):
                if key > prefix:
                    return
                continue
            if start_after is not None and start_after > key and not start_after.startswith(key):
                continue  # every key below this directory is <= start_after
            yield from _walk_dir(where, key, prefix, start_after, with_stat)
            continue
        if not key.startswith(prefix):
            if key > prefix:
                return
            continue
        if start_after is not None and key <= start_after:
            continue
        info: os.stat_result | None = None
        if kind == _DIR_VALUE:
            where += "/" + VALUE_NAME
            try:
                info = os.stat(where)
            except (FileNotFoundError, NotADirectoryError):
                continue  # a directory without a value of its own
            yield key, where, info, True
            continue
        if with_stat:
            try:
                info = os.stat(where)
            except (FileNotFoundError, NotADirectoryError):
                continue  # removed since the directory was read
        yield key, where, info, where in sidecars


def _scan(
    directory: str,
    stem: str,
    chain: tuple[str, ...],
    entries: list[_Entry],
    sidecars: set[str],
) -> None:
    """Collect the entries of ``directory``, following the chain of a long segment into it."""
    try:
        listing = os.scandir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return
    with listing:
        for entry in listing:
            name = entry.name
            if name.startswith(RESERVED):
                _scan_reserved(directory, stem, chain, entry, entries, sidecars)
                continue
            if chain:
                piece = decode_piece(name)
                if piece is None or encode_segment(stem + piece) != [*chain, name]:
                    continue
                segment = stem + piece
            else:
                decoded = decode_name(name)
                if decoded is None:
                    continue
                segment = decoded
            where = f"{directory}/{name}"
            if entry.is_dir(follow_symlinks=False):
                entries.append((segment, _DIR_VALUE, where))
                entries.append((segment + "/", _DIR, where))
            elif entry.is_file():
                entries.append((segment, _FILE, where))


def _scan_reserved(
    directory: str,
    stem: str,
    chain: tuple[str, ...],
    entry: os.DirEntry[str],
    entries: list[_Entry],
    sidecars: set[str],
) -> None:
    name = entry.name
    if name.startswith(META_PREFIX):
        sidecars.add(f"{directory}/{name[len(META_PREFIX) :]}")
    elif name.startswith(CHAIN_PREFIX) and entry.is_dir(follow_symlinks=False):
        piece = decode_piece(name[len(CHAIN_PREFIX) :])
        if piece is not None:
            _scan(entry.path, stem + piece, (*chain, name), entries, sidecars)
    elif name.startswith(TEMP_PREFIX):
        try:
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(info.st_mode) and time.time() - info.st_mtime > STALE_TEMP_SECONDS:
                os.unlink(entry.path)
        except OSError:
            pass  # cleaning up is best effort
