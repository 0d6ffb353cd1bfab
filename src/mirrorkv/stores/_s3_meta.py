"""How the S3 store keeps its metadata in S3's user metadata, reversibly.

S3 user metadata travels as ``x-amz-meta-<name>`` HTTP headers: names are
lowercased by the server, and names and values must be ASCII header text
(leading and trailing spaces are lost). mirrorkv's metadata is any ``str`` to
``str``, so an entry is stored as is only where S3 keeps it exactly:

* a *plain* entry (name of lowercase ASCII letters, digits and inner
  hyphens, not starting with ``mkv-``; value of printable ASCII, non-empty,
  without leading or trailing spaces) is stored as ``x-amz-meta-<name>``,
  where other S3 tools see it unchanged;
* every other entry goes into one JSON object (ASCII, ``\\uXXXX`` escapes)
  under the reserved name ``mkv-meta``.

Reserved names of our own, all starting with ``mkv-``: ``mkv-v``, the
version (a fresh token on every write, since S3 gives none without bucket
versioning); ``mkv-md5``, the hex MD5 of a value uploaded in parts (whose S3
ETag is not the MD5 of the value); ``mkv-meta``, the encoded entries.
Entries named ``mkv-...`` written by other tools are ignored on reading.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

from ..meta import DEFAULT_CONTENT_TYPE, NO_METADATA, Meta

__all__ = [
    "MD5",
    "VERSION",
    "decode_metadata",
    "encode_metadata",
    "meta_from_head",
    "new_version",
    "s3_etag",
]

VERSION = "mkv-v"
MD5 = "mkv-md5"
ENCODED = "mkv-meta"
_RESERVED = "mkv-"
_PLAIN_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*\Z")
_PLAIN_VALUE = re.compile(r"[!-~](?:[ -~]*[!-~])?\Z")

# Versions: a random per-process prefix and a counter, unique across
# processes without coordination; renewed in a forked child.
_version_prefix = os.urandom(8).hex()
_version_counter = itertools.count(1)


def new_version() -> str:
    """A version token no other write (of any process) has used."""
    return f"{_version_prefix}.{next(_version_counter):x}"


def _after_fork_in_child() -> None:
    global _version_prefix
    _version_prefix = os.urandom(8).hex()


os.register_at_fork(after_in_child=_after_fork_in_child)


def encode_metadata(metadata: Mapping[str, str], version: str) -> dict[str, str]:
    """The S3 user metadata that stores ``metadata`` and ``version`` (see the module doc)."""
    encoded: dict[str, str] = {VERSION: version}
    if not metadata:
        return encoded
    rest: dict[str, str] = {}
    for name, value in metadata.items():
        if _PLAIN_NAME.match(name) and not name.startswith(_RESERVED) and _PLAIN_VALUE.match(value):
            encoded[name] = value
        else:
            rest[name] = value
    if rest:
        encoded[ENCODED] = json.dumps(rest, ensure_ascii=True, separators=(",", ":"))
    return encoded


def decode_metadata(stored: Mapping[str, str]) -> Mapping[str, str]:
    """The user metadata that :func:`encode_metadata` stored (our reserved entries left out)."""
    if (len(stored) <= 1 and VERSION in stored) or not stored:
        return NO_METADATA
    decoded: dict[str, str] = {}
    for name, value in stored.items():
        if not name.startswith(_RESERVED):
            decoded[name] = value
    packed = stored.get(ENCODED)
    if packed:
        decoded.update(json.loads(packed))
    return MappingProxyType(decoded) if decoded else NO_METADATA


def s3_etag(raw: str) -> str:
    """An S3 ETag without its quotes."""
    return raw.strip('"')


def meta_from_head(key: str, response: Mapping[str, Any]) -> Meta:
    """The :class:`Meta` of a HeadObject or GetObject response for ``key``.

    The etag is the value's MD5: S3's ETag, or ``mkv-md5`` for a value
    uploaded in parts. The version is ``mkv-v``; an object written by another
    tool has none, and gets its ETag and modification time instead.
    """
    stored: Mapping[str, str] = response.get("Metadata") or NO_METADATA
    etag = s3_etag(response.get("ETag", ""))
    modified: datetime = response["LastModified"]
    version = stored.get(VERSION) or f"{etag}@{modified.timestamp():.6f}"
    return Meta(
        key,
        response.get("ContentLength", 0),
        stored.get(MD5) or etag,
        modified,
        response.get("ContentType") or DEFAULT_CONTENT_TYPE,
        decode_metadata(stored),
        version,
    )
