"""`AzureBlobStore`: a store in one container (and an optional prefix) of Azure Blob Storage.

Each key is one block blob; its name is the store's prefix followed by the
key written in an order-preserving, prefix-preserving code (see
:mod:`._azure_names`), so that the service's own listing is in our key
order. The etag is the hex MD5 of the value, kept in the blob's Content-MD5
property; the version is the blob's ETag, which the service changes on
every write. Conditional writes compare etags under the blob's ETag, so they
are atomic on the server. See ``docs/stores/azure.md``.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import IO, Any, BinaryIO

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, HttpResponseError, ResourceModifiedError
from azure.storage.blob import (
    BlobProperties,
    BlobSasPermissions,
    ContainerClient,
    ContentSettings,
    generate_blob_sas,
)

from ..errors import (
    InvalidValue,
    KeyNotFound,
    MirrorKVError,
    NotSupported,
    PreconditionFailed,
    StoreUnavailable,
)
from ..keys import check_key
from ..meta import DEFAULT_CONTENT_TYPE, Meta
from ..store import (
    DEFAULT_PUT_OPTIONS,
    Capability,
    PutOptions,
    check_counter_arguments,
    parse_counter,
)
from ..urls import StoreURL
from ._azure_config import (
    ACCOUNT_KEY_ENV,
    ACCOUNT_NAME_ENV,
    CONNECTION_STRING_ENV,
    check_container,
    check_settings,
    connect,
    url_arguments,
)
from ._azure_errors import AzureErrors, error_code
from ._azure_io import DownloadStream, read_full, stage_blocks
from ._azure_names import (
    decode_metadata,
    decode_name,
    encode_metadata,
    encode_name,
)
from ._pool import Backoff, PooledBatches, StripedLocks

__all__ = ["ACCOUNT_KEY_ENV", "ACCOUNT_NAME_ENV", "CONNECTION_STRING_ENV", "AzureBlobStore"]

# The most blobs one batch request may delete (the service's limit).
_BATCH = 256
_PAGE = 1000
# Reads fetch ranges of this size. azure-storage-blob 12.31 joins each ranged
# response with b"".join(list(stream)), and list() sizes itself from the
# stream's len(), the range's length in bytes: 8 bytes of pointers per byte
# read, for a moment. Measured: 4 MiB ranges peak at 36 MiB traced, 1 MiB at 10.
_READ_CHUNK = 1 << 20
# Statuses of a batch's sub-request that count as deleted.
_DELETED = frozenset({200, 202, 404})


def _strip(etag: str | None) -> str:
    return (etag or "").strip('"')


class AzureBlobStore(PooledBatches):
    """A store in one container of Azure Blob Storage (or Azurite), under an optional prefix.

    Credentials come from the arguments or the environment, never from a
    URL: a ``connection_string``; or an ``account_url`` with a
    ``credential`` (an account key, a SAS token, an azure-identity
    credential), else the key in ``$AZURE_STORAGE_KEY``, else
    ``DefaultAzureCredential`` where azure-identity is installed; or, with
    neither, ``$AZURE_STORAGE_CONNECTION_STRING``. No repr or error message
    shows a key.

    Guarantees: a put is one Put Blob, or staged blocks committed by one Put
    Block List, so readers see the old value or the new; ``if_match`` /
    ``if_none_match`` are checked by the service against the blob's ETag, so
    they are atomic across processes, as is ``delete(key, if_match=etag)``;
    ``copy`` runs inside the service;
    listings are in UTF-8 byte order, lazily, page by page. Streams from
    :meth:`open` hold one 1 MiB range at a time and fail with
    :class:`StoreUnavailable` rather than mix two values where the key is
    overwritten while they are read. ``incr`` retries a conditional write
    (not a native counter). ``put_many`` and ``delete_many`` are not atomic.
    """

    capabilities = (
        Capability.CONDITIONAL_WRITES | Capability.SERVER_SIDE_COPY | Capability.MULTI_PROCESS
    )

    def __init__(
        self,
        container: str,
        prefix: str = "",
        *,
        connection_string: str | None = None,
        account_url: str | None = None,
        credential: Any = None,
        block_size: int = 4 << 20,
        max_concurrency: int = 8,
        retries: int = 3,
        timeout: float = 30.0,
        url_expiry: float = 3600.0,
        create_container: bool = False,
    ) -> None:
        """Open the store in ``container`` under ``prefix`` (a "folder": ``/`` is appended).

        ``block_size`` is the size of one staged block and the largest value
        sent in one request; ``max_concurrency`` bounds the threads of
        ``get_many``/``put_many``/``delete_many`` and of a staged upload;
        ``retries`` and ``timeout`` (seconds) go to the SDK's retry policy and
        transport; ``url_expiry`` is the lifetime of :meth:`url_for` URLs in
        seconds; ``create_container`` creates a missing container.
        """
        check_container(container)
        if not isinstance(prefix, str) or "\x00" in prefix:
            raise InvalidValue("prefix must be a str without NUL")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        check_settings(block_size, max_concurrency, retries)
        self._container_name = container
        self._prefix = encode_name(prefix) if prefix else ""
        self._block_size = block_size
        self._max_concurrency = max_concurrency
        self._url_expiry = float(url_expiry)
        self._service = connect(
            connection_string,
            account_url,
            credential,
            retry_total=retries,
            connection_timeout=timeout,
            read_timeout=timeout,
            max_single_get_size=_READ_CHUNK,
            max_chunk_get_size=_READ_CHUNK,
            max_single_put_size=block_size,
            max_block_size=block_size,
        )
        self._account = self._service.account_name or "?"
        self._where = f"azure://{container}/{prefix} (account {self._account})"
        self._errors = AzureErrors(self._where)
        self._container: ContainerClient = self._service.get_container_client(container)
        self._start_pool(max_concurrency, "mirrorkv-azure")
        self._counter_locks = StripedLocks()
        self._closed = False
        self._shared_key = getattr(self._service.credential, "account_key", None)
        if self._shared_key:
            self.capabilities = type(self).capabilities | Capability.URLS
        if create_container:
            self._create_container()

    @classmethod
    def from_url(cls, url: StoreURL, **options: Any) -> AzureBlobStore:
        """Open ``azure://container/prefix?account_url=...`` (see ``docs/stores/azure.md``).

        The URL never carries a credential: userinfo, a key or a SAS token in
        it is an :class:`InvalidURL`; pass ``connection_string=`` or
        ``credential=`` as keyword arguments, or set the environment.
        """
        container, prefix, arguments = url_arguments(url, options)
        return cls(container, prefix, **arguments)

    def __repr__(self) -> str:
        return f"AzureBlobStore({self._where!r})"

    # -- primitives ---------------------------------------------------------

    def _blob(self, key: str) -> Any:
        return self._container.get_blob_client(self._prefix + encode_name(key))

    def _get(self, key: str) -> bytes:
        with self._errors(key):
            data: bytes = self._blob(key).download_blob(max_concurrency=1).readall()
            return data

    def _get_with_meta(self, key: str) -> tuple[bytes, Meta]:
        with self._errors(key):
            download = self._blob(key).download_blob(max_concurrency=1)
            data: bytes = download.readall()
        return data, self._meta(key, download.properties)

    def _open(self, key: str) -> BinaryIO:
        errors = self._errors(key)
        with errors:
            download = self._blob(key).download_blob(max_concurrency=1)

        def translate(error: AzureError) -> MirrorKVError:
            if isinstance(error, ResourceModifiedError):
                return StoreUnavailable(
                    f"{self._where}: {key!r} was overwritten while it was read; open it again"
                )
            return errors.translate(error)

        raw = DownloadStream(download.chunks(), translate)
        return io.BufferedReader(raw)

    def _head(self, key: str) -> Meta:
        with self._errors(key):
            properties = self._blob(key).get_blob_properties()
        return self._meta(key, properties)

    def _delete(self, key: str) -> None:
        try:
            with self._errors(key):
                self._blob(key).delete_blob(delete_snapshots="include")
        except KeyNotFound:
            pass

    def _delete_if(self, key: str, etag: str) -> None:
        """Delete on condition of the blob's ETag, read with the MD5 beside it.

        As a conditional put (see :meth:`_write`): the service refuses the
        delete if anything replaced the blob since it was read, and the
        check then starts again, so only a value with another MD5 fails it.
        """
        options = PutOptions(if_match=etag)
        while True:
            current = self._check_condition(key, options)
            try:
                with self._errors(key, conditional=True):
                    self._blob(key).delete_blob(
                        delete_snapshots="include",
                        etag=f'"{current.version}"',
                        match_condition=MatchConditions.IfNotModified,
                    )
            except PreconditionFailed as failure:
                if isinstance(failure.__cause__, ResourceModifiedError):
                    continue
                raise
            return

    def _put(self, key: str, data: bytes, options: PutOptions) -> Meta:
        digest = hashlib.md5(data, usedforsecurity=False)

        def write(conditions: dict[str, Any]) -> dict[str, Any]:
            result: dict[str, Any] = self._blob(key).upload_blob(
                data,
                overwrite=True,
                length=len(data),
                max_concurrency=self._max_concurrency,
                content_settings=self._settings(options, digest.digest()),
                metadata=encode_metadata(options.metadata),
                **conditions,
            )
            return result

        return self._write(key, len(data), digest.hexdigest(), options, write)

    def _put_stream(self, key: str, stream: IO[bytes], options: PutOptions) -> Meta:
        first = read_full(stream, self._block_size)
        if len(first) < self._block_size:
            return self._put(key, first, options)
        if options.if_match is not None or options.if_none_match is not None:
            self._check_condition(key, options)  # fail before uploading the whole stream
        blob = self._blob(key)
        digest = hashlib.md5(usedforsecurity=False)

        def stage(block_id: str, chunk: bytes) -> None:
            with self._errors(key):
                blob.stage_block(block_id, chunk, length=len(chunk))

        # At most 8 MiB of blocks in flight, so memory stays bounded.
        in_flight = max(1, min(self._max_concurrency, (8 << 20) // self._block_size))
        size, blocks = stage_blocks(
            stage, first, stream, digest, self._block_size, self._executor(), in_flight
        )

        def commit(conditions: dict[str, Any]) -> dict[str, Any]:
            result: dict[str, Any] = blob.commit_block_list(
                blocks,
                content_settings=self._settings(options, digest.digest()),
                metadata=encode_metadata(options.metadata),
                **conditions,
            )
            return result

        return self._write(key, size, digest.hexdigest(), options, commit)

    def _write(
        self,
        key: str,
        size: int,
        etag: str,
        options: PutOptions,
        write: Any,
    ) -> Meta:
        """Run ``write(conditions)`` under the conditions of ``options``; the new Meta.

        ``if_match`` names our etag (an MD5), the service compares its own
        ETag: read the current ETag, check the MD5 beside it, then write on
        condition of that ETag; a write in between (same MD5 or not) makes
        the service refuse, and the check starts again.
        """
        if options.if_none_match is not None:
            with self._errors(key, conditional=True):
                result = write({"match_condition": MatchConditions.IfMissing})
        elif options.if_match is not None:
            while True:
                current = self._check_condition(key, options)
                try:
                    with self._errors(key, conditional=True):
                        result = write(
                            {
                                "etag": f'"{current.version}"',
                                "match_condition": MatchConditions.IfNotModified,
                            }
                        )
                except PreconditionFailed as failure:
                    if isinstance(failure.__cause__, ResourceModifiedError):
                        continue
                    raise
                break
        else:
            with self._errors(key):
                result = write({})
        return Meta(
            key,
            size,
            etag,
            result.get("last_modified") or datetime.now(UTC),
            options.content_type,
            options.metadata,
            _strip(result.get("etag")),
        )

    def _check_condition(self, key: str, options: PutOptions) -> Meta:
        """The current Meta of ``key`` where it satisfies ``options``; else PreconditionFailed."""
        try:
            current = self._head(key)
        except KeyNotFound:
            if options.if_none_match is not None:
                return Meta(key, 0, "", 0.0)
            raise PreconditionFailed(f"{key!r} does not exist (if_match)") from None
        if options.if_none_match is not None:
            raise PreconditionFailed(f"{key!r} exists (if_none_match='*')")
        if current.etag != options.if_match:
            raise PreconditionFailed(f"{key!r} does not have etag {options.if_match!r}")
        return current

    def _list(self, prefix: str, start_after: str | None) -> Iterator[Meta]:
        return self._listing(prefix, start_after, names_only=False)  # type: ignore[return-value]

    def _keys(self, prefix: str, start_after: str | None) -> Iterator[str]:
        return self._listing(prefix, start_after, names_only=True)  # type: ignore[return-value]

    def _listing(
        self, prefix: str, start_after: str | None, *, names_only: bool
    ) -> Iterator[Meta | str]:
        """Keys (or their Meta) from the service's listing, which is in key order already.

        The service lists by name prefix only; ``start_after`` is applied
        here, by comparing blob names (whose order is the keys' order).
        """
        if start_after is not None and not start_after.startswith(prefix):
            if start_after > prefix:
                return  # every key that starts with prefix sorts before start_after
            start_after = None
        after = self._prefix + encode_name(start_after) if start_after else None
        name_prefix = self._prefix + encode_name(prefix)
        cut = len(self._prefix)
        with self._errors():
            if names_only:
                names = self._container.list_blob_names(
                    name_starts_with=name_prefix or None, results_per_page=_PAGE
                )
                for name in names:
                    if after is not None and name <= after:
                        continue
                    key = _key_of(name[cut:])
                    if key is not None:
                        yield key
                return
            blobs = self._container.list_blobs(
                name_starts_with=name_prefix or None, include=["metadata"], results_per_page=_PAGE
            )
            for properties in blobs:
                if after is not None and properties.name <= after:
                    continue
                key = _key_of(properties.name[cut:])
                if key is not None:
                    yield self._meta(key, properties)

    # -- derived operations done natively -------------------------------------

    def copy(self, source: str, target: str) -> Meta:
        """Copy inside the service (Copy Blob); content type and metadata go along."""
        check_key(source)
        check_key(target)
        source_blob = self._blob(source)
        target_blob = self._blob(target)
        with self._errors(source):
            try:
                result = target_blob.start_copy_from_url(source_blob.url)
            except HttpResponseError as error:
                if error.status_code == 404 and error_code(error) != "ContainerNotFound":
                    raise KeyNotFound(source) from error
                raise
        status = result.get("copy_status")
        properties: BlobProperties | None = None
        # Within one account the copy completes before the call returns; poll where it has not.
        while status == "pending":
            time.sleep(0.05)
            with self._errors(target):
                properties = target_blob.get_blob_properties()
            status = properties.copy.status
        if status != "success":
            raise StoreUnavailable(f"{self._where}: copying {source!r} to {target!r}: {status}")
        if properties is None:
            properties = self._head_properties(target)
        return self._meta(target, properties)

    def _head_properties(self, key: str) -> BlobProperties:
        with self._errors(key):
            properties: BlobProperties = self._blob(key).get_blob_properties()
            return properties

    def _delete_many(self, keys: builtins.list[str]) -> None:
        """Deletes in batch requests of up to 256 blobs; one by one where batches are refused."""
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _BATCH):
            batch = unique[start : start + _BATCH]
            names = [self._prefix + encode_name(key) for key in batch]
            if len(batch) > 1 and self._delete_batch(names):
                continue
            self._each_on_pool(self._delete, batch)

    def _delete_batch(self, names: builtins.list[str]) -> bool:
        """Delete ``names`` in one batch request; False where the service takes no batches."""
        try:
            with self._errors():
                responses = self._container.delete_blobs(
                    *names, delete_snapshots="include", raise_on_any_failure=False
                )
        except MirrorKVError as error:
            cause = error.__cause__
            if isinstance(cause, HttpResponseError) and cause.status_code in (400, 404, 405, 501):
                return False
            raise
        failed = [r for r in responses if r.status_code not in _DELETED]
        if failed:
            raise StoreUnavailable(
                f"{self._where}: {len(failed)} of {len(names)} deletes in a batch failed "
                f"(HTTP {failed[0].status_code})"
            )
        return True

    def incr(self, key: str, delta: int = 1, *, initial: int = 0) -> int:
        """Atomic read-modify-write: a write on condition of the ETag just read, retried."""
        check_key(key)
        check_counter_arguments(delta, initial)
        # Threads of this process take turns on a key: racing each other, eight
        # threads wasted seven of every eight round trips (55 s for 1,600 incrs
        # on Azurite, 10 s in turns). Other processes still race, with backoff.
        with self._counter_locks.for_key(key):
            return self._incr(key, delta, initial)

    def _incr(self, key: str, delta: int, initial: int) -> int:
        blob = self._blob(key)
        backoff = Backoff(0.005, 0.5)
        while True:
            try:
                data, meta = self._get_with_meta(key)
            except KeyNotFound:
                value = initial + delta
                conditions: dict[str, Any] = {"match_condition": MatchConditions.IfMissing}
                options = DEFAULT_PUT_OPTIONS
            else:
                value = parse_counter(key, data) + delta
                conditions = {
                    "etag": f'"{meta.version}"',
                    "match_condition": MatchConditions.IfNotModified,
                }
                options = PutOptions(meta.content_type, meta.metadata)
            encoded = b"%d" % value
            try:
                with self._errors(key, conditional=True):
                    blob.upload_blob(
                        encoded,
                        overwrite=True,
                        content_settings=self._settings(
                            options, hashlib.md5(encoded, usedforsecurity=False).digest()
                        ),
                        metadata=encode_metadata(options.metadata),
                        **conditions,
                    )
            except PreconditionFailed:
                backoff.sleep()
                continue
            return value

    def _url_for(self, key: str, method: str, expires: float | None) -> str:
        """A SAS URL (GET: read; PUT: create or write), valid ``url_expiry`` seconds by default.

        Needs an account key: :class:`NotSupported` where the store
        authenticates otherwise (SAS token, azure-identity). The key need not
        exist yet. A PUT through it needs the ``x-ms-blob-type: BlockBlob``
        header, and stores no mirrorkv metadata (the etag is then computed
        from the value on read).
        """
        if not self._shared_key:
            raise NotSupported(
                f"{self._where}: url_for signs URLs with an account key, and this store "
                "authenticates without one (SAS token or identity)"
            )
        blob = self._blob(key)
        now = datetime.now(UTC)
        token = generate_blob_sas(
            self._account,
            self._container_name,
            blob.blob_name,
            account_key=self._shared_key,
            permission=BlobSasPermissions(read=True)
            if method == "GET"
            else BlobSasPermissions(create=True, write=True),
            start=now - timedelta(minutes=5),
            expiry=now + timedelta(seconds=expires or self._url_expiry),
        )
        return f"{blob.url}?{token}"

    def close(self) -> None:
        """Stop the worker threads and close the HTTP connections. Closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        self._close_pool()
        self._service.close()

    # -- helpers --------------------------------------------------------------

    def _create_container(self) -> None:
        try:
            with self._errors():
                self._container.create_container()
        except MirrorKVError as error:
            if error_code(error.__cause__ or error) != "ContainerAlreadyExists":
                raise

    @staticmethod
    def _settings(options: PutOptions, md5: bytes) -> ContentSettings:
        return ContentSettings(content_type=options.content_type, content_md5=bytearray(md5))

    def _meta(self, key: str, properties: BlobProperties) -> Meta:
        settings = properties.content_settings
        md5 = settings.content_md5
        version = _strip(properties.etag)
        return Meta(
            key,
            properties.size,
            bytes(md5).hex() if md5 else version,
            properties.last_modified,
            settings.content_type or DEFAULT_CONTENT_TYPE,
            decode_metadata(properties.metadata),
            version,
        )


def _key_of(name: str) -> str | None:
    """The key of a blob name; None for a blob no key maps to (written by another tool)."""
    try:
        return decode_name(name)
    except MirrorKVError:
        return None
