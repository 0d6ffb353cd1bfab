"""`ReadOnly`: a view of a store through which nothing can be written."""

from __future__ import annotations

import builtins
from typing import IO, NoReturn

from ..errors import ReadOnlyError
from ..keys import check_key
from ..meta import Meta
from ..store import Capability, PutOptions, Store
from .base import Layer

__all__ = ["ReadOnly"]

# What a read-only view still does natively: the rest are ways of writing.
_READ_CAPABILITIES = Capability.URLS | Capability.MULTI_PROCESS


class ReadOnly(Layer):
    """Every read of ``inner`` passes unchanged; every write raises :class:`ReadOnlyError`.

    It holds no state. Reads (``get``, ``head``, ``in``, ``list``, ``keys``,
    ``ls``, ``open``, ``get_many``, ``get_file``, ``url_for(method="GET")``)
    are ``inner``'s own, batches and streams included. Writes (``put``,
    ``put_file``, ``put_many``, ``delete`` with or without ``if_match``,
    ``delete_many``, ``copy``, ``incr``/``decr``, ``url_for(method="PUT")``) raise
    :class:`ReadOnlyError` and leave ``inner`` unchanged; arguments are
    checked first, so an invalid key still raises :class:`InvalidKey`; an
    empty ``put_many`` or ``delete_many`` writes nothing and raises nothing.
    Writes made to ``inner`` by others are seen. Only ``URLS`` and
    ``MULTI_PROCESS`` of ``inner``'s capabilities remain.
    """

    transparent = True

    def __init__(self, inner: Store) -> None:
        """A read-only view of ``inner``."""
        super().__init__(inner)
        self.capabilities = inner.capabilities & _READ_CAPABILITIES

    def _refuse(self, what: str) -> NoReturn:
        raise ReadOnlyError(f"{what} on a read-only store ({self._inner!r})")

    def _put(self, key: str, data: bytes, options: PutOptions) -> Meta:
        self._refuse(f"put {key!r}")

    def _put_stream(self, key: str, stream: IO[bytes], options: PutOptions) -> Meta:
        self._refuse(f"put {key!r}")

    def _put_many(
        self, keys: builtins.list[str], values: builtins.list[bytes]
    ) -> builtins.list[Meta]:
        self._refuse(f"put_many of {len(keys)} keys")

    def _delete(self, key: str) -> None:
        self._refuse(f"delete {key!r}")

    def _delete_if(self, key: str, etag: str) -> None:
        self._refuse(f"delete {key!r}")

    def _delete_many(self, keys: builtins.list[str]) -> None:
        if not keys:  # like put_many of nothing: nothing to refuse
            return
        self._refuse(f"delete_many of {len(keys)} keys")

    def _url_for(self, key: str, method: str, expires: float | None) -> str:
        if method != "GET":
            self._refuse(f"a {method} URL for {key!r}")
        return self._inner._url_for(key, method, expires)

    def copy(self, source: str, target: str) -> Meta:
        """Raises :class:`ReadOnlyError` (after checking both keys)."""
        check_key(source)
        check_key(target)
        self._refuse(f"copy to {target!r}")

    def incr(self, key: str, delta: int = 1, *, initial: int = 0) -> int:
        """Raises :class:`ReadOnlyError` (after checking the key); ``decr`` too."""
        check_key(key)
        self._refuse(f"incr {key!r}")
