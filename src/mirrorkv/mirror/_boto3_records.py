"""How the boto3 drop-in turns S3 responses into index records, and records into responses.

Pure functions over plain dicts: no boto3 import at module level, so that
``import mirrorkv.mirror`` works without boto3 installed.

A record made from a write or a HEAD holds what HeadObject returns on a plain
bucket: size, ETag (unquoted, as :class:`~mirrorkv.stores.s3.S3Store` keeps
it), modification time, content type, user metadata (names lowercased, as S3
returns them) and a version: the S3 ``VersionId`` where there is one, else a
token of ours (``mkv:`` and a fresh :func:`new_version`). A record made from a
listing, or of an object with fields the index cannot hold (cache headers,
server-side encryption, a storage class other than STANDARD, tags...), has the
version ``""``: a HeadObject of it asks S3.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ..meta import Meta
from ..stores._s3_meta import encode_metadata, new_version, s3_etag

__all__ = [
    "DEFAULT_S3_CONTENT_TYPE",
    "HEAD_FIELDS",
    "LISTING_ONLY",
    "PUT_FIELDS",
    "client_error",
    "head_response",
    "is_store_version",
    "meta_from_head",
    "meta_from_listing",
    "meta_from_put",
    "ok_metadata",
    "response_time",
    "same_object",
    "version_id",
]

#: What S3 gives an object stored without a content type.
DEFAULT_S3_CONTENT_TYPE = "binary/octet-stream"

#: The version of a record holding only what a listing gives.
LISTING_ONLY = ""

#: HeadObject response fields an index record can answer.
HEAD_FIELDS = frozenset(
    {
        "AcceptRanges",
        "ContentLength",
        "ContentType",
        "ETag",
        "LastModified",
        "Metadata",
        "VersionId",
        "ResponseMetadata",
    }
)

#: PutObject parameters that leave nothing in the object the index cannot hold.
PUT_FIELDS = frozenset(
    {
        "Bucket",
        "Key",
        "Body",
        "ContentType",
        "ContentLength",
        "ContentMD5",
        "Metadata",
        "ACL",
        "ChecksumAlgorithm",
        "ChecksumCRC32",
        "ChecksumCRC32C",
        "ChecksumCRC64NVME",
        "ChecksumSHA1",
        "ChecksumSHA256",
        "IfMatch",
        "IfNoneMatch",
        "ExpectedBucketOwner",
        "RequestPayer",
    }
)

_OUR_VERSION = "mkv:"
# S3Store's own version tokens (``mkv-v``), and its fallback ``etag@time``: not S3 VersionIds.
_STORE_TOKEN = re.compile(r"[0-9a-f]{16}\.[0-9a-f]+\Z")


def ok_metadata() -> dict[str, Any]:
    """The ``ResponseMetadata`` of an answer from the index (no request was made)."""
    return {
        "RequestId": "",
        "HostId": "",
        "HTTPStatusCode": 200,
        "HTTPHeaders": {},
        "RetryAttempts": 0,
    }


def client_error(operation: str, status: int, code: str, message: str) -> Exception:
    """A botocore ``ClientError`` shaped as S3 sends it (e.g. HeadObject's bodiless 404)."""
    from botocore.exceptions import ClientError  # type: ignore[import-untyped]

    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {**ok_metadata(), "HTTPStatusCode": status},
    }
    error: Exception = ClientError(response, operation)
    return error


def response_time(response: Mapping[str, Any]) -> datetime:
    """The server's clock at the response: its HTTP ``date`` header (now, where absent)."""
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    raw = headers.get("date")
    if raw:
        try:
            return email.utils.parsedate_to_datetime(raw).astimezone(UTC)
        except (TypeError, ValueError):
            pass
    return datetime.now(UTC).replace(microsecond=0)


def _version(response: Mapping[str, Any]) -> str:
    found = response.get("VersionId")
    return str(found) if found else _OUR_VERSION + new_version()


def is_store_version(version: str) -> bool:
    """True for the version token S3Store writes into ``mkv-v`` (a Mirror records it)."""
    return _STORE_TOKEN.match(version) is not None


def version_id(meta: Meta) -> str | None:
    """The S3 VersionId a record holds; None for a token of ours or of S3Store."""
    version = meta.version
    if not version or version.startswith(_OUR_VERSION) or "@" in version:
        return None
    return None if _STORE_TOKEN.match(version) else version


def _lowered(metadata: Mapping[str, str] | None) -> dict[str, str]:
    return {name.lower(): value for name, value in (metadata or {}).items()}


def meta_from_put(
    key: str, size: int, params: Mapping[str, Any], response: Mapping[str, Any]
) -> Meta:
    """The record of a PutObject of ``size`` bytes with ``params`` and S3's ``response``."""
    holdable = all(name in PUT_FIELDS for name in params)
    return Meta(
        key,
        size,
        s3_etag(response.get("ETag", "")),
        response_time(response),
        params.get("ContentType") or DEFAULT_S3_CONTENT_TYPE,
        _lowered(params.get("Metadata")),
        _version(response) if holdable else LISTING_ONLY,
    )


def meta_from_head(key: str, response: Mapping[str, Any], known: Meta | None = None) -> Meta:
    """The record of a HeadObject response; keeps ``known``'s version for the same object."""
    holdable = all(name in HEAD_FIELDS for name in response)
    meta = Meta(
        key,
        int(response.get("ContentLength", 0)),
        s3_etag(response.get("ETag", "")),
        response["LastModified"],
        response.get("ContentType") or DEFAULT_S3_CONTENT_TYPE,
        _lowered(response.get("Metadata")),
        LISTING_ONLY,
    )
    if not holdable:
        return meta
    if known is not None and known.version and same_object(known, meta):
        return meta.replace(version=known.version)
    return meta.replace(version=_version(response))


def meta_from_listing(item: Mapping[str, Any], known: Meta | None) -> Meta:
    """The record of one listed object: ``known`` itself where it is the same object."""
    meta = Meta(
        item["Key"],
        int(item.get("Size", 0)),
        s3_etag(item.get("ETag", "")),
        item["LastModified"],
        DEFAULT_S3_CONTENT_TYPE,
        {},
        LISTING_ONLY,
    )
    if known is not None and same_object(known, meta):
        return known
    return meta


def same_object(a: Meta, b: Meta) -> bool:
    """True where two records describe one write: same size and ETag, times within a second.

    A listing's time has milliseconds where a HEAD's has whole seconds.
    """
    return (
        a.size == b.size
        and a.etag == b.etag
        and abs(a.modified.timestamp() - b.modified.timestamp()) < 1.0
    )


def head_response(meta: Meta) -> dict[str, Any]:
    """The HeadObject response for a full record, as boto3 returns it."""
    from dateutil.tz import tzutc  # type: ignore[import-untyped]

    modified = datetime.fromtimestamp(int(meta.modified.timestamp()), tzutc())
    etag = f'"{meta.etag}"'
    metadata = dict(meta.metadata)
    if is_store_version(meta.version):
        # Recorded by a Mirror over an S3Store: S3 holds the metadata as S3Store encoded it.
        metadata = encode_metadata(metadata, meta.version)
    headers = {
        "accept-ranges": "bytes",
        "last-modified": email.utils.format_datetime(modified.astimezone(UTC), usegmt=True),
        "content-length": str(meta.size),
        "etag": etag,
        "content-type": meta.content_type,
    }
    headers.update({f"x-amz-meta-{name}": value for name, value in metadata.items()})
    response: dict[str, Any] = {
        "ResponseMetadata": {**ok_metadata(), "HTTPHeaders": headers},
        "AcceptRanges": "bytes",
        "LastModified": modified,
        "ContentLength": meta.size,
        "ETag": etag,
        "ContentType": meta.content_type,
        "Metadata": metadata,
    }
    found = version_id(meta)
    if found is not None:
        response["VersionId"] = found
        headers["x-amz-version-id"] = found
    return response
