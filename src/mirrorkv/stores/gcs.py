"""`GCSStore`: a store in a Google Cloud Storage bucket, on google-cloud-storage.

One object per key, under an optional name prefix; keys are encoded into
object names reversibly and order-preservingly (see :mod:`._gcs_names`), so
GCS's own listing is our listing. The etag is the hex MD5 GCS keeps for each
object, the version its generation; conditional writes become generation
preconditions, which GCS checks atomically. The JSON API over HTTP is used;
see ``docs/stores/gcs.md`` for the URL, options, credentials and limits.
"""

from __future__ import annotations

import base64
import builtins
import datetime
import io
import os
import time
from collections.abc import Iterator
from typing import IO, Any, BinaryIO, cast
from urllib.parse import quote, urlencode

import requests.adapters
from google.api_core.retry import Retry
from google.auth import credentials as auth_credentials
from google.auth.transport.requests import AuthorizedSession
from google.cloud import storage  # type: ignore[import-untyped]
from google.cloud.storage import Blob  # type: ignore[import-untyped]
from google.cloud.storage.retry import DEFAULT_RETRY  # type: ignore[import-untyped]

from ..errors import (
    InvalidURL,
    InvalidValue,
    KeyNotFound,
    NotSupported,
    PreconditionFailed,
)
from ..keys import check_key
from ..meta import DEFAULT_CONTENT_TYPE, Meta
from ..store import (
    CHUNK_SIZE,
    Capability,
    PutOptions,
    check_counter_arguments,
    check_precondition,
    parse_counter,
)
from ..urls import StoreURL
from ._gcs_config import EMULATOR_ENV, find_credentials, url_arguments
from ._gcs_io import ChainedReader, ErrorTranslator, GenerationReader
from ._gcs_names import (
    check_name_prefix,
    decode_metadata,
    decode_name,
    encode_key,
    encode_metadata,
    name_for,
)
from ._pool import Backoff, PooledBatches

__all__ = ["EMULATOR_ENV", "GCSStore"]

#: GCS's largest object.
MAX_OBJECT_SIZE = 5 << 40
_UPLOAD_GRANULE = 256 << 10  # resumable chunks are multiples of 256 KiB
_LIST_FIELDS = "items(name,size,md5Hash,etag,generation,updated,contentType,metadata),nextPageToken"
_KEY_FIELDS = "items(name),nextPageToken"


class GCSStore(PooledBatches):
    """A store in a Google Cloud Storage bucket (or in an emulator such as fake-gcs-server).

    Layout: one object per key, named ``prefix`` + the encoded key (see
    :mod:`mirrorkv.stores._gcs_names`: control characters, space and ``~``
    are escaped, order-preservingly); content type and user metadata are
    the object's own (metadata names and values that GCS's XML API would
    not keep are percent-encoded). The bucket must exist.

    Guarantees: a put is one upload, atomic (GCS shows an object only once
    its upload is complete, also for a resumable upload that dies half way).
    ``etag`` is the hex MD5 GCS records; ``version`` the object's generation,
    different after every write. ``if_none_match="*"`` is GCS's
    ``ifGenerationMatch=0``; ``if_match=etag`` reads the current generation,
    compares the MD5 and writes with ``ifGenerationMatch`` of that
    generation, so a concurrent writer in between makes it fail with
    :class:`PreconditionFailed`; ``delete(key, if_match=etag)`` deletes with
    ``ifGenerationMatch`` the same way. ``incr`` is such a compare-and-swap loop.
    Listing is GCS's, in name order, which is key order; lazily, a page at
    a time. ``open`` reads one generation a chunk at a time (see
    :class:`~mirrorkv.stores._gcs_io.GenerationReader`); ``put_file`` of
    more than ``chunk_size`` bytes is a resumable upload in chunks of that
    size, so memory stays bounded both ways. ``copy`` is server-side
    (rewrite). ``get_many``, ``put_many`` and ``delete_many`` run on a
    thread pool of ``workers`` threads; they are not atomic.

    Errors: an absent key is :class:`KeyNotFound`; a failed precondition
    :class:`PreconditionFailed`; no connection, throttling (429) and server
    errors (5xx), after retrying with backoff for ``retry_deadline``
    seconds, :class:`StoreUnavailable`; denied access or failed
    authentication a :class:`MirrorKVError` saying so, without secrets.
    """

    max_value_size = MAX_OBJECT_SIZE

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        project: str | None = None,
        endpoint_url: str | None = None,
        credentials: auth_credentials.Credentials | None = None,
        credentials_file: str | os.PathLike[str] | None = None,
        anonymous: bool | None = None,
        timeout: float = 60.0,
        retry_deadline: float = 30.0,
        workers: int = 16,
        chunk_size: int = 4 << 20,
        page_size: int = 1000,
        url_expires: float = 3600.0,
    ) -> None:
        """Open the bucket ``bucket``; keys live under the object-name prefix ``prefix``.

        Credentials, in this order: ``credentials`` (a google-auth
        credentials object); ``credentials_file`` (a service-account or other
        google-auth JSON file); none at all (``anonymous``, the default where
        an ``endpoint_url`` or ``$STORAGE_EMULATOR_HOST`` names an emulator);
        else google-auth's default chain (``$GOOGLE_APPLICATION_CREDENTIALS``,
        gcloud's application-default login, the metadata server). No request
        is made here: a missing bucket or bad credentials show on first use.
        """
        if not isinstance(bucket, str) or not bucket or "/" in bucket:
            raise InvalidValue(f"not a bucket name: {bucket!r}")
        self._bucket_name = bucket
        self._prefix = check_name_prefix(prefix)
        self._at_root = not self._prefix
        self._where = f"gs://{bucket}/{self._prefix}"
        for name, value, low in (
            ("timeout", timeout, 0.0),
            ("retry_deadline", retry_deadline, 0.0),
            ("url_expires", url_expires, 1.0),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < low:
                raise InvalidValue(f"{name} takes a number of seconds >= {low:g}, not {value!r}")
        for name, value, low in (("workers", workers, 1), ("page_size", page_size, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidValue(f"{name} takes a whole number >= {low}, not {value!r}")
        if (
            isinstance(chunk_size, bool)
            or not isinstance(chunk_size, int)
            or chunk_size < _UPLOAD_GRANULE
            or chunk_size % _UPLOAD_GRANULE
        ):
            raise InvalidValue(f"chunk_size takes a multiple of 256 KiB, not {chunk_size!r}")
        emulator = os.environ.get(EMULATOR_ENV) or None
        endpoint = endpoint_url or emulator
        if endpoint is not None and "://" not in endpoint:
            endpoint = f"http://{endpoint}"
        self._endpoint = endpoint.rstrip("/") if endpoint else None
        self._endpoint_option = endpoint_url
        self._project = project
        self._timeout = float(timeout)
        self._retry_deadline = float(retry_deadline)
        self._chunk = chunk_size
        self._page_size = min(page_size, 1000)
        #: Keys on the first and on each later page of list()'s requests.
        self.list_page_sizes = (self._page_size, self._page_size)
        self._url_expires = float(url_expires)
        if anonymous is None:
            anonymous = self._endpoint is not None and credentials is None and not credentials_file
        self._anonymous = bool(anonymous)
        self._credentials = find_credentials(
            credentials, credentials_file, anonymous=self._anonymous, where=self._where
        )
        self.capabilities = (
            Capability.CONDITIONAL_WRITES | Capability.SERVER_SIDE_COPY | Capability.MULTI_PROCESS
        )
        if isinstance(self._credentials, auth_credentials.Signing):
            self.capabilities |= Capability.URLS
        self._retry: Retry = DEFAULT_RETRY.with_timeout(self._retry_deadline)
        self._call: dict[str, Any] = {"retry": self._retry, "timeout": self._timeout}
        session = AuthorizedSession(self._credentials)  # type: ignore[no-untyped-call]
        # One connection per worker thread, so pooled calls do not queue for sockets.
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=workers + 4)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        options = {"api_endpoint": self._endpoint} if self._endpoint else None
        with ErrorTranslator(self._where):
            # _http is how google-cloud-storage takes a session of the caller's.
            self._client = storage.Client(
                project=project,
                credentials=self._credentials,
                _http=session,
                client_options=options,
            )
        self._bucket = self._client.bucket(bucket)
        self._start_pool(workers, "mirrorkv-gcs")

    @classmethod
    def from_url(cls, url: StoreURL, **options: Any) -> GCSStore:
        """``gs://bucket/prefix?project=...&endpoint_url=...``; see ``docs/stores/gcs.md``.

        The path is a folder: ``gs://b/data`` keeps keys under ``data/``.
        Credentials never come from the URL: ``credentials`` and
        ``credentials_file`` are keyword arguments only, and user
        information in the URL is refused.
        """
        prefix, kwargs = url_arguments(url, options)
        try:
            return cls(url.host, prefix, **kwargs)
        except InvalidValue as error:
            raise InvalidURL(str(error)) from None

    @property
    def bucket(self) -> str:
        """The bucket's name."""
        return self._bucket_name

    @property
    def prefix(self) -> str:
        """The object-name prefix the keys live under ('' for the whole bucket)."""
        return self._prefix

    @property
    def url(self) -> str:
        """A URL that reopens this store (without credentials, which never go in a URL)."""
        query: dict[str, str] = {}
        if self._project:
            query["project"] = self._project
        if self._endpoint_option:
            query["endpoint_url"] = self._endpoint_option
        tail = f"?{urlencode(query)}" if query else ""
        return f"gs://{self._bucket_name}/{quote(self._prefix)}{tail}"

    def __repr__(self) -> str:
        endpoint = f", endpoint_url={self._endpoint!r}" if self._endpoint else ""
        return f"GCSStore({self._bucket_name!r}, {self._prefix!r}{endpoint})"

    def close(self) -> None:
        """Stop the worker threads and close the HTTP connections. Closing twice is harmless."""
        self._close_pool()
        self._client.close()

    # -- helpers --------------------------------------------------------------

    def _errors(self, key: str | None = None) -> ErrorTranslator:
        return ErrorTranslator(self._where, key)

    def _name(self, key: str) -> str:
        return name_for(self._prefix, key)

    def _meta(self, key: str, blob: Blob) -> Meta:
        """The Meta of the object a response described."""
        md5 = blob.md5_hash
        # A composite object has no MD5; its GCS etag is the best stand-in.
        etag = base64.b64decode(md5).hex() if md5 else str(blob.etag or "")
        updated = blob.updated
        return Meta(
            key,
            blob.size or 0,
            etag,
            updated if updated is not None else time.time(),
            blob.content_type or DEFAULT_CONTENT_TYPE,
            decode_metadata(blob.metadata),
            str(blob.generation or ""),
        )

    def _fetch_blob(self, key: str) -> Blob | None:
        """The object's resource (one request); ``None`` where absent."""
        with self._errors(key):
            blob: Blob | None = self._bucket.get_blob(self._name(key), **self._call)
        return blob

    # -- primitives -------------------------------------------------------------

    def _get(self, key: str) -> bytes:
        blob = self._bucket.blob(self._name(key))
        with self._errors(key):
            data: bytes = blob.download_as_bytes(raw_download=True, **self._call)
        return data

    def _head(self, key: str) -> Meta:
        blob = self._fetch_blob(key)
        if blob is None:
            raise KeyNotFound(key)
        return self._meta(key, blob)

    def _delete(self, key: str) -> None:
        blob = self._bucket.blob(self._name(key))
        try:
            with self._errors(key):
                blob.delete(**self._call)
        except KeyNotFound:
            pass

    def _delete_if(self, key: str, etag: str) -> None:
        """Delete with ``ifGenerationMatch`` of the generation read with the MD5.

        GCS refuses the delete (412, or 404 where the object went) if
        anything replaced the object since it was read; the check then
        starts again, so only a value with another MD5 fails it.
        """
        options = PutOptions(if_match=etag)
        while True:
            generation = self._generation_match(key, options)
            try:
                with self._errors(key):
                    self._bucket.blob(self._name(key)).delete(
                        if_generation_match=generation, **self._call
                    )
            except (KeyNotFound, PreconditionFailed):
                continue  # replaced or removed since it was read: look again
            return

    def _put(self, key: str, data: bytes, options: PutOptions) -> Meta:
        if len(data) > self._chunk:
            return self._put_stream(key, io.BytesIO(data), options)
        return self._upload(key, data, options, self._generation_match(key, options))

    def _generation_match(self, key: str, options: PutOptions) -> int | None:
        """The ``ifGenerationMatch`` a write's conditions come to (``None``: unconditional).

        ``if_match`` is an MD5 etag: the current object is read, its MD5
        compared here, and its generation becomes the precondition, so that
        GCS refuses the write if anything replaced the object since.
        """
        if options.if_none_match is not None:
            return 0
        if options.if_match is None:
            return None
        blob = self._fetch_blob(key)
        current = None if blob is None else self._meta(key, blob)
        check_precondition(key, current, options)
        assert current is not None
        return int(current.version)

    def _new_blob(self, key: str, options: PutOptions, chunk_size: int | None = None) -> Blob:
        blob = self._bucket.blob(self._name(key), chunk_size=chunk_size)
        blob.metadata = encode_metadata(options.metadata)
        return blob

    def _upload(
        self, key: str, data: bytes, options: PutOptions, generation_match: int | None
    ) -> Meta:
        """One single-request (multipart) upload."""
        blob = self._new_blob(key, options)
        with self._errors(key):
            blob.upload_from_string(
                data,
                content_type=options.content_type,
                if_generation_match=generation_match,
                **self._call,
            )
        return self._meta(key, blob)

    def _list(self, prefix: str, start_after: str | None) -> Iterator[Meta]:
        for name, blob in self._names(prefix, start_after, _LIST_FIELDS):
            yield self._meta(name, blob)

    def _keys(self, prefix: str, start_after: str | None) -> Iterator[str]:
        for key, _ in self._names(prefix, start_after, _KEY_FIELDS):
            yield key

    def _names(
        self, prefix: str, start_after: str | None, fields: str
    ) -> Iterator[tuple[str, Blob]]:
        """(key, blob) of the objects in key order, a page at a time."""
        name_prefix = self._prefix + encode_key(prefix, self._at_root) if prefix else self._prefix
        offset = None
        if start_after is not None and start_after >= prefix:
            offset = self._prefix + encode_key(start_after, self._at_root)
        skip = len(self._prefix)
        with self._errors():
            pages = self._client.list_blobs(
                self._bucket,
                prefix=name_prefix or None,
                start_offset=offset,
                page_size=self._page_size,
                fields=fields,
                **self._call,
            ).pages
        while True:
            with self._errors():
                page = next(pages, None)
                if page is None:
                    return
                blobs = list(page)
            for blob in blobs:
                name = blob.name
                if name == offset:  # start_offset is inclusive; start_after is not
                    continue
                key = decode_name(name[skip:], self._at_root)
                if key is not None:
                    yield key, blob

    # -- streams ------------------------------------------------------------------

    def _open(self, key: str) -> BinaryIO:
        name = self._name(key)

        def blob_for(generation: int | None) -> Blob:
            return self._bucket.blob(name, generation=generation)

        reader = GenerationReader(blob_for, self._chunk, self._call, self._errors(key))
        return cast(BinaryIO, reader)

    def _put_stream(self, key: str, stream: IO[bytes], options: PutOptions) -> Meta:
        head = _read_up_to(stream, self._chunk)
        if len(head) < self._chunk:
            return self._upload(key, head, options, self._generation_match(key, options))
        # No probe for the end here: joining a probe byte to the next chunk
        # would hold that chunk twice. A value of exactly one chunk is sent
        # as a resumable upload with an empty last request.
        generation_match = self._generation_match(key, options)
        if generation_match == 0:
            # Checked before the (long) upload too: fails early, and holds on
            # servers that ignore preconditions on resumable uploads
            # (fake-gcs-server; GCS itself checks them atomically).
            check_precondition(key, self._head_or_none(key), options)
        blob = self._new_blob(key, options, chunk_size=self._chunk)
        source = ChainedReader([head], stream)
        del head
        with self._errors(key):
            blob.upload_from_file(
                source,
                content_type=options.content_type,
                if_generation_match=generation_match,
                **self._call,
            )
        return self._meta(key, blob)

    def _head_or_none(self, key: str) -> Meta | None:
        blob = self._fetch_blob(key)
        return None if blob is None else self._meta(key, blob)

    def _get_with_meta(self, key: str) -> tuple[bytes, Meta]:
        while True:
            meta = self._head(key)
            pinned = self._bucket.blob(self._name(key), generation=int(meta.version))
            try:
                with self._errors(key):
                    data: bytes = pinned.download_as_bytes(raw_download=True, **self._call)
            except KeyNotFound:
                continue  # overwritten between the two requests: read the new one
            return data, meta

    # -- derived operations done natively -----------------------------------------

    def copy(self, source: str, target: str) -> Meta:
        """Copy a value with its content type and metadata inside GCS (a rewrite)."""
        check_key(source)
        check_key(target)
        origin = self._bucket.blob(self._name(source))
        blob = self._bucket.blob(self._name(target))
        token: str | None = None
        with self._errors(source):
            while True:
                token, _, _ = blob.rewrite(origin, token=token, **self._call)
                if token is None:
                    break
        return self._meta(target, blob)

    def incr(self, key: str, delta: int = 1, *, initial: int = 0) -> int:
        """Add ``delta`` to the counter at ``key`` atomically: a generation compare-and-swap."""
        check_key(key)
        check_counter_arguments(delta, initial)
        backoff = Backoff(0.002, 0.05)
        while True:
            try:
                data, meta = self._get_with_meta(key)
            except KeyNotFound:
                value, options, generation = initial + delta, PutOptions(), 0
            else:
                value = parse_counter(key, data) + delta
                options = PutOptions(meta.content_type, meta.metadata)
                generation = int(meta.version)
            try:
                self._upload(key, b"%d" % value, options, generation)
            except PreconditionFailed:
                backoff.sleep()  # lost the race: contenders spread out
                continue
            return value

    def _delete_many(self, keys: builtins.list[str]) -> None:
        """Delete concurrently on the pool (fake-gcs-server has no batch endpoint)."""
        self._each_on_pool(self._delete, dict.fromkeys(keys))

    def _url_for(self, key: str, method: str, expires: float | None) -> str:
        """A V4 signed URL (GET: read; PUT: write), valid ``url_expires`` seconds by default.

        Needs credentials that can sign (a service-account key);
        :class:`NotSupported` otherwise.
        """
        if Capability.URLS not in self.capabilities:
            raise NotSupported(
                f"{self._where}: signed URLs need credentials that can sign (a service-account "
                "key, e.g. credentials_file=); these cannot"
            )
        blob = self._bucket.blob(self._name(key))
        with self._errors(key):
            url: str = blob.generate_signed_url(
                version="v4",
                expiration=datetime.timedelta(seconds=expires or self._url_expires),
                method=method,
                credentials=self._credentials,
                api_access_endpoint=self._endpoint,
            )
        return url


def _read_up_to(stream: IO[bytes], size: int) -> bytes:
    """Up to ``size`` bytes of ``stream``, fewer only at its end."""
    parts: list[bytes] = []
    while size > 0:
        part = stream.read(min(size, CHUNK_SIZE * 16))
        if not part:
            break
        parts.append(part)
        size -= len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)
