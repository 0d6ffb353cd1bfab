"""`S3Store`: a bucket (or a prefix in one) of Amazon S3 or any S3-compatible server.

Built on boto3: one client per store, shared by every thread; a bounded
thread pool for batches and listings; boto3's transfer manager for large
files. See ``docs/stores/s3.md`` for the URL form, options and limits.
"""

from __future__ import annotations

import builtins
import io
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import IO, Any, BinaryIO, cast

import boto3  # type: ignore[import-untyped]
from boto3.s3.transfer import TransferConfig  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]

from ..errors import InvalidKey, InvalidURL, InvalidValue, KeyNotFound, PreconditionFailed
from ..keys import MAX_KEY_BYTES, check_key, check_prefix
from ..meta import Details, Listing, Meta
from ..store import (
    Capability,
    PathOrFile,
    PutOptions,
    make_options,
)
from ..urls import StoreURL
from ._pool import PooledBatches, StripedLocks
from ._s3_errors import S3Errors
from ._s3_meta import MD5, encode_metadata, meta_from_head, new_version, s3_etag
from ._s3_transfer import (
    BodyReader,
    conditional_multipart,
    fit_start_after,
    hash_file,
    spooled,
)
from ._s3_url import parse_s3_url

__all__ = ["DEFAULT_MULTIPART_THRESHOLD", "MIN_PART_SIZE", "S3Store"]

MIB = 1 << 20
#: Values of at least this many bytes are uploaded in parts by ``put_file``.
DEFAULT_MULTIPART_THRESHOLD = 8 * MIB
#: S3's smallest part (every part but the last).
MIN_PART_SIZE = 5 * MIB
#: S3's largest single PutObject / CopyObject.
_MAX_SINGLE = 5 * 1024 * MIB
#: Keys per DeleteObjects request (S3's limit).
_DELETE_BATCH = 1000
#: Listing pages: small first (so ``next(store.list())`` is cheap), then S3's maximum.
_FIRST_PAGE = 100
_PAGE = 1000
_now = time.time


_sessions: dict[str | None, Any] = {}
_sessions_lock = threading.RLock()


def _session(profile: str | None) -> Any:
    """One boto3 Session per profile, shared by every store of this process.

    A new Session loads botocore's service models again (about 70 ms); a
    client made from a shared one takes about 6 ms. Credentials given as
    arguments go to the client, not the session, so stores with different
    credentials still share it.
    """
    with _sessions_lock:
        session = _sessions.get(profile)
        if session is None:
            session = _sessions[profile] = boto3.session.Session(profile_name=profile)
        return session


class S3Store(PooledBatches):
    """A store in an S3 bucket, under an optional prefix.

    Each key is one object, ``<prefix><key>``, holding the value as is, so
    other S3 tools (and presigned URLs) see the plain value. Content type is
    the object's Content-Type; user metadata is S3 user metadata, encoded
    where S3 would not keep it exactly (see :mod:`._s3_meta`).

    Guarantees: S3 gives strong read-after-write consistency, so a read or
    listing after a write sees it. A put is atomic (one PutObject, or one
    CompleteMultipartUpload). Conditional writes are checked by S3 itself
    (``If-None-Match``/``If-Match``), so they are atomic across processes;
    so is ``delete(key, if_match=etag)``, a DeleteObject with ``If-Match``.
    ``put_many``, ``delete_many`` and ``incr`` are not transactions: a batch
    that fails half-way leaves the keys written (or deleted) so far.

    Listing: ``keys()``, ``list()`` and ``ls()`` come from ListObjectsV2
    (UTF-8 byte order, as every store lists). S3's listing has no content
    type, user metadata or version: a listed :class:`Meta` fetches them with
    one HEAD when one of them is first read (see :class:`~mirrorkv.meta.Details`).

    Errors: S3's NoSuchKey is :class:`KeyNotFound`, PreconditionFailed
    :class:`PreconditionFailed`, throttling, 5xx and connection errors
    :class:`StoreUnavailable` (after botocore's own retries with backoff),
    refused credentials :class:`AccessDenied`, which names no credential.
    """

    capabilities = (
        Capability.CONDITIONAL_WRITES
        | Capability.SERVER_SIDE_COPY
        | Capability.URLS
        | Capability.MULTI_PROCESS
    )
    #: S3's largest object.
    max_value_size = 5 * 1024 * 1024 * MIB
    #: Keys on the first and on each later page of :meth:`list`'s requests: a short
    #: first page answers ``next(iter(store.list()))`` quickly.
    list_page_sizes = (_FIRST_PAGE, _PAGE)

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        profile: str | None = None,
        addressing_style: str | None = None,
        retry_mode: str = "standard",
        max_attempts: int = 5,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
        multipart_chunksize: int = DEFAULT_MULTIPART_THRESHOLD,
        max_concurrency: int = 16,
        verify: bool = True,
    ) -> None:
        """Open the bucket ``bucket`` (which must exist) under ``prefix``.

        Credentials come from the arguments, else from boto3's own chain
        (environment, shared files, ``profile``, instance roles); they are
        never kept by the store itself, nor shown in its ``repr`` or errors.
        A non-empty ``prefix`` names a folder: ``"a/b"`` keeps keys under
        ``a/b/``. ``retry_mode`` (``"standard"`` or ``"adaptive"``) and
        ``max_attempts`` (tries in all, the first included) set botocore's
        retries with backoff on throttling, 5xx and connection errors. ``multipart_threshold`` and
        ``multipart_chunksize`` (at least 5 MiB) shape uploads in parts;
        ``max_concurrency`` bounds the threads of batches, listings and
        transfers. Nothing is sent to the server here.
        """
        if not isinstance(bucket, str) or not bucket or "/" in bucket:
            raise InvalidValue(f"an S3 bucket name is a non-empty name without '/', not {bucket!r}")
        if not isinstance(prefix, str):
            raise InvalidValue("prefix must be a str")
        prefix = prefix.lstrip("/")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        if len(prefix.encode()) >= MAX_KEY_BYTES:
            raise InvalidValue(f"the prefix {prefix!r} leaves no room for keys (1024 bytes)")
        if retry_mode not in ("standard", "adaptive", "legacy"):
            raise InvalidValue(f"retry_mode is standard or adaptive, not {retry_mode!r}")
        for name, number in (("max_attempts", max_attempts), ("max_concurrency", max_concurrency)):
            if isinstance(number, bool) or not isinstance(number, int) or number < 1:
                raise InvalidValue(f"{name} must be a whole number >= 1, not {number!r}")
        if multipart_chunksize < MIN_PART_SIZE:
            raise InvalidValue(f"multipart_chunksize is at least 5 MiB, not {multipart_chunksize}")
        if multipart_threshold < 1:
            raise InvalidValue(f"multipart_threshold must be positive, not {multipart_threshold}")
        self._bucket = bucket
        self._prefix = prefix
        self._endpoint_url = endpoint_url
        self._threshold = multipart_threshold
        self._chunksize = multipart_chunksize
        self._concurrency = max_concurrency
        session = _session(profile)
        self._region = region or session.region_name or "us-east-1"
        config = Config(
            region_name=self._region,
            signature_version="s3v4",
            retries={"mode": retry_mode, "total_max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=max(10, max_concurrency),
            s3={"addressing_style": addressing_style} if addressing_style else None,
        )
        with _sessions_lock:  # a boto3 Session is not safe for concurrent client creation
            self._client: Any = session.client(
                "s3",
                endpoint_url=endpoint_url,
                config=config,
                verify=verify,
                aws_access_key_id=aws_access_key_id,
                aws_secret_access_key=aws_secret_access_key,
                aws_session_token=aws_session_token,
            )
        self._transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_chunksize,
            max_concurrency=max_concurrency,
            use_threads=True,
        )
        self._start_pool(max_concurrency, "mirrorkv-s3")
        self._counter_locks = StripedLocks()
        self._closed = False

    @classmethod
    def from_url(cls, url: StoreURL, **options: Any) -> S3Store:
        """``s3://bucket/prefix?endpoint_url=...&region=...``; see ``docs/stores/s3.md``.

        Credentials are refused in the URL (user info or query): pass them as
        keyword arguments of :func:`mirrorkv.open` or let boto3 find them.
        """
        bucket, prefix, kwargs = parse_s3_url(url, options)
        try:
            return cls(bucket, prefix, **kwargs)
        except InvalidValue as error:
            raise InvalidURL(str(error)) from None

    @property
    def bucket(self) -> str:
        """The bucket's name."""
        return self._bucket

    @property
    def prefix(self) -> str:
        """The prefix every key is stored under ('' or ending with '/')."""
        return self._prefix

    @property
    def client(self) -> Any:
        """The boto3 S3 client the store uses (for what the store does not cover)."""
        return self._client

    def __repr__(self) -> str:
        where = f", prefix={self._prefix!r}" if self._prefix else ""
        endpoint = f", endpoint_url={self._endpoint_url!r}" if self._endpoint_url else ""
        return f"S3Store({self._bucket!r}{where}{endpoint})"

    # -- keys ---------------------------------------------------------------

    def _full(self, key: str) -> str:
        """The object key of ``key``; :class:`InvalidKey` where the prefix makes it too long."""
        if not self._prefix:
            return key
        full = self._prefix + key
        if len(full) > 256 and len(full.encode()) > MAX_KEY_BYTES:
            raise InvalidKey(
                f"key {key!r} is too long under the prefix {self._prefix!r}: S3 keys are at "
                f"most {MAX_KEY_BYTES} bytes of UTF-8 with the prefix, this one would be "
                f"{len(full.encode())}"
            )
        return full

    # -- primitives ---------------------------------------------------------

    def _get(self, key: str) -> bytes:
        with S3Errors(self._bucket, key, "get"):
            body = self._client.get_object(Bucket=self._bucket, Key=self._full(key))["Body"]
            data: bytes = body.read()
            return data

    def _get_with_meta(self, key: str) -> tuple[bytes, Meta]:
        with S3Errors(self._bucket, key, "get"):
            response = self._client.get_object(Bucket=self._bucket, Key=self._full(key))
            data: bytes = response["Body"].read()
        return data, meta_from_head(key, response)

    def _head(self, key: str) -> Meta:
        with S3Errors(self._bucket, key, "head"):
            response = self._client.head_object(Bucket=self._bucket, Key=self._full(key))
        return meta_from_head(key, response)

    def _put(self, key: str, data: bytes, options: PutOptions) -> Meta:
        if len(data) > _MAX_SINGLE:
            return self._put_stream(key, io.BytesIO(data), options)
        version = new_version()
        args = {
            "Bucket": self._bucket,
            "Key": self._full(key),
            "Body": data,
            "ContentType": options.content_type,
            "Metadata": encode_metadata(options.metadata, version),
        }
        if options.if_match is None and options.if_none_match is None:
            with S3Errors(self._bucket, key, "put"):
                response = self._client.put_object(**args)
        else:
            response = self._conditional(
                key, options, lambda condition: self._client.put_object(**args, **condition)
            )
        return Meta(
            key,
            len(data),
            s3_etag(response["ETag"]),
            _now(),
            options.content_type,
            options.metadata,
            version,
        )

    def _conditional(self, key: str, options: PutOptions, write: Any) -> Any:
        """Run ``write(condition)`` with S3's condition for ``options``; retry once for parts.

        A value uploaded in parts has an S3 ETag other than its MD5 (our
        etag): where S3 refuses ``If-Match: <md5>``, the object's own ETag is
        looked up and the write tried once more against it, still atomically.
        """
        if options.if_none_match is not None:
            with S3Errors(self._bucket, key, "conditional put"):
                return write({"IfNoneMatch": "*"})
        expected = cast(str, options.if_match)
        try:
            with S3Errors(self._bucket, key, "conditional put"):
                return write({"IfMatch": f'"{expected}"'})
        except KeyNotFound:
            raise PreconditionFailed(f"{key!r} does not exist (if_match={expected!r})") from None
        except PreconditionFailed:
            try:
                with S3Errors(self._bucket, key, "head"):
                    head = self._client.head_object(Bucket=self._bucket, Key=self._full(key))
            except KeyNotFound:
                raise PreconditionFailed(
                    f"{key!r} does not exist (if_match={expected!r})"
                ) from None
            current = s3_etag(head.get("ETag", ""))
            if (head.get("Metadata") or {}).get(MD5) != expected or current == expected:
                raise
        try:
            with S3Errors(self._bucket, key, "conditional put"):
                return write({"IfMatch": f'"{current}"'})
        except KeyNotFound:
            raise PreconditionFailed(f"{key!r} does not exist (if_match={expected!r})") from None

    def _delete(self, key: str) -> None:
        with S3Errors(self._bucket, key, "delete"):
            self._client.delete_object(Bucket=self._bucket, Key=self._full(key))

    def _delete_if(self, key: str, etag: str) -> None:
        """Delete on condition of S3's ETag, read with the MD5 beside it by a HEAD.

        Our etag is the value's MD5, S3's ETag is not for a value uploaded
        in parts, so the HEAD maps one to the other and DeleteObject carries
        ``If-Match`` with the ETag it returned: S3 refuses the delete (412,
        or 404 where the key went) if anything replaced the object since. A
        refusal is checked again by a new HEAD, so a rewrite with the same
        value does not fail the delete.
        """
        full = self._full(key)
        while True:
            try:
                with S3Errors(self._bucket, key, "head"):
                    head = self._client.head_object(Bucket=self._bucket, Key=full)
            except KeyNotFound:
                raise PreconditionFailed(f"{key!r} does not exist (if_match={etag!r})") from None
            if meta_from_head(key, head).etag != etag:
                raise PreconditionFailed(f"{key!r} does not have etag {etag!r}")
            try:
                with S3Errors(self._bucket, key, "conditional delete"):
                    self._client.delete_object(Bucket=self._bucket, Key=full, IfMatch=head["ETag"])
            except (KeyNotFound, PreconditionFailed):
                continue  # replaced or removed since the HEAD: look again
            return

    def _list(self, prefix: str, start_after: str | None) -> Iterator[Meta]:
        for page in self._pages(prefix, start_after):
            yield from map(self._listed, page)

    def _listed(self, item: Mapping[str, Any]) -> Meta:
        """A listed object's Meta; content type, metadata and version come from one HEAD
        when first read (see :class:`~mirrorkv.meta.Details`)."""
        key: str = item["Key"]
        size: int = item.get("Size", 0)
        etag = s3_etag(item.get("ETag", ""))
        modified: datetime = item["LastModified"]

        def fetch() -> Meta:
            try:
                return self._head(key)
            except KeyNotFound:  # deleted since the listing: what the listing said
                return Meta(key, size, etag, modified, version=f"{etag}@{modified.timestamp():.6f}")

        details = Details(fetch)
        # A value uploaded in parts has an S3 ETag that is not its MD5 (it ends in -N).
        etag_source: str | Callable[[], str] = (
            etag if "-" not in etag else (lambda: details.meta().etag)
        )
        return Meta(key, size, etag_source, modified, details, details, details)

    def ls(self, prefix: str = "", delimiter: str = "/") -> Listing:
        """One level below ``prefix``, from S3's own listing with a delimiter.

        Common prefixes come from ListObjectsV2's ``CommonPrefixes``; each
        object's metadata from one HEAD (in parallel).
        """
        check_prefix(prefix)
        if not isinstance(delimiter, str) or not delimiter:
            raise InvalidValue("delimiter must be a non-empty str")
        args: dict[str, Any] = {
            "Bucket": self._bucket,
            "Prefix": self._prefix + prefix,
            "Delimiter": delimiter,
        }
        cut = len(self._prefix)
        objects: builtins.list[Meta] = []
        prefixes: builtins.list[str] = []
        while True:
            with S3Errors(self._bucket, None, "list"):
                response = self._client.list_objects_v2(**args)
            objects.extend(
                self._listed({**item, "Key": item["Key"][cut:]})
                for item in response.get("Contents", ())
            )
            prefixes.extend(item["Prefix"][cut:] for item in response.get("CommonPrefixes", ()))
            token = response.get("NextContinuationToken")
            if not response.get("IsTruncated") or not token:
                break
            args["ContinuationToken"] = token
        return Listing(objects, sorted(prefixes, key=_utf8))

    def _keys(self, prefix: str, start_after: str | None) -> Iterator[str]:
        for page in self._pages(prefix, start_after):
            for item in page:
                yield item["Key"]

    def _pages(self, prefix: str, start_after: str | None) -> Iterator[list[dict[str, Any]]]:
        """Listed objects (keys without the store's prefix) in ListObjectsV2 pages, lazily."""
        args: dict[str, Any] = {
            "Bucket": self._bucket,
            "Prefix": self._prefix + prefix,
            "MaxKeys": _FIRST_PAGE,
        }
        if start_after:
            args["StartAfter"] = fit_start_after(self._prefix + start_after)
        cut = len(self._prefix)
        while True:
            with S3Errors(self._bucket, None, "list"):
                response = self._client.list_objects_v2(**args)
            items = [{**item, "Key": item["Key"][cut:]} for item in response.get("Contents", ())]
            if start_after:
                # StartAfter may have been shortened to S3's limit; drop what it let through.
                items = [item for item in items if item["Key"] > start_after]
            if items:
                yield items
            token = response.get("NextContinuationToken")
            if not response.get("IsTruncated") or not token:
                return
            args["ContinuationToken"] = token
            args["MaxKeys"] = _PAGE

    # -- streams and files --------------------------------------------------

    def _open(self, key: str) -> BinaryIO:
        errors = S3Errors(self._bucket, key, "read")
        with errors:
            body = self._client.get_object(Bucket=self._bucket, Key=self._full(key))["Body"]
        return cast(BinaryIO, BodyReader(body, errors))

    def _put_stream(self, key: str, stream: IO[bytes], options: PutOptions) -> Meta:
        head = stream.read(self._threshold)
        if len(head) < self._threshold:
            return self._put(key, head, options)
        with spooled(head, stream) as (path, size, md5):
            del head
            return self._put_large(key, path, size, md5, options)

    def put_file(
        self,
        key: str,
        source: PathOrFile,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> Meta:
        """Store a file's contents; a path at or above the threshold goes up in parts.

        Same guarantees and conditions as :meth:`put`. A path is read twice
        (hashed, then uploaded through boto3's transfer manager with
        ``max_concurrency`` parts in flight): it must not change meanwhile.
        A file object larger than the threshold is spooled to a temporary
        file first.
        """
        if not isinstance(source, str | os.PathLike):
            return super().put_file(
                key,
                source,
                content_type=content_type,
                metadata=metadata,
                if_match=if_match,
                if_none_match=if_none_match,
            )
        check_key(key)
        options = make_options(content_type, metadata, if_match, if_none_match)
        path = os.fspath(source)
        with open(path, "rb") as stream:
            head = stream.read(self._threshold)
            if len(head) < self._threshold:
                return self._put(key, head, options)
        del head
        size, md5 = hash_file(path)
        return self._put_large(key, path, size, md5, options)

    def _put_large(self, key: str, path: str, size: int, md5: str, options: PutOptions) -> Meta:
        """Upload the file at ``path`` (``size`` bytes, MD5 ``md5``) in parts."""
        version = new_version()
        stored = encode_metadata(options.metadata, version)
        stored[MD5] = md5
        extra = {"ContentType": options.content_type, "Metadata": stored}
        full = self._full(key)
        if options.if_match is None and options.if_none_match is None:
            with S3Errors(self._bucket, key, "upload"):
                self._client.upload_file(
                    path, self._bucket, full, ExtraArgs=extra, Config=self._transfer
                )
        else:
            self._conditional(
                key,
                options,
                lambda condition: conditional_multipart(
                    self._client, self._bucket, full, path, self._chunksize, extra, condition
                ),
            )
        return Meta(key, size, md5, _now(), options.content_type, options.metadata, version)

    def get_file(self, key: str, target: PathOrFile) -> int:
        """Write the value to a path or a writable binary file; return its size.

        A path is downloaded by boto3's transfer manager (ranged requests in
        parallel above the threshold) into a temporary file beside it, which
        is renamed into place, so it never holds a partial value.
        """
        if not isinstance(target, str | os.PathLike):
            return super().get_file(key, target)
        check_key(key)
        path = os.fspath(target)
        with S3Errors(self._bucket, key, "download"):
            self._client.download_file(self._bucket, self._full(key), path, Config=self._transfer)
        return os.path.getsize(path)

    # -- derived operations done natively -----------------------------------

    def copy(self, source: str, target: str) -> Meta:
        """Copy a value with its content type and metadata inside S3 (CopyObject)."""
        check_key(source)
        check_key(target)
        errors = S3Errors(self._bucket, source, "copy")
        while True:
            with errors:
                head = self._client.head_object(Bucket=self._bucket, Key=self._full(source))
            meta = meta_from_head(source, head)
            stored = dict(head.get("Metadata") or {})
            version = new_version()
            stored["mkv-v"] = version
            origin = {"Bucket": self._bucket, "Key": self._full(source)}
            try:
                with errors:
                    if meta.size <= _MAX_SINGLE:
                        self._client.copy_object(
                            Bucket=self._bucket,
                            Key=self._full(target),
                            CopySource=origin,
                            CopySourceIfMatch=head["ETag"],
                            MetadataDirective="REPLACE",
                            ContentType=meta.content_type,
                            Metadata=stored,
                        )
                    else:
                        self._client.copy(
                            origin,
                            self._bucket,
                            self._full(target),
                            ExtraArgs={
                                "CopySourceIfMatch": head["ETag"],
                                "MetadataDirective": "REPLACE",
                                "ContentType": meta.content_type,
                                "Metadata": stored,
                            },
                            Config=self._transfer,
                        )
            except PreconditionFailed:
                continue  # the source changed between HEAD and copy: copy the new one
            return Meta(
                target, meta.size, meta.etag, _now(), meta.content_type, meta.metadata, version
            )

    def _put_many(
        self, keys: builtins.list[str], values: builtins.list[bytes]
    ) -> builtins.list[Meta]:
        """As :meth:`PooledBatches._put_many` (``max_concurrency`` threads).

        Every key is first checked to fit under the prefix, so a key too
        long for it fails the batch before anything is written.
        """
        for key in dict.fromkeys(keys):
            self._full(key)
        return super()._put_many(keys, values)

    def _delete_many(self, keys: builtins.list[str]) -> None:
        unique = list(dict.fromkeys(self._full(key) for key in keys))
        batches = [unique[i : i + _DELETE_BATCH] for i in range(0, len(unique), _DELETE_BATCH)]
        self._each_on_pool(self._delete_batch, batches)

    def _delete_batch(self, batch: builtins.list[str]) -> None:
        with S3Errors(self._bucket, None, "delete_many"):
            response = self._client.delete_objects(
                Bucket=self._bucket,
                Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
            )
        failed = response.get("Errors") or []
        if failed:
            first = failed[0]
            raise S3Errors(self._bucket, first.get("Key"), "delete_many").translate(
                _client_error(
                    first.get("Code", "Unknown"), first.get("Message", ""), "DeleteObjects"
                )
            )

    def incr(self, key: str, delta: int = 1, *, initial: int = 0) -> int:
        """Add ``delta`` to the counter at ``key`` atomically and return the new value.

        A compare-and-swap loop on S3's conditional writes, as in
        :meth:`Store.incr`; threads of one process take turns per key (so
        they do not make each other's writes fail), and a write that lost to
        another process backs off a random, growing while before it retries.
        """
        check_key(key)  # before hashing it for its lock
        with self._counter_locks.for_key(key):
            return super().incr(key, delta, initial=initial)

    def _lost_race(self, times: int) -> None:
        """A random pause of at most 2 ms, doubling with each lost race up to 0.5 s."""
        time.sleep(random.uniform(0, min(0.002 * 2 ** (times - 1), 0.5)))

    def _url_for(self, key: str, method: str, expires: float | None) -> str:
        """A presigned URL: GET reads the value, PUT writes it (an hour by default).

        At most 7 days on AWS. A value written through a PUT URL has no
        mirrorkv version token: its version is derived from its ETag and
        modification time.
        """
        with S3Errors(self._bucket, key, "presign"):
            url: str = self._client.generate_presigned_url(
                "get_object" if method == "GET" else "put_object",
                Params={"Bucket": self._bucket, "Key": self._full(key)},
                ExpiresIn=int(expires or 3600),
                HttpMethod=method,
            )
        return url

    # -- lifecycle -----------------------------------------------------------

    def close(self) -> None:
        """Stop the threads and close the client's connections. Closing twice is harmless."""
        self._close_pool()
        if not self._closed:
            self._closed = True
            self._client.close()


def _utf8(key: str) -> bytes:
    return key.encode("utf-8")


def _client_error(code: str, message: str, operation: str) -> Any:
    from botocore.exceptions import ClientError  # type: ignore[import-untyped]

    return ClientError({"Error": {"Code": code, "Message": message}}, operation)
