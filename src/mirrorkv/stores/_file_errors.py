"""The file store's one place where ``OSError`` becomes a mirrorkv error.

Messages name paths relative to the store's root, never anything outside it.
"""

from __future__ import annotations

import errno
import os

from ..errors import KeyNotFound, MirrorKVError, ReadOnlyError, StoreUnavailable, Translator

__all__ = ["OSErrorTranslator"]

# Errors after which the same call may succeed later.
_RETRYABLE = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EIO,
        errno.EAGAIN,
        errno.EMFILE,
        errno.ENFILE,
        errno.ENOMEM,
        errno.ETIMEDOUT,
        errno.ESTALE,
        errno.EBUSY,
    }
)


class OSErrorTranslator:
    """Translates the ``OSError`` of one store root; ``with translator(key):`` wraps a block."""

    __slots__ = ("_prefix", "_root")

    def __init__(self, root: str, prefix: str) -> None:
        self._root = root
        self._prefix = prefix

    def __call__(self, key: str | None) -> _OSErrors:
        """A context manager that re-raises any ``OSError`` inside as a mirrorkv error."""
        return _OSErrors(self, key)

    def relative(self, path: str | bytes | None) -> str:
        """``path`` relative to the root, for messages (never anything outside the root)."""
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not path:
            return "(the store's root)"
        if path.startswith(self._prefix):
            return repr(path[len(self._prefix) :])
        return "(the store's root)"

    def translate(self, error: OSError, key: str | None) -> MirrorKVError:
        """The mirrorkv error for an ``OSError`` met while working on ``key``."""
        where = self.relative(error.filename)
        what = f" for key {key!r}" if key is not None else ""
        message = f"file store {self._root!r}: {error.strerror or error} at {where}{what}"
        if isinstance(error, FileNotFoundError) and key is not None:
            return KeyNotFound(key)
        if error.errno in _RETRYABLE:
            return StoreUnavailable(message)
        if error.errno == errno.EROFS:
            return ReadOnlyError(message)
        return MirrorKVError(message)


class _OSErrors(Translator):
    __slots__ = ("_key", "_translator")
    catches = OSError

    def __init__(self, translator: OSErrorTranslator, key: str | None) -> None:
        self._translator = translator
        self._key = key

    def translate(self, error: BaseException) -> MirrorKVError:
        assert isinstance(error, OSError)
        return self._translator.translate(error, self._key)
