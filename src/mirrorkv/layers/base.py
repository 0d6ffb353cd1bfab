"""`Layer`: a store that wraps another store and passes every call through.

A layer subclasses :class:`Layer` and overrides only what it changes. The
base class passes to the wrapped store:

* always: the primitives ``_get``, ``_put``, ``_delete``, ``_delete_if``,
  ``_head``, ``_list``, ``_keys``, ``_delete_many`` and ``_url_for`` (a
  layer that transforms keys, such as ``Prefixed``, overrides every one of
  them; one that transforms values overrides ``_get``, ``_put``, ``_head``,
  ``_list``, and ``_delete_if`` where its etags are not the stored ones);
* only for a :attr:`Layer.transparent` layer (one that changes neither keys
  nor values, such as ``ReadOnly``): the value paths ``_open``,
  ``_put_stream``, ``_put_many``, ``_get_with_meta`` and the derived
  ``copy``, ``incr``, ``get_many`` and ``ls``, so the wrapped store's
  server-side copy, native counters and batches are used. For any other
  layer these are derived by :class:`~mirrorkv.store.Store` from the
  layer's own ``_get`` and ``_put``, so a value-transforming layer is
  correct without overriding them (and overrides them to be fast).
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Iterator
from typing import IO, BinaryIO

from ..errors import InvalidValue
from ..meta import Listing, Meta
from ..store import Capability, PutOptions, Store

__all__ = ["Layer"]


class Layer(Store):
    """A store over ``inner``: every primitive goes to ``inner`` unless overridden.

    Closing the layer closes ``inner``. Capabilities (less ``NATIVE_TTL``),
    the value size limit and :attr:`~mirrorkv.store.Store.content_etags` are
    ``inner``'s unless the layer says otherwise.
    """

    #: True for a layer that changes neither keys nor values: then the value
    #: paths and ``copy``, ``incr``, ``get_many``, ``ls`` go to the wrapped store.
    transparent: bool = False

    def __init__(self, inner: Store) -> None:
        if not isinstance(inner, Store):
            raise InvalidValue(f"{type(self).__name__} wraps a Store, not {type(inner).__name__}")
        self._inner = inner
        # put(ttl=) reaches the wrapped store only through a layer that forwards it.
        self.capabilities = inner.capabilities & ~Capability.NATIVE_TTL
        self.max_value_size = inner.max_value_size
        self.content_etags = inner.content_etags

    @property
    def max_key_bytes(self) -> int:
        """The wrapped store's key length limit (a layer that lengthens keys lowers it)."""
        return self._inner.max_key_bytes

    @property
    def inner(self) -> Store:
        """The store this layer wraps."""
        return self._inner

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._inner!r})"

    # -- primitives, passed through ----------------------------------------------

    def _get(self, key: str) -> bytes:
        return self._inner._get(key)

    def _put(self, key: str, data: bytes, options: PutOptions) -> Meta:
        return self._inner._put(key, data, options)

    def _delete(self, key: str) -> None:
        self._inner._delete(key)

    def _delete_if(self, key: str, etag: str) -> None:
        self._inner._delete_if(key, etag)

    def _head(self, key: str) -> Meta:
        return self._inner._head(key)

    def _list(self, prefix: str, start_after: str | None) -> Iterator[Meta]:
        return self._inner._list(prefix, start_after)

    def _keys(self, prefix: str, start_after: str | None) -> Iterator[str]:
        return self._inner._keys(prefix, start_after)

    def _delete_many(self, keys: builtins.list[str]) -> None:
        self._inner._delete_many(keys)

    def _url_for(self, key: str, method: str, expires: float | None) -> str:
        return self._inner._url_for(key, method, expires)

    # -- value paths: the wrapped store's where the layer is transparent ------------

    def _open(self, key: str) -> BinaryIO:
        if self.transparent:
            return self._inner._open(key)
        return super()._open(key)

    def _put_stream(self, key: str, stream: IO[bytes], options: PutOptions) -> Meta:
        if self.transparent:
            return self._inner._put_stream(key, stream, options)
        return super()._put_stream(key, stream, options)

    def _get_with_meta(self, key: str) -> tuple[bytes, Meta]:
        if self.transparent:
            return self._inner._get_with_meta(key)
        return super()._get_with_meta(key)

    def _put_many(
        self, keys: builtins.list[str], values: builtins.list[bytes]
    ) -> builtins.list[Meta]:
        if self.transparent:
            return self._inner._put_many(keys, values)
        return super()._put_many(keys, values)

    def copy(self, source: str, target: str) -> Meta:
        """Copy a value; by the wrapped store itself where the layer is transparent."""
        if self.transparent:
            return self._inner.copy(source, target)
        return super().copy(source, target)

    def incr(self, key: str, delta: int = 1, *, initial: int = 0) -> int:
        """Add to a counter; natively in the wrapped store where the layer is transparent."""
        if self.transparent:
            return self._inner.incr(key, delta, initial=initial)
        return super().incr(key, delta, initial=initial)

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        """The values of the keys that exist; one batch in the wrapped store where possible."""
        if self.transparent:
            return self._inner.get_many(keys)
        return super().get_many(keys)

    def ls(self, prefix: str = "", delimiter: str = "/") -> Listing:
        """One level of the hierarchy below ``prefix``."""
        if self.transparent:
            return self._inner.ls(prefix, delimiter)
        return super().ls(prefix, delimiter)

    def close(self) -> None:
        """Close the wrapped store."""
        self._inner.close()
