"""ListObjects and ListObjectsV2 answered from a :class:`MetadataIndex`, in boto3's shape.

S3's rules, kept here: keys in UTF-8 byte order; with a delimiter, the keys
whose rest (after the prefix) holds the delimiter roll up into one common
prefix each, listed once; a page holds at most ``MaxKeys`` (capped at 1,000)
keys and prefixes together; a common prefix that sorts at or before the
start position (``StartAfter``, ``Marker``, a continuation) is not listed
again; ``EncodingType="url"`` encodes keys, prefixes, the delimiter and the
start position as S3 does (form encoding, ``/`` kept).

Continuation tokens are ours: ``mkv.`` and the URL-safe base64 of where the
page stopped (after a key, or past a common prefix). A token not starting
with ``mkv.`` was made by S3 and is answered by S3.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote_plus

from ..keys import prefix_upper_bound
from ..meta import Meta
from .index import MetadataIndex

__all__ = [
    "MAX_PAGE",
    "Position",
    "decode_token",
    "encode_token",
    "list_v1",
    "list_v2",
    "walk",
]

#: The most keys and prefixes S3 returns in one page.
MAX_PAGE = 1000
_TOKEN = "mkv."
_OWNER_KEYS = ("ID", "DisplayName")

#: Where a listing resumes: ``("k", key)`` after a key, ``("p", prefix)`` past a common prefix.
Position = tuple[str, str]


def encode_token(position: Position) -> str:
    """The continuation token of ``position``."""
    kind, text = position
    raw = f"{kind}\x00{text}".encode()
    return _TOKEN + base64.urlsafe_b64encode(raw).decode("ascii")


def decode_token(token: str) -> Position | None:
    """The position a token of ours names; None for a token S3 made (or garbage)."""
    if not token.startswith(_TOKEN):
        return None
    try:
        raw = base64.urlsafe_b64decode(token[len(_TOKEN) :].encode("ascii")).decode()
    except (binascii.Error, UnicodeError, ValueError):
        return None
    kind, sep, text = raw.partition("\x00")
    if not sep or kind not in ("k", "p") or not text:
        return None
    return kind, text


def _entries(
    index: MetadataIndex, bucket: str, prefix: str, low: str | None, inclusive: bool
) -> Iterator[Meta]:
    """Entries under ``prefix`` from ``low`` (inclusive or not) on."""
    if low is None:
        yield from index.list(bucket, prefix)
        return
    if inclusive and low.startswith(prefix):
        first = index.get(bucket, low)
        if first is not None:
            yield first
    yield from index.list(bucket, prefix, low)


def walk(
    index: MetadataIndex,
    bucket: str,
    prefix: str,
    delimiter: str,
    position: Position | None,
    limit: int,
) -> tuple[list[Meta | str], bool]:
    """One page: entries (``Meta``) and common prefixes (``str``) in order; more to follow?"""
    items: list[Meta | str] = []
    if limit <= 0:
        return items, False
    after: str | None = None
    low: str | None = None
    inclusive = False
    if position is not None:
        kind, text = position
        if kind == "k":
            after, low = text, text
        else:
            after = text
            low, inclusive = prefix_upper_bound(text), True
            if low is None:
                return items, False
    start = len(prefix)
    while True:
        restarted = False
        for meta in _entries(index, bucket, prefix, low, inclusive):
            at = meta.key.find(delimiter, start) if delimiter else -1
            if at == -1:
                if len(items) >= limit:
                    return items, True
                items.append(meta)
                continue
            common = meta.key[: at + len(delimiter)]
            if after is None or common > after:
                if len(items) >= limit:
                    return items, True
                items.append(common)
            low, inclusive = prefix_upper_bound(common), True
            if low is None:
                return items, False
            restarted = True
            break
        if not restarted:
            return items, False


def _last_position(items: list[Meta | str]) -> Position:
    last = items[-1]
    return ("p", last) if isinstance(last, str) else ("k", last.key)


def _encoder(encoded: bool) -> Any:
    return (lambda text: quote_plus(text, safe="/")) if encoded else (lambda text: text)


@functools.lru_cache(maxsize=4096)
def _listed_time(moment: float) -> datetime:
    """A listing's LastModified as botocore parses it (local time zone); cached, as keys
    written in one second share it and dateutil's conversion dominates a page's cost."""
    from dateutil.tz import tzlocal  # type: ignore[import-untyped]

    return datetime.fromtimestamp(moment, tzlocal())


def _content(meta: Meta, encode: Any, owner: Mapping[str, str] | None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "Key": encode(meta.key),
        "LastModified": _listed_time(meta.modified.timestamp()),
        "ETag": f'"{meta.etag}"',
        "Size": meta.size,
        "StorageClass": "STANDARD",
    }
    if owner is not None:
        item["Owner"] = {name: owner[name] for name in _OWNER_KEYS if name in owner}
    return item


def _split(
    items: list[Meta | str], encode: Any, owner: Mapping[str, str] | None
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    contents = [_content(i, encode, owner) for i in items if not isinstance(i, str)]
    prefixes = [{"Prefix": encode(i)} for i in items if isinstance(i, str)]
    return contents, prefixes


def list_v2(
    index: MetadataIndex,
    params: Mapping[str, Any],
    position: Position | None,
    owner: Mapping[str, str] | None,
    response_metadata: dict[str, Any],
) -> dict[str, Any]:
    """The ListObjectsV2 response for ``params`` resuming at ``position``."""
    bucket: str = params["Bucket"]
    prefix: str = params.get("Prefix") or ""
    delimiter: str = params.get("Delimiter") or ""
    max_keys = int(params.get("MaxKeys", MAX_PAGE))
    items, truncated = walk(
        index, bucket, prefix, delimiter, position, max(0, min(max_keys, MAX_PAGE))
    )
    encode = _encoder(params.get("EncodingType") == "url")
    contents, prefixes = _split(items, encode, owner if params.get("FetchOwner") else None)
    response: dict[str, Any] = {"ResponseMetadata": response_metadata, "IsTruncated": truncated}
    _add_listing(response, contents, prefixes, bucket, prefix, delimiter, max_keys, encode)
    response["KeyCount"] = len(items)
    if "ContinuationToken" in params:
        response["ContinuationToken"] = params["ContinuationToken"]
    if truncated:
        response["NextContinuationToken"] = encode_token(_last_position(items))
    if params.get("StartAfter"):
        response["StartAfter"] = encode(params["StartAfter"])
    return response


def _add_listing(
    response: dict[str, Any],
    contents: list[dict[str, Any]],
    prefixes: list[dict[str, str]],
    bucket: str,
    prefix: str,
    delimiter: str,
    max_keys: int,
    encode: Any,
) -> None:
    """Add the fields both ListObjects versions return, in S3's order, to ``response``."""
    if contents:
        response["Contents"] = contents
    response["Name"] = bucket
    response["Prefix"] = encode(prefix)
    if delimiter:
        response["Delimiter"] = encode(delimiter)
    response["MaxKeys"] = max_keys
    if prefixes:
        response["CommonPrefixes"] = prefixes
    response["EncodingType"] = "url"


def list_v1(
    index: MetadataIndex,
    params: Mapping[str, Any],
    owner: Mapping[str, str] | None,
    response_metadata: dict[str, Any],
) -> dict[str, Any]:
    """The ListObjects (version 1) response for ``params`` (``owner`` None: left out)."""
    bucket: str = params["Bucket"]
    prefix: str = params.get("Prefix") or ""
    delimiter: str = params.get("Delimiter") or ""
    marker: str = params.get("Marker") or ""
    max_keys = int(params.get("MaxKeys", MAX_PAGE))
    position: Position | None = ("k", marker) if marker else None
    items, truncated = walk(
        index, bucket, prefix, delimiter, position, max(0, min(max_keys, MAX_PAGE))
    )
    encode = _encoder(params.get("EncodingType") == "url")
    contents, prefixes = _split(items, encode, owner)
    response: dict[str, Any] = {"ResponseMetadata": response_metadata, "IsTruncated": truncated}
    response["Marker"] = encode(marker)
    if truncated and delimiter:
        response["NextMarker"] = encode(_last_position(items)[1])
    _add_listing(response, contents, prefixes, bucket, prefix, delimiter, max_keys, encode)
    return response
