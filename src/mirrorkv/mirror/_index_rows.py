"""Index records as rows: the fields every index backend stores, and back to `Meta`.

A stored record is ``(size, etag, modified, content_type, metadata, version)``:
``modified`` a float POSIX time, ``content_type`` None for the default,
``metadata`` JSON text (None when empty). Shared by the SQLite, Redis and
PostgreSQL indexes so that a record round-trips identically in each.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from ..errors import InvalidValue
from ..meta import DEFAULT_CONTENT_TYPE, NO_METADATA, Details, Meta
from .index import LISTED, timestamp

__all__ = ["meta_row", "row_meta", "rows_metas"]

_new_meta = tuple.__new__


def row_meta(row: tuple[Any, ...]) -> Meta:
    """The record of a row ``(key, size, etag, modified, content_type, metadata, version)``."""
    return rows_metas((row,))[0]


def rows_metas(rows: Iterable[tuple[Any, ...]], listed: Details | None = None) -> list[Meta]:
    """:func:`row_meta` of each row, in one pass.

    With ``listed``, a row that holds only what a listing gave (version
    :data:`~.index.LISTED`) becomes a record with ``listed`` in place of its
    content type, metadata and version (see :meth:`MetadataIndex.list_pages`).
    """
    marker = None if listed is None else LISTED  # None: no stored version equals it
    return [
        _new_meta(Meta, (key, size, etag, modified, listed, listed, listed))
        if version == marker
        else _new_meta(
            Meta,
            (
                key,
                size,
                etag,
                modified,
                DEFAULT_CONTENT_TYPE if content_type is None else content_type,
                NO_METADATA if metadata is None else MappingProxyType(json.loads(metadata)),
                version,
            ),
        )
        for key, size, etag, modified, content_type, metadata, version in rows
    ]


def _dump_metadata(metadata: Mapping[str, str]) -> str | None:
    return json.dumps(dict(metadata), ensure_ascii=False, sort_keys=True) if metadata else None


def meta_row(meta: Meta) -> tuple[int, str, float, str | None, str | None, str]:
    """``(size, etag, modified, content_type, metadata, version)`` of a record, as stored.

    Reads every field, so a record that defers some (a listed S3 object)
    fetches them here: the caller decides what it passes.
    """
    if not isinstance(meta, Meta):
        raise TypeError(f"an index records Meta, not {type(meta).__name__}")
    size = meta.size
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise InvalidValue(f"a size is an int >= 0, not {size!r}")
    raw_modified = meta[3]
    modified = raw_modified if raw_modified.__class__ is float else timestamp(meta.modified)
    content_type = meta.content_type
    return (
        size,
        meta.etag,
        modified,
        None if content_type == DEFAULT_CONTENT_TYPE else content_type,
        _dump_metadata(meta.metadata),
        meta.version,
    )
