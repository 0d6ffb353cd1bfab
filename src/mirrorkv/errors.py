"""The one error hierarchy of mirrorkv.

Every error the library raises derives from :class:`MirrorKVError`; a
backend's own exceptions (sqlite3, OSError, boto, redis, SQLAlchemy) never
leak out, they are wrapped with the original chained as ``__cause__``::

    MirrorKVError
    ├── KeyNotFound          (also KeyError)      the key does not exist
    ├── InvalidKey           (also ValueError)    the key breaks the key rules
    ├── InvalidValue         (also ValueError)    not bytes, or too large
    ├── InvalidURL           (also ValueError)    a store URL that cannot be opened
    ├── PreconditionFailed                        if_match / if_none_match not met
    ├── ReadOnlyError                             a write to a read-only store
    ├── NotSupported                              the store cannot do this at all
    ├── AccessDenied                              credentials refused or lacking permission
    ├── StoreUnavailable                          connection-level trouble (retryable)
    └── CorruptValue                              a stored value fails its checks

Each class says through :attr:`MirrorKVError.retryable` whether trying the
same call again can help, so a retry policy never parses messages.

:class:`Translator` is the base of each backend's one translation point: a
context manager that re-raises its driver's exceptions as these.
"""

from __future__ import annotations

from types import TracebackType

__all__ = [
    "AccessDenied",
    "CorruptValue",
    "InvalidKey",
    "InvalidURL",
    "InvalidValue",
    "KeyNotFound",
    "MirrorKVError",
    "NotSupported",
    "PreconditionFailed",
    "ReadOnlyError",
    "StoreUnavailable",
    "Translator",
]


class MirrorKVError(Exception):
    """The root of every error mirrorkv raises."""

    #: True where the same call may succeed if tried again later.
    retryable: bool = False


class KeyNotFound(MirrorKVError, KeyError):
    """The key does not exist in the store. Also a :class:`KeyError`."""

    def __init__(self, key: str, message: str | None = None) -> None:
        super().__init__(message or f"key not found: {key!r}")
        self.key = key

    def __str__(self) -> str:
        # KeyError.__str__ would repr() the message; keep it readable.
        return str(self.args[0])


class InvalidKey(MirrorKVError, ValueError):
    """The key is not a valid key (see :mod:`mirrorkv.keys`). Also a :class:`ValueError`."""


class InvalidValue(MirrorKVError, ValueError):
    """The value is not bytes-like, or is larger than the store accepts."""


class InvalidURL(MirrorKVError, ValueError):
    """A store URL that is malformed, has an unknown scheme, or unknown options."""


class PreconditionFailed(MirrorKVError):
    """A conditional write (``if_match`` / ``if_none_match``) found the key in another state."""


class ReadOnlyError(MirrorKVError):
    """A write was attempted on a read-only store."""


class NotSupported(MirrorKVError):
    """The store cannot perform this operation at all; retrying will not help."""


class AccessDenied(MirrorKVError):
    """The server refused the credentials, or they lack a permission the call needs.

    The message names the store and the operation, never the secret. Retrying
    with the same credentials will not help.
    """


class StoreUnavailable(MirrorKVError):
    """The store could not be reached or failed at the connection level.

    The original exception is chained as ``__cause__``. Retrying may help.
    """

    retryable = True


class CorruptValue(MirrorKVError):
    """A stored value or its metadata failed an integrity check."""


class Translator:
    """The one place a backend turns its driver's exceptions into ours.

    A subclass names the exception class it ``catches`` and how to
    ``translate`` one; ``with translator:`` then re-raises any such exception
    raised inside as the translated error, the original chained as
    ``__cause__``. One reusable object, not a generator-based context
    manager: it sits on every call's hot path.
    """

    __slots__ = ()

    #: The driver's exception class (or tuple of classes) to translate.
    catches: type[BaseException] | tuple[type[BaseException], ...] = ()

    def translate(self, error: BaseException) -> MirrorKVError:
        """The error of our hierarchy that stands for ``error``."""
        raise NotImplementedError

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is not None and isinstance(exc, self.catches):
            raise self.translate(exc) from exc
