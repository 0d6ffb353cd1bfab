"""The S3 store's one place where botocore's exceptions become mirrorkv errors.

Messages name the bucket, the operation and the key, never a credential:
a server's own message is quoted only for errors that cannot carry one
(authentication errors are described in our words, since some servers echo
the access key id or the string they signed).
"""

from __future__ import annotations

from botocore.exceptions import (  # type: ignore[import-untyped]
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
)
from urllib3.exceptions import HTTPError as URLLib3Error

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

__all__ = ["S3Errors", "error_code"]

#: Codes (and HTTP statuses) after which the same call may succeed later.
_RETRYABLE = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "500",
        "502",
        "503",
        "504",
    }
)
_NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound"})
_PRECONDITION = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict"})
_DENIED = frozenset(
    {
        "AccessDenied",
        "403",
        "Forbidden",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AllAccessDisabled",
    }
)
_TOO_LARGE = frozenset({"EntityTooLarge", "MetadataTooLarge", "EntityTooSmall"})


def error_code(error: ClientError) -> str:
    """The S3 error code of a ``ClientError`` (its HTTP status where the body had none)."""
    info = error.response.get("Error", {})
    code = info.get("Code")
    if code:
        return str(code)
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return str(status or "Unknown")


class S3Errors(Translator):
    """Translates botocore's exceptions met while working on one key (or none).

    One object per call (``with S3Errors(bucket, key, "put"):``); cheap, with
    slots. ``KeyNotFound`` is raised only where ``key`` is given; a missing
    bucket is a plain, non-retryable :class:`MirrorKVError`.
    """

    __slots__ = ("_bucket", "_key", "_operation")
    catches = (BotoCoreError, ClientError, URLLib3Error)

    def __init__(self, bucket: str, key: str | None = None, operation: str = "") -> None:
        self._bucket = bucket
        self._key = key
        self._operation = operation

    def translate(self, error: BaseException) -> MirrorKVError:
        """The mirrorkv error for a botocore exception met during this call."""
        where = f"S3 bucket {self._bucket!r}"
        if self._operation:
            where += f", {self._operation}"
        if self._key is not None:
            where += f" of key {self._key!r}"
        if isinstance(error, ClientError):
            return self._client_error(error, where)
        if isinstance(error, NoCredentialsError | PartialCredentialsError):
            return AccessDenied(
                f"{where}: no usable AWS credentials (boto3 looked in its usual places: "
                "arguments, environment, shared files, instance roles)"
            )
        if isinstance(error, ParamValidationError):
            return InvalidValue(f"{where}: {error}")
        if isinstance(
            error, ConnectionError | HTTPClientError | IncompleteReadError | URLLib3Error
        ):
            return StoreUnavailable(f"{where}: cannot reach the server ({type(error).__name__})")
        name = type(error).__name__
        if "Stream" in name or "Timeout" in name or "Connection" in name:
            return StoreUnavailable(f"{where}: connection trouble ({name})")
        return MirrorKVError(f"{where}: {name}: {error}")

    def _client_error(self, error: ClientError, where: str) -> MirrorKVError:
        code = error_code(error)
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _NOT_FOUND and self._key is not None:
            return KeyNotFound(self._key)
        if code == "NoSuchBucket":
            return MirrorKVError(f"{where}: the bucket does not exist")
        if code in _PRECONDITION:
            return PreconditionFailed(f"{where}: the condition was not met ({code})")
        if code in _DENIED:
            return AccessDenied(
                f"{where}: access denied ({code}, HTTP {status}): check the credentials "
                "and the permissions they grant"
            )
        if code in _RETRYABLE or (isinstance(status, int) and status >= 500):
            return StoreUnavailable(f"{where}: the server is busy or failing ({code})")
        if code == "KeyTooLongError":
            return InvalidKey(f"{where}: the key is too long for S3 (1024 bytes with the prefix)")
        if code in _TOO_LARGE:
            message = error.response.get("Error", {}).get("Message", "")
            return InvalidValue(f"{where}: {code}: {message}")
        message = error.response.get("Error", {}).get("Message", "")
        return MirrorKVError(f"{where}: {code} (HTTP {status}): {message}")
