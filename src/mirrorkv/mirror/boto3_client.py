"""A boto3 S3 client that records its writes in a mirror index and answers listings from it.

``wrap(boto3.client("s3", ...), index="sqlite:///var/lib/app/index.db")``
returns a :class:`MirroredS3Client`: every method of the client passes
through; the calls that change objects are recorded in the index (bucket =
the S3 bucket name, key = the S3 key, so a :class:`~mirrorkv.mirror.Mirror`
over an ``S3Store`` of the bucket can share the index); ``list_objects``,
``list_objects_v2``, their paginators, ``head_object`` and ``list_buckets``
are answered from the index in boto3's response shape unless the call passes
``Force=True``. See ``docs/mirror-boto3.md``.

boto3 is optional: nothing here imports it until a client is wrapped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from ..errors import MirrorKVError
from ..keys import check_key, check_prefix
from ..meta import Meta
from . import _boto3_buckets as buckets
from . import _boto3_listing as listing
from . import _boto3_records as records
from .index import MetadataIndex, open_index

__all__ = ["MirroredS3Client", "wrap"]

log = logging.getLogger("mirrorkv.mirror")

#: Checkpoints (per bucket): the owner of listed objects, and when ``refresh`` last ran.
OBJECT_OWNER = "s3:owner"
SYNCED = "s3:refreshed"

_HEAD_PARAMS = frozenset({"Bucket", "Key"})
_V2_PARAMS = frozenset(
    {
        "Bucket",
        "Prefix",
        "Delimiter",
        "StartAfter",
        "ContinuationToken",
        "MaxKeys",
        "EncodingType",
        "FetchOwner",
    }
)
_V1_PARAMS = frozenset({"Bucket", "Prefix", "Delimiter", "Marker", "MaxKeys", "EncodingType"})
_INDEXED_PAGINATORS = ("list_objects", "list_objects_v2")


def wrap(client: Any, index: str | MetadataIndex) -> MirroredS3Client:
    """Wrap a boto3 S3 client; ``index`` is an index URL (``sqlite:///...``) or an open index.

    An index given by URL is opened here and closed by :meth:`MirroredS3Client.close`;
    one given open stays the caller's.
    """
    if isinstance(index, str):
        return MirroredS3Client(client, open_index(index), owns_index=True)
    return MirroredS3Client(client, index)


class MirroredS3Client:
    """A boto3 S3 client whose object writes are recorded in a :class:`MetadataIndex`.

    State: the wrapped client and the index, nothing else but a set of the
    buckets the index is known to hold. What it promises:

    * Every attribute not listed below is the client's own (``meta``,
      ``exceptions``, ``can_paginate``, ``get_object``...).
    * ``put_object``, ``delete_object``, ``delete_objects``, ``copy_object``,
      ``upload_file``, ``upload_fileobj``, ``complete_multipart_upload``,
      ``create_bucket`` and ``delete_bucket`` call S3 first and return S3's
      answer (or raise S3's error) unchanged; then they record the change.
      Where recording fails, the key is marked dirty in the index and a
      warning logged: the S3 result is never lost.
    * ``head_object``, ``list_objects``, ``list_objects_v2`` and
      ``list_buckets`` are answered from the index for buckets it holds,
      in the shape boto3 returns; a missing key raises botocore's
      ``ClientError`` with S3's bodiless 404. ``Force=True`` asks S3 and
      refreshes the index with the answer. Calls with parameters the index
      cannot answer (``VersionId``, ``Range``, conditions, ``RequestPayer``...),
      and buckets the index does not hold, are passed to S3.
    """

    def __init__(self, client: Any, index: MetadataIndex, *, owns_index: bool = False) -> None:
        """Wrap ``client``; ``owns_index``: :meth:`close` closes the index too."""
        self._client = client
        self._index = index
        self._owns_index = owns_index
        self._known: set[str] = set()
        self._buckets_fetched = False

    @property
    def index(self) -> MetadataIndex:
        """The index the writes are recorded in."""
        return self._index

    @property
    def client(self) -> Any:
        """The wrapped boto3 client."""
        return self._client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def __repr__(self) -> str:
        return f"MirroredS3Client({self._index!r})"

    def close(self) -> None:
        """Close the client (and the index, where :func:`wrap` opened it)."""
        try:
            self._client.close()
        finally:
            if self._owns_index:
                self._index.close()

    # -- recording ------------------------------------------------------------

    def _safely(self, bucket: str, keys: Iterable[str], change: Callable[[], None]) -> None:
        """Run an index change; on failure journal ``keys`` as dirty and warn."""
        try:
            change()
        except Exception as error:  # the S3 write stands whatever the index does
            keys = list(keys)
            log.warning(
                "mirror index: recording %d key(s) of %s failed (%s); marked dirty",
                len(keys),
                bucket,
                error,
            )
            try:
                self._index.mark_dirty(bucket, keys)
            except Exception as again:
                log.warning("mirror index: marking keys of %s dirty failed too (%s)", bucket, again)

    def _record_head(self, bucket: str, key: str) -> None:
        """Record ``key`` from one real HEAD (forget it where S3 has none)."""

        try:
            self._refresh_head(bucket, key)
        except Exception as error:
            log.warning(
                "mirror index: re-reading %s in %s failed (%s); marked dirty", key, bucket, error
            )
            self._safely(bucket, [key], lambda: self._index.mark_dirty(bucket, [key]))

    def _refresh_head(self, bucket: str, key: str, *, reraise: bool = False) -> dict[str, Any]:
        """One real HEAD of ``key``, recorded; a 404 forgets the key (raised if ``reraise``)."""
        from botocore.exceptions import ClientError  # type: ignore[import-untyped]

        try:
            response: dict[str, Any] = self._client.head_object(Bucket=bucket, Key=key)
        except ClientError as error:
            if _status(error) != 404:
                raise
            self._safely(bucket, [key], lambda: self._index.forget(bucket, key))
            if reraise:
                raise
            return {}
        try:
            known = self._index.get(bucket, key)
        except MirrorKVError:
            known = None
        meta = records.meta_from_head(key, response, known)
        self._safely(bucket, [key], lambda: self._index.record(bucket, meta))
        return response

    # -- writes ---------------------------------------------------------------

    def put_object(self, **params: Any) -> Any:
        """S3's PutObject; records the object (its size from the body, else one HEAD)."""
        params.pop("Force", None)
        response = self._client.put_object(**params)
        bucket, key = params["Bucket"], params["Key"]
        size = _body_size(params)
        if size is None:
            self._record_head(bucket, key)
        else:
            meta = records.meta_from_put(key, size, params, response)
            self._safely(bucket, [key], lambda: self._index.record(bucket, meta))
        return response

    def delete_object(self, **params: Any) -> Any:
        """S3's DeleteObject; forgets the key (deleting one version: re-reads the key)."""
        params.pop("Force", None)
        response = self._client.delete_object(**params)
        bucket, key = params["Bucket"], params["Key"]
        if params.get("VersionId"):
            self._record_head(bucket, key)
        else:
            self._safely(bucket, [key], lambda: self._index.forget(bucket, key))
        return response

    def delete_objects(self, **params: Any) -> Any:
        """S3's DeleteObjects; forgets the keys deleted (``Quiet``: those not among ``Errors``)."""
        params.pop("Force", None)
        response = self._client.delete_objects(**params)
        bucket = params["Bucket"]
        deleted = response.get("Deleted")
        if deleted is None:  # a quiet delete reports only the failures
            failed = {(e.get("Key"), e.get("VersionId")) for e in response.get("Errors", ())}
            asked = params.get("Delete", {}).get("Objects", ())
            deleted = [o for o in asked if (o.get("Key"), o.get("VersionId")) not in failed]
        plain: list[str] = []
        versioned: list[str] = []
        for item in deleted:
            (versioned if item.get("VersionId") else plain).append(item["Key"])
        if plain:
            self._safely(bucket, plain, lambda: self._index.forget_many(bucket, plain))
        for key in versioned:
            self._record_head(bucket, key)
        return response

    def copy_object(self, **params: Any) -> Any:
        """S3's CopyObject; records the copy from the source's record, else from one HEAD."""
        params.pop("Force", None)
        response = self._client.copy_object(**params)
        bucket, key = params["Bucket"], params["Key"]
        meta = self._copied_meta(key, params, response)
        if meta is None:
            self._record_head(bucket, key)
        else:
            self._safely(bucket, [key], lambda: self._index.record(bucket, meta))
        return response

    def _copied_meta(
        self, key: str, params: Mapping[str, Any], response: Mapping[str, Any]
    ) -> Meta | None:
        source = _copy_source(params.get("CopySource"))
        if source is None or not set(params) <= _COPY_PARAMS:
            return None
        try:
            known = self._index.get(*source)
        except MirrorKVError:
            return None
        if known is None or not known.version or records.is_store_version(known.version):
            return None  # (an S3Store's record holds its metadata decoded: read the copy)
        result = response.get("CopyObjectResult", {})
        if params.get("MetadataDirective") == "REPLACE":
            put_params = {
                "ContentType": params.get("ContentType"),
                "Metadata": params.get("Metadata"),
            }
        else:
            put_params = {"ContentType": known.content_type, "Metadata": dict(known.metadata)}
        merged = {**response, "ETag": result.get("ETag", "")}
        return records.meta_from_put(key, known.size, put_params, merged)

    def upload_file(self, Filename: str, Bucket: str, Key: str, *args: Any, **kwargs: Any) -> None:
        """boto3's managed upload from a file; records the object with one HEAD after it."""
        self._client.upload_file(Filename, Bucket, Key, *args, **kwargs)
        self._record_head(Bucket, Key)

    def upload_fileobj(
        self, Fileobj: Any, Bucket: str, Key: str, *args: Any, **kwargs: Any
    ) -> None:
        """boto3's managed upload from a file object; records the object with one HEAD after it."""
        self._client.upload_fileobj(Fileobj, Bucket, Key, *args, **kwargs)
        self._record_head(Bucket, Key)

    def copy(self, CopySource: Any, Bucket: str, Key: str, *args: Any, **kwargs: Any) -> None:
        """boto3's managed copy; records the copy with one HEAD after it."""
        self._client.copy(CopySource, Bucket, Key, *args, **kwargs)
        self._record_head(Bucket, Key)

    def put_object_tagging(self, **params: Any) -> Any:
        """S3's PutObjectTagging; re-reads the key (a tagged object is answered by S3)."""
        response = self._client.put_object_tagging(**params)
        self._record_head(params["Bucket"], params["Key"])
        return response

    def delete_object_tagging(self, **params: Any) -> Any:
        """S3's DeleteObjectTagging; re-reads the key."""
        response = self._client.delete_object_tagging(**params)
        self._record_head(params["Bucket"], params["Key"])
        return response

    def complete_multipart_upload(self, **params: Any) -> Any:
        """S3's CompleteMultipartUpload; records the object with one HEAD after it."""
        params.pop("Force", None)
        response = self._client.complete_multipart_upload(**params)
        self._record_head(params["Bucket"], params["Key"])
        return response

    def create_bucket(self, **params: Any) -> Any:
        """S3's CreateBucket; keeps its creation time (the response's date) for list_buckets."""
        params.pop("Force", None)
        response = self._client.create_bucket(**params)
        bucket = params["Bucket"]
        created = records.response_time(response).timestamp()
        if self._holds(bucket) or self._is_empty(bucket):
            self._safely(
                bucket,
                [],
                lambda: self._index.set_checkpoint(bucket, buckets.CREATED, repr(created)),
            )
        return response

    def _is_empty(self, bucket: str) -> bool:
        """True where S3 lists nothing in ``bucket`` (us-east-1 answers 200 to re-creating
        a bucket one owns, so a created bucket may hold objects already)."""
        try:
            return not self._client.list_objects_v2(Bucket=bucket, MaxKeys=1).get("KeyCount")
        except Exception as error:
            log.warning("mirror index: cannot tell whether %s is empty (%s)", bucket, error)
            return False

    def refresh(self, bucket: str, prefix: str = "") -> tuple[int, int, int]:
        """Make the index hold exactly what S3 lists under ``prefix`` in ``bucket``, page by page.

        The way to start answering for a bucket that held objects before it was
        wrapped. Returns the ``(added, changed, removed)`` totals. Records keep
        their details where the listed object is the one they describe.
        """
        totals = [0, 0, 0]
        after: str | None = None
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            items = page.get("Contents", ())
            metas = [
                records.meta_from_listing(item, self._index.get(bucket, item["Key"]))
                for item in items
            ]
            until = metas[-1].key if page.get("IsTruncated") and metas else None
            changes = self._index.replace_range(
                bucket, prefix, metas, start_after=after, until=until
            )
            totals = [a + b for a, b in zip(totals, changes, strict=True)]
            after = until
            for item in items[:1]:
                if "Owner" in item:
                    self._keep_owner(bucket, item["Owner"])
        self._index.set_checkpoint(bucket, SYNCED, repr(datetime.now().timestamp()))
        self._known.add(bucket)
        return totals[0], totals[1], totals[2]

    def delete_bucket(self, **params: Any) -> Any:
        """S3's DeleteBucket; drops what the index holds of the bucket."""
        params.pop("Force", None)
        response = self._client.delete_bucket(**params)
        bucket = params["Bucket"]
        try:
            self._index.forget_many(bucket, list(self._index.keys(bucket)))
            for name in (buckets.CREATED, buckets.ACCOUNT_OWNER, OBJECT_OWNER, SYNCED):
                self._index.set_checkpoint(bucket, name, None)
        except Exception as error:
            log.warning("mirror index: dropping bucket %s failed (%s)", bucket, error)
        self._known.discard(bucket)
        return response

    # -- reads ----------------------------------------------------------------

    def _holds(self, bucket: object) -> bool:
        """True where the index holds ``bucket`` (answers come from it)."""
        if not isinstance(bucket, str):
            return False
        if bucket in self._known:
            return True
        try:
            held = bucket in self._index.buckets()
        except MirrorKVError as error:
            log.warning("mirror index unavailable, asking S3 (%s)", error)
            return False
        if held:
            self._known.add(bucket)
        return held

    def head_object(self, **params: Any) -> Any:
        """HeadObject from the index (``Force=True``: from S3, recording the answer)."""
        force = params.pop("Force", False)
        bucket, key = params.get("Bucket"), params.get("Key")
        if set(params) != _HEAD_PARAMS or not _valid_key(key) or not self._holds(bucket):
            return self._client.head_object(**params)
        assert isinstance(bucket, str) and isinstance(key, str)
        if not force:
            try:
                known = self._index.get(bucket, key)
            except MirrorKVError as error:
                log.warning("mirror index unavailable, asking S3 (%s)", error)
                return self._client.head_object(**params)
            if known is None:
                raise records.client_error("HeadObject", 404, "404", "Not Found")
            if known.version:
                return records.head_response(known)
        return self._refresh_head(bucket, key, reraise=True)

    def list_objects_v2(self, **params: Any) -> Any:
        """ListObjectsV2 from the index (``Force=True``: from S3, refreshing that key range)."""
        force = params.pop("Force", False)
        token = params.get("ContinuationToken")
        position = listing.decode_token(token) if token is not None else None
        if token is not None and position is None:
            force = True  # a token S3 made continues at S3
        if not force and self._answerable(params, _V2_PARAMS, "StartAfter"):
            if position is None and params.get("StartAfter"):
                position = ("k", params["StartAfter"])
            try:
                owner = self._owner(params["Bucket"]) if params.get("FetchOwner") else None
                return listing.list_v2(self._index, params, position, owner, records.ok_metadata())
            except MirrorKVError as error:
                log.warning("mirror index unavailable, asking S3 (%s)", error)
            position = listing.decode_token(token) if token is not None else None
        asked_after = params.get("StartAfter")
        if position is not None:
            del params["ContinuationToken"]
            params["StartAfter"] = _resume_after(position)
        response = self._client.list_objects_v2(**params)
        if force and self._holds(params.get("Bucket")):
            self._refresh_listing(params, response, token is None or position is not None)
        if position is not None:  # answer as S3 answers a continued listing
            response["ContinuationToken"] = token
            response.pop("StartAfter", None)
            if asked_after:
                response["StartAfter"] = asked_after
        return response

    def list_objects(self, **params: Any) -> Any:
        """ListObjects (v1) from the index (``Force=True``: from S3, refreshing that range)."""
        force = params.pop("Force", False)
        if not force and self._answerable(params, _V1_PARAMS, "Marker"):
            try:
                owner = self._owner(params["Bucket"])
                return listing.list_v1(self._index, params, owner, records.ok_metadata())
            except MirrorKVError as error:
                log.warning("mirror index unavailable, asking S3 (%s)", error)
        response = self._client.list_objects(**params)
        if force and self._holds(params.get("Bucket")):
            self._refresh_listing({**params, "StartAfter": params.get("Marker")}, response, True)
        return response

    def _answerable(self, params: Mapping[str, Any], allowed: frozenset[str], start: str) -> bool:
        if not set(params) <= allowed or not self._holds(params.get("Bucket")):
            return False
        if params.get("EncodingType") not in (None, "url"):
            return False
        try:
            check_prefix(params.get("Prefix") or "")
            if params.get(start):
                check_key(params[start])
        except MirrorKVError:
            return False
        delimiter = params.get("Delimiter")
        return delimiter is None or isinstance(delimiter, str)

    def _owner(self, bucket: str) -> dict[str, str] | None:
        """The owner S3 lists objects of ``bucket`` with (one real listing of one key, once)."""
        raw = self._index.checkpoint(bucket, OBJECT_OWNER)
        if raw:
            owner: dict[str, str] = json.loads(raw)
            return owner
        response = self._client.list_objects(Bucket=bucket, MaxKeys=1)
        for item in response.get("Contents", ()):
            if "Owner" in item:
                self._keep_owner(bucket, item["Owner"])
                return dict(item["Owner"])
        return None

    def _keep_owner(self, bucket: str, owner: Mapping[str, str]) -> None:
        text = json.dumps(dict(owner), sort_keys=True)
        self._safely(bucket, [], lambda: self._index.set_checkpoint(bucket, OBJECT_OWNER, text))

    def _refresh_listing(
        self, params: Mapping[str, Any], response: Mapping[str, Any], bounded: bool
    ) -> None:
        """Record one page S3 listed; without a delimiter, also forget what it no longer lists."""
        if "EncodingType" in params:
            return  # keys arrive encoded as asked: the next sync records them
        bucket: str = params["Bucket"]
        prefix: str = params.get("Prefix") or ""
        items = response.get("Contents", ())
        for item in items:
            if "Owner" in item:
                self._keep_owner(bucket, item["Owner"])
                break
        keys = [item["Key"] for item in items]

        def change() -> None:
            metas = [
                records.meta_from_listing(item, self._index.get(bucket, item["Key"]))
                for item in items
            ]
            after = params.get("StartAfter") or None
            if bounded and not params.get("Delimiter") and _valid_key(after or "x"):
                until = keys[-1] if response.get("IsTruncated") and keys else None
                self._index.replace_range(bucket, prefix, metas, start_after=after, until=until)
            elif metas:
                self._index.record_many(bucket, metas)

        self._safely(bucket, keys, change)

    def list_buckets(self, **params: Any) -> Any:
        """ListBuckets from the index: the buckets it holds (``Force=True``: S3's answer).

        Where the index lacks a creation time or the owner, one real ListBuckets
        fills them; held buckets S3 does not list are then left out.
        """
        force = params.pop("Force", False)
        if force or params:
            response = self._client.list_buckets(**params)
            if force:
                self._keep_buckets(response)
            return response
        try:
            answer = buckets.buckets_answer(
                self._index, records.ok_metadata(), complete=not self._buckets_fetched
            )
            if answer is None:
                self._keep_buckets(self._client.list_buckets())
                answer = buckets.buckets_answer(self._index, records.ok_metadata(), complete=False)
        except MirrorKVError as error:
            log.warning("mirror index unavailable, asking S3 (%s)", error)
            return self._client.list_buckets()
        assert answer is not None
        return answer

    def _keep_buckets(self, response: Mapping[str, Any]) -> None:
        """Keep the creation times (and the owner) S3 lists for the buckets the index holds."""
        self._buckets_fetched = True
        for name, values in buckets.checkpoints_from(self._index, response):

            def change(name: str = name, values: dict[str, str] = values) -> None:
                for checkpoint, value in values.items():
                    self._index.set_checkpoint(name, checkpoint, value)

            self._safely(name, [], change)

    def get_paginator(self, operation_name: str) -> Any:
        """The client's paginator; those of the listings page through this wrapper's answers."""
        paginator = self._client.get_paginator(operation_name)
        if operation_name not in _INDEXED_PAGINATORS:
            return paginator
        from botocore.paginate import Paginator  # type: ignore[import-untyped]

        return Paginator(getattr(self, operation_name), paginator._pagination_cfg, paginator._model)


_COPY_PARAMS = frozenset(
    {"Bucket", "Key", "CopySource", "MetadataDirective", "ContentType", "Metadata"}
)


def _status(error: Any) -> int:
    status: int = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return status


def _valid_key(key: object) -> bool:
    try:
        check_key(key)
    except MirrorKVError:
        return False
    return True


def _body_size(params: Mapping[str, Any]) -> int | None:
    """The size of a PutObject's body where it is known without reading it."""
    body = params.get("Body", b"")
    if isinstance(body, bytes | bytearray):
        return len(body)
    if isinstance(body, str):
        return len(body.encode())
    length = params.get("ContentLength")
    return int(length) if isinstance(length, int) else None


def _copy_source(source: Any) -> tuple[str, str] | None:
    """``(bucket, key)`` of a CopySource without a version; None otherwise."""
    from urllib.parse import unquote

    if isinstance(source, Mapping):
        if source.get("VersionId") or not source.get("Bucket") or not source.get("Key"):
            return None
        return str(source["Bucket"]), str(source["Key"])
    if isinstance(source, str):
        if "?" in source:
            return None
        bucket, _, key = source.lstrip("/").partition("/")
        return (bucket, unquote(key)) if bucket and key else None
    return None


def _resume_after(position: listing.Position) -> str:
    """A StartAfter for S3 that resumes where one of our tokens stopped.

    Past a common prefix: the prefix followed by four U+10FFFF, which sorts
    after every key under it that does not itself hold that code point.
    """
    kind, text = position
    return text if kind == "k" else text + "\U0010ffff" * 4
