"""The GCS store's plumbing: error translation and the streams that read and write values."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import IO, Any

import requests
from google.api_core import exceptions as api
from google.auth import exceptions as auth
from google.cloud.storage import Blob  # type: ignore[import-untyped]
from google.cloud.storage import exceptions as storage_errors

from ..errors import (
    AccessDenied,
    InvalidKey,
    InvalidValue,
    KeyNotFound,
    MirrorKVError,
    PreconditionFailed,
    StoreUnavailable,
    Translator,
)

__all__ = ["ChainedReader", "ErrorTranslator", "GenerationReader", "translate"]

_UNAVAILABLE = (
    api.TooManyRequests,
    api.ServerError,
    api.RetryError,
    requests.ConnectionError,
    requests.Timeout,
    storage_errors.DataCorruption,
)


def _detail(error: BaseException) -> str:
    """What went wrong, without the request URL: status and the server's message only."""
    if isinstance(error, api.GoogleAPICallError):
        code = f"{error.code} " if error.code is not None else ""
        return f"{code}{error.message.splitlines()[0] if error.message else type(error).__name__}"
    if isinstance(error, api.RetryError):
        cause = error.cause
        return f"gave up retrying: {_detail(cause) if cause is not None else error.message}"
    if isinstance(error, requests.RequestException):
        return f"{type(error).__name__} (no answer from the server)"
    return f"{type(error).__name__}: {error}"


def translate(error: BaseException, where: str, key: str | None) -> MirrorKVError:
    """The mirrorkv error for a google-cloud-storage, google-auth or requests error.

    ``where`` names the bucket (never credentials); ``key`` is the key being
    worked on, if any. Messages hold the status and the server's message,
    never a token or key.
    """
    detail = _detail(error)
    message = str(getattr(error, "message", "") or "").lower()
    if isinstance(error, api.NotFound):
        if "bucket" in message and "does not exist" in message:
            return MirrorKVError(f"{where}: the bucket does not exist ({detail})")
        if key is not None:
            return KeyNotFound(key)
        return MirrorKVError(f"{where}: not found ({detail}); does the bucket exist?")
    if isinstance(error, api.PreconditionFailed):
        what = f"{key!r}" if key is not None else "the object"
        return PreconditionFailed(f"{where}: {what} is not in the expected state ({detail})")
    if isinstance(error, api.Unauthorized | api.Forbidden):
        return AccessDenied(
            f"{where}: access denied ({detail}); check the credentials and their "
            "permissions on the bucket"
        )
    if isinstance(error, auth.GoogleAuthError):
        # google-auth's messages name the failing step, never the key material.
        text = str(error)
        text = text if len(text) <= 300 else text[:300] + "..."
        return AccessDenied(
            f"{where}: could not authenticate to Google Cloud ({type(error).__name__}: {text})"
        )
    if isinstance(error, api.BadRequest) and "metadata" in message:
        return InvalidValue(f"{where}: GCS refuses the metadata ({detail}; at most 8 KiB)")
    if isinstance(error, api.BadRequest) and key is not None and "name" in message:
        return InvalidKey(f"{where}: GCS refuses the object name of {key!r} ({detail})")
    if isinstance(error, _UNAVAILABLE):
        return StoreUnavailable(f"{where}: GCS unavailable ({detail})")
    return MirrorKVError(f"{where}: GCS error ({detail})")


class ErrorTranslator(Translator):
    """``with translator:`` re-raises google-cloud-storage errors as mirrorkv errors.

    One object per call that names a key (``ErrorTranslator(where, key)``);
    ``where`` is a label such as ``gs://bucket/prefix``.
    """

    __slots__ = ("_key", "_where")
    catches = (
        api.GoogleAPIError,
        auth.GoogleAuthError,
        requests.RequestException,
        storage_errors.InvalidResponse,
        storage_errors.DataCorruption,
    )

    def __init__(self, where: str, key: str | None = None) -> None:
        self._where = where
        self._key = key

    @property
    def where(self) -> str:
        """The label errors start with, e.g. ``gs://bucket/prefix``."""
        return self._where

    def translate(self, error: BaseException) -> MirrorKVError:
        """See :func:`translate`."""
        return translate(error, self._where, self._key)


class GenerationReader(io.RawIOBase):
    """A readable stream of one generation of an object, fetched a chunk at a time.

    The first chunk is read at construction (so a missing key raises
    :class:`KeyNotFound` from ``open``) and names the generation; every
    later chunk asks for that generation. GCS keeps no old generations of a
    bucket without versioning, so if the key is overwritten or deleted while
    the stream still has chunks to fetch, the next read raises
    :class:`StoreUnavailable` (open it again) rather than mixing two values.
    Memory: one chunk at a time.
    """

    def __init__(
        self,
        blob_for: Callable[[int | None], Blob],
        chunk: int,
        call: dict[str, Any],
        errors: ErrorTranslator,
    ) -> None:
        super().__init__()
        self._blob_for = blob_for
        self._chunk = chunk
        self._call = call
        self._errors = errors
        self._generation: int | None = None
        self._buffer = memoryview(b"")
        self._offset = 0  # of the next byte to fetch
        self._eof = False
        self._fetch()

    def _fetch(self) -> None:
        blob = self._blob_for(self._generation)
        start = self._offset
        try:
            with self._errors:
                data = blob.download_as_bytes(
                    start=start,
                    end=start + self._chunk - 1,
                    raw_download=True,
                    checksum=None,
                    **self._call,
                )
        except KeyNotFound:
            if self._generation is None:
                raise
            raise StoreUnavailable(
                f"{self._errors.where}: the value was overwritten or deleted while this "
                "stream read it; open it again"
            ) from None
        except MirrorKVError as error:
            if isinstance(error.__cause__, api.RequestRangeNotSatisfiable):
                data = b""  # at (or past) the end, e.g. an empty value
            else:
                raise
        generation = blob.generation
        if self._generation is None:
            self._generation = generation
        elif generation is not None and generation != self._generation:
            # A server that ignores ?generation= (none known) would show it here.
            raise StoreUnavailable(
                f"{self._errors.where}: the value changed while this stream read it; open it again"
            )
        self._buffer = memoryview(data)
        self._offset += len(data)
        if len(data) < self._chunk:
            self._eof = True

    def readable(self) -> bool:
        """Always True."""
        return True

    def readinto(self, target: Any) -> int:
        """Fill ``target`` from the current chunk, fetching the next one when it is used up."""
        if self.closed:
            raise ValueError("I/O operation on a closed stream")
        while not self._buffer:
            if self._eof:
                return 0
            self._fetch()
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size

    def readall(self) -> bytes:
        """The rest of the value."""
        parts = [bytes(self._buffer)]
        self._buffer = memoryview(b"")
        while not self._eof:
            self._fetch()
            parts.append(bytes(self._buffer))
        self._buffer = memoryview(b"")
        return b"".join(parts)

    def close(self) -> None:
        """Drop the buffered chunk."""
        self._buffer = memoryview(b"")
        super().close()


class ChainedReader(io.RawIOBase):
    """Some bytes already read (``pieces``) followed by the rest of ``stream``, with ``tell()``.

    The resumable upload asks for whole chunks and needs ``tell()``. A piece
    asked for whole is handed over as is (no copy) and then dropped.
    """

    def __init__(self, pieces: list[bytes], stream: IO[bytes]) -> None:
        super().__init__()
        self._pieces = [piece for piece in pieces if piece]
        self._stream = stream
        self._position = 0

    def readable(self) -> bool:
        """Always True."""
        return True

    def tell(self) -> int:
        """Bytes read so far."""
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        """``size`` bytes, fewer only at the end (all that is left for a negative size)."""
        if size is None or size < 0:
            data = b"".join([*self._pieces, self._stream.read()])
            self._pieces = []
        elif self._pieces and len(self._pieces[0]) == size:
            data = self._pieces.pop(0)
        else:
            parts: list[bytes] = []
            want = size
            while want > 0 and self._pieces:
                piece = self._pieces[0]
                parts.append(piece[:want])
                if len(piece) > want:
                    self._pieces[0] = piece[want:]
                else:
                    self._pieces.pop(0)
                want -= len(parts[-1])
            # A short read would end a resumable upload of unknown size: fill the request.
            while want > 0:
                more = self._stream.read(want)
                if not more:
                    break
                parts.append(more)
                want -= len(more)
            data = parts[0] if len(parts) == 1 else b"".join(parts)
        self._position += len(data)
        return data

    def readinto(self, target: Any) -> int:
        """Fill ``target`` (for io's generic readers)."""
        data = self.read(len(target))
        target[: len(data)] = data
        return len(data)
