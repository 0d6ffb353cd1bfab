"""Streams for the S3 store: the body reader, hashing, spooling, conditional uploads in parts.

A value uploaded in parts gets an S3 ETag that is not the MD5 of the value,
so the store hashes it first and records the MD5 in the object's metadata
(``mkv-md5``). A path is hashed in place; any other stream larger than the
multipart threshold is first spooled to a temporary file (hashed on the
way), so memory stays bounded whatever its size.

boto3's transfer manager cannot make an upload in parts conditional, so a
conditional write of a large value uses :func:`conditional_multipart`: the
parts are uploaded one by one and the condition goes on
CompleteMultipartUpload, which S3 checks atomically.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
from collections.abc import Iterator, Mapping
from typing import IO, Any

from ..keys import MAX_KEY_BYTES
from ..store import CHUNK_SIZE
from ._s3_errors import S3Errors

__all__ = ["BodyReader", "conditional_multipart", "fit_start_after", "hash_file", "spooled"]


def hash_file(path: str) -> tuple[int, str]:
    """The size and hex MD5 of the file at ``path``, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    with open(path, "rb") as source:
        while chunk := source.read(CHUNK_SIZE):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


@contextlib.contextmanager
def spooled(head: bytes, rest: IO[bytes]) -> Iterator[tuple[str, int, str]]:
    """``head`` then what ``rest`` yields, in a temporary file removed on exit.

    Yields the file's path, size and hex MD5.
    """
    digest = hashlib.md5(head, usedforsecurity=False)
    size = len(head)
    fd, path = tempfile.mkstemp(prefix="mirrorkv-s3-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(head)
            del head
            while chunk := rest.read(CHUNK_SIZE):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
        yield path, size, digest.hexdigest()
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def conditional_multipart(
    client: Any,
    bucket: str,
    key: str,
    path: str,
    part_size: int,
    extra: Mapping[str, Any],
    condition: Mapping[str, str],
) -> dict[str, Any]:
    """Upload the file at ``path`` in parts; complete only if ``condition`` holds.

    ``extra`` holds CreateMultipartUpload's arguments (content type,
    metadata); ``condition`` is ``{"IfNoneMatch": "*"}`` or
    ``{"IfMatch": etag}``. The upload is aborted on any failure, so no parts
    are left behind. Returns CompleteMultipartUpload's response; botocore's
    exceptions pass through to the caller's translator.
    """
    started = client.create_multipart_upload(Bucket=bucket, Key=key, **extra)
    upload_id = started["UploadId"]
    try:
        parts = []
        with open(path, "rb") as source:
            number = 1
            while data := source.read(part_size):
                response = client.upload_part(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
                )
                parts.append({"ETag": response["ETag"], "PartNumber": number})
                number += 1
        result: dict[str, Any] = client.complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
            **condition,
        )
        return result
    except BaseException:
        with contextlib.suppress(Exception):
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        raise


class BodyReader(io.RawIOBase):
    """An S3 object's body as a read-only binary stream; errors come out translated."""

    def __init__(self, body: Any, errors: S3Errors) -> None:
        super().__init__()
        self._body = body
        self._errors = errors

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        with self._errors:
            data: bytes = self._body.read() if size is None or size < 0 else self._body.read(size)
            return data

    def readall(self) -> bytes:
        return self.read()

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        view = memoryview(buffer).cast("B")
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(Exception):
                self._body.close()
        super().close()


def fit_start_after(start_after: str) -> str:
    """``start_after`` cut to S3's 1024 bytes (the caller filters what the cut lets through)."""
    if len(start_after) <= 256:
        return start_after
    encoded = start_after.encode()
    if len(encoded) <= MAX_KEY_BYTES:
        return start_after
    return encoded[:MAX_KEY_BYTES].decode(errors="ignore")
