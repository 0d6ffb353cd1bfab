"""`AzureBlobStore`'s one place where azure-core exceptions become mirrorkv errors.

Messages name the account, the container and the key, never a credential:
the service's own message is left out of authentication errors (it quotes
the request's signature), and the exception chained as ``__cause__`` is the
SDK's, which carries no key either.
"""

from __future__ import annotations

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from ..errors import (
    AccessDenied,
    InvalidKey,
    KeyNotFound,
    MirrorKVError,
    PreconditionFailed,
    StoreUnavailable,
    Translator,
)

__all__ = ["AzureErrors", "error_code"]

# Service error codes that mean the blob name is not acceptable to the service.
_NAME_ERRORS = frozenset({"InvalidResourceName", "OutOfRangeInput", "InvalidUri"})
# HTTP statuses after which the same request may succeed later.
_RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def error_code(error: BaseException) -> str:
    """The service's error code of an azure-core exception ('' where it has none)."""
    code = getattr(error, "error_code", None)
    # Sometimes a str, sometimes a StorageErrorCode (a str enum, whose str() is its name).
    return str(getattr(code, "value", code) or "")


def _status(error: BaseException) -> int | None:
    status = getattr(error, "status_code", None)
    return status if isinstance(status, int) else None


def _first_line(error: BaseException) -> str:
    message = str(error).split("\n", 1)[0] or str(getattr(error, "reason", "") or "")
    return message.strip()[:200]


class AzureErrors:
    """Translates for one store: ``with errors(key):`` wraps one operation on ``key``."""

    __slots__ = ("_where",)

    def __init__(self, where: str) -> None:
        self._where = where

    def __call__(self, key: str | None = None, *, conditional: bool = False) -> _Block:
        """A context manager that re-raises any azure-core error inside as a mirrorkv error.

        ``conditional`` says the block is a conditional write, whose
        "modified" or "exists" answer means :class:`PreconditionFailed`.
        """
        return _Block(self, key, conditional)

    def translate(self, error: AzureError, key: str | None, conditional: bool) -> MirrorKVError:
        """The mirrorkv error for ``error``, met while working on ``key``."""
        where = self._where
        what = f" (key {key!r})" if key is not None else ""
        code = error_code(error)
        status = _status(error)
        if isinstance(error, ResourceNotFoundError):
            if code == "ContainerNotFound":
                return StoreUnavailable(f"{where}: the container does not exist")
            if key is not None and conditional:
                return PreconditionFailed(f"{key!r} does not exist (if_match)")
            if key is not None:
                return KeyNotFound(key)
        if isinstance(error, ClientAuthenticationError) or status in (401, 403):
            return AccessDenied(
                f"{where}: Azure refused the request{what} "
                f"({code or 'AuthenticationFailed'}, HTTP {status}): check the account key, "
                "SAS token or identity and its permissions"
            )
        if conditional and isinstance(error, ResourceModifiedError | ResourceExistsError):
            return PreconditionFailed(f"{key!r} is not in the expected state ({code})")
        if isinstance(error, ServiceRequestError | ServiceResponseError):
            return StoreUnavailable(
                f"{where}: the service could not be reached{what}: {type(error).__name__}"
            )
        if code == "InvalidBlockList":
            # Committing a block list drops the blob's other uncommitted blocks, so a
            # concurrent staged upload of the same key finds its blocks gone.
            return StoreUnavailable(
                f"{where}: the staged blocks of this upload{what} were discarded, most likely "
                "by a concurrent write of the same key; write it again"
            )
        if key is not None and code in _NAME_ERRORS:
            return InvalidKey(
                f"{where}: the service refused the blob name of {key!r} ({code}); "
                "Azure takes names of at most 1024 characters, see docs/stores/azure.md"
            )
        if status in _RETRYABLE_STATUS or not isinstance(error, HttpResponseError):
            return StoreUnavailable(
                f"{where}: {code or type(error).__name__}{what}: {_first_line(error)}"
            )
        return MirrorKVError(
            f"{where}: {code or 'error'} (HTTP {status}){what}: {_first_line(error)}"
        )


class _Block(Translator):
    __slots__ = ("_conditional", "_errors", "_key")
    catches = AzureError

    def __init__(self, errors: AzureErrors, key: str | None, conditional: bool) -> None:
        self._errors = errors
        self._key = key
        self._conditional = conditional

    def translate(self, error: BaseException) -> MirrorKVError:
        assert isinstance(error, AzureError)
        return self._errors.translate(error, self._key, self._conditional)
