"""ListBuckets answered from a :class:`MetadataIndex`, in boto3's shape.

The index holds no bucket records of its own: a bucket's creation time and
the account owner S3 lists it with are kept as checkpoints of the bucket
(:data:`CREATED`, :data:`ACCOUNT_OWNER`). Only names that can be S3 buckets
are listed (an index shared with a mirror of another kind of store also holds
buckets named by URL).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from .index import MetadataIndex

__all__ = ["ACCOUNT_OWNER", "CREATED", "buckets_answer", "checkpoints_from"]

#: Checkpoint: the bucket's creation time (a POSIX time, as ``repr(float)``).
CREATED = "s3:created"
#: Checkpoint: the account owner ListBuckets names (JSON).
ACCOUNT_OWNER = "s3:account-owner"

_S3_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")


def s3_buckets(index: MetadataIndex) -> list[str]:
    """The buckets of ``index`` whose names can be S3 bucket names, sorted."""
    return [name for name in index.buckets() if _S3_NAME.match(name)]


def buckets_answer(
    index: MetadataIndex, response_metadata: dict[str, Any], *, complete: bool = True
) -> dict[str, Any] | None:
    """The ListBuckets response, or None where a creation time or the owner is missing.

    With ``complete=False`` it is never None: buckets without a creation time
    are left out.
    """
    from dateutil.tz import tzlocal  # type: ignore[import-untyped]

    buckets: list[dict[str, Any]] = []
    owner: str | None = None
    for name in s3_buckets(index):
        created = index.checkpoint(name, CREATED)
        owner = owner or index.checkpoint(name, ACCOUNT_OWNER)
        if created is None:
            if complete:
                return None
            continue
        moment = datetime.fromtimestamp(float(created), tzlocal())
        buckets.append({"Name": name, "CreationDate": moment})
    if owner is None and complete:
        return None
    return {
        "ResponseMetadata": response_metadata,
        "Buckets": buckets,
        "Owner": json.loads(owner or "{}"),
    }


def checkpoints_from(
    index: MetadataIndex, response: Mapping[str, Any]
) -> Iterator[tuple[str, dict[str, str]]]:
    """``(bucket, {checkpoint: value})`` to keep from S3's ListBuckets, for the buckets held."""
    held = set(s3_buckets(index))
    owner = json.dumps(dict(response.get("Owner", {})), sort_keys=True)
    for item in response.get("Buckets", ()):
        if item["Name"] in held:
            created = repr(item["CreationDate"].timestamp())
            yield item["Name"], {CREATED: created, ACCOUNT_OWNER: owner}
