"""`Prefixed`: a store whose every key lives under a fixed prefix of another store."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Iterator
from typing import IO, BinaryIO

from ..errors import InvalidKey, KeyNotFound, MirrorKVError, Translator
from ..keys import check_key
from ..meta import Listing, Meta
from ..store import PutOptions, Store
from .base import Layer

__all__ = ["Prefixed"]


class Prefixed(Layer):
    """The keys of ``inner`` that start with ``prefix``, seen without it.

    ``Prefixed(store, "tenant-a/")`` stores ``k`` as ``tenant-a/k`` and lists
    only keys under ``tenant-a/``, with the prefix stripped; keys outside the
    prefix are neither seen nor touched. The prefix is kept byte for byte
    (no ``/`` is added). It holds no state of its own: values, metadata and
    etags are ``inner``'s, and ``copy``, ``incr``, ``get_many``,
    ``put_many``, ``delete_many``, ``ls`` and ``url_for`` are ``inner``'s own
    (server-side, native, batched) versions called with mapped keys, so
    their guarantees (atomic counters, all-or-nothing batches) carry over.

    A key is valid here when ``prefix + key`` is a valid key of ``inner``:
    so keys are at most ``1024 - len(prefix.encode())`` bytes
    (:attr:`max_key_bytes`); a longer one raises :class:`InvalidKey` before
    anything is done.
    """

    def __init__(self, inner: Store, prefix: str) -> None:
        """Wrap ``inner``; ``prefix`` must be a valid key shorter than 1024 bytes.

        Raises :class:`InvalidKey` for an empty, non-str, NUL-holding or too
        long prefix.
        """
        super().__init__(inner)
        check_key(prefix)
        self._limit = inner.max_key_bytes  # the wrapped store's, lower under another prefix
        if len(prefix.encode("utf-8")) >= self._limit:
            raise InvalidKey(f"a prefix leaves no room for keys: {len(prefix.encode())} bytes")
        self._prefix = prefix
        self._cut = len(prefix)
        self._missing = _StripKey(len(prefix))

    @property
    def prefix(self) -> str:
        """The prefix every key is stored under in the wrapped store."""
        return self._prefix

    @property
    def max_key_bytes(self) -> int:
        """The longest key this store takes, in UTF-8 bytes: the wrapped store's less the prefix."""
        return self._limit - len(self._prefix.encode("utf-8"))

    def __repr__(self) -> str:
        return f"Prefixed({self._inner!r}, {self._prefix!r})"

    # -- key mapping ------------------------------------------------------------

    def _to_inner(self, key: str) -> str:
        """The wrapped store's key for ``key``; :class:`InvalidKey` where it grows too long."""
        full = self._prefix + key
        if (len(full) > 256 or not full.isascii()) and len(full.encode()) > self._limit:
            raise InvalidKey(
                f"a key under prefix {self._prefix!r} is at most {self.max_key_bytes} "
                f"bytes of UTF-8, this one is {len(key.encode())}"
            )
        return full

    def _bound(self, start_after: str | None) -> str:
        # A listing bound is not a key: it may be long, so it is mapped without checks.
        # With none, the prefix itself: a key of the wrapped store equal to the
        # prefix would be the empty key here, so it is never listed.
        return self._prefix if start_after is None else self._prefix + start_after

    def _out(self, meta: Meta) -> Meta:
        """``meta`` with the prefix stripped from its key (lazy fields stay lazy)."""
        return Meta(meta[0][self._cut :], *meta[1:])

    # -- primitives -------------------------------------------------------------

    def _get(self, key: str) -> bytes:
        with self._missing:
            return self._inner._get(self._to_inner(key))

    def _put(self, key: str, data: bytes, options: PutOptions) -> Meta:
        return self._out(self._inner._put(self._to_inner(key), data, options))

    def _delete(self, key: str) -> None:
        self._inner._delete(self._to_inner(key))

    def _delete_if(self, key: str, etag: str) -> None:
        self._inner._delete_if(self._to_inner(key), etag)

    def _head(self, key: str) -> Meta:
        with self._missing:
            return self._out(self._inner._head(self._to_inner(key)))

    def _list(self, prefix: str, start_after: str | None) -> Iterator[Meta]:
        return map(self._out, self._inner._list(self._prefix + prefix, self._bound(start_after)))

    def _keys(self, prefix: str, start_after: str | None) -> Iterator[str]:
        cut = self._cut
        found = self._inner._keys(self._prefix + prefix, self._bound(start_after))
        return (key[cut:] for key in found)

    def _open(self, key: str) -> BinaryIO:
        with self._missing:
            return self._inner._open(self._to_inner(key))

    def _put_stream(self, key: str, stream: IO[bytes], options: PutOptions) -> Meta:
        return self._out(self._inner._put_stream(self._to_inner(key), stream, options))

    def _get_with_meta(self, key: str) -> tuple[bytes, Meta]:
        with self._missing:
            data, meta = self._inner._get_with_meta(self._to_inner(key))
        return data, self._out(meta)

    def _put_many(
        self, keys: builtins.list[str], values: builtins.list[bytes]
    ) -> builtins.list[Meta]:
        mapped = [self._to_inner(key) for key in keys]  # every key checked before any write
        return [self._out(meta) for meta in self._inner._put_many(mapped, values)]

    def _delete_many(self, keys: builtins.list[str]) -> None:
        self._inner._delete_many([self._to_inner(key) for key in keys])

    def _url_for(self, key: str, method: str, expires: float | None) -> str:
        return self._inner._url_for(self._to_inner(key), method, expires)

    # -- derived methods: the wrapped store's own, keys mapped ----------------------

    def copy(self, source: str, target: str) -> Meta:
        """Copy a value with its metadata to another key, by the wrapped store's own ``copy``."""
        check_key(source)
        check_key(target)
        with self._missing:
            return self._out(self._inner.copy(self._to_inner(source), self._to_inner(target)))

    def incr(self, key: str, delta: int = 1, *, initial: int = 0) -> int:
        """Add ``delta`` to a counter atomically, by the wrapped store's own ``incr``."""
        check_key(key)
        return self._inner.incr(self._to_inner(key), delta, initial=initial)

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        """The values of the keys that exist, by one ``get_many`` of the wrapped store."""
        given = [check_key(key) for key in keys]
        found = self._inner.get_many([self._to_inner(key) for key in given])
        cut = self._cut
        return {key[cut:]: value for key, value in found.items()}

    def ls(self, prefix: str = "", delimiter: str = "/") -> Listing:
        """One level of the hierarchy below ``prefix``, by the wrapped store's own ``ls``.

        The prefix's own characters never roll keys up, even where they hold
        ``delimiter``: the level is the one below ``prefix`` as this store sees it.
        """
        if prefix != "":
            check_key(prefix)
        listing = self._inner.ls(self._prefix + prefix, delimiter)
        cut = self._cut
        return Listing(
            [self._out(meta) for meta in listing.objects if meta.key != self._prefix],
            [common[cut:] for common in listing.prefixes],
        )


class _StripKey(Translator):
    """Re-raises the wrapped store's :class:`KeyNotFound` naming the key as callers gave it."""

    __slots__ = ("_cut",)
    catches = KeyNotFound

    def __init__(self, cut: int) -> None:
        self._cut = cut

    def translate(self, error: BaseException) -> MirrorKVError:
        assert isinstance(error, KeyNotFound)
        return KeyNotFound(error.key[self._cut :])
