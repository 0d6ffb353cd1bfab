"""The SQL store's rows: versions, blob ids, metadata JSON, and rows to `Meta` records."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, cast

from ..errors import MirrorKVError
from ..meta import DEFAULT_CONTENT_TYPE, NO_METADATA, Meta

__all__ = ["dump_metadata", "load_metadata", "new_blob_id", "next_version", "row_meta", "text"]

_new_meta = tuple.__new__

# Versions: a random per-process prefix and a counter, as in the SQLite store.
_version_prefix = os.urandom(8).hex() + "."
_version_counter = itertools.count(1)


def next_version() -> str:
    """A version string no other write (of any process) has used."""
    return f"{_version_prefix}{next(_version_counter):x}"


def new_blob_id() -> int:
    """A fresh random id for the chunks of one large value."""
    return int.from_bytes(os.urandom(8), "big") >> 1  # a positive BIGINT


def _after_fork_in_child() -> None:
    global _version_prefix
    _version_prefix = os.urandom(8).hex() + "."


os.register_at_fork(after_in_child=_after_fork_in_child)


def dump_metadata(metadata: Mapping[str, str]) -> str | None:
    """User metadata as the JSON stored in its column (None for none)."""
    if not metadata:
        return None
    return json.dumps(dict(metadata), ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def load_metadata(text: str | bytes | None) -> Mapping[str, str]:
    """User metadata from its column, read-only."""
    if not text:
        return NO_METADATA
    loaded = json.loads(text)
    if not isinstance(loaded, dict):
        raise MirrorKVError("a row's metadata is not a JSON object")
    return MappingProxyType(loaded)


def text(value: str | bytes) -> str:
    """A column's text (MySQL returns the binary key column as bytes)."""
    return value if value.__class__ is str else bytes(cast(bytes, value)).decode("utf-8")


def row_meta(row: tuple[Any, ...]) -> Meta:
    """A ``Meta`` from ``(name, size, etag, modified, content_type, metadata, version)``."""
    name, size, etag, modified, content_type, metadata, version = row
    fields = (
        text(name),
        size,
        text(etag),
        modified,
        content_type or DEFAULT_CONTENT_TYPE,
        load_metadata(metadata),
        text(version),
    )
    meta: Meta = _new_meta(Meta, fields)
    return meta
