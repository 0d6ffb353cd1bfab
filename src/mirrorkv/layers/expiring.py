"""`Expiring`: values with a time to live, absent everywhere once it has passed."""

from __future__ import annotations

import builtins
import contextlib
import os
import time
from collections.abc import Iterator, Mapping
from typing import IO, Any, BinaryIO

from ..errors import KeyNotFound, MirrorKVError, NotSupported, PreconditionFailed
from ..keys import check_key, check_prefix
from ..meta import NO_METADATA, Meta
from ..store import (
    Capability,
    PutOptions,
    Store,
    check_counter_arguments,
    make_options,
    parse_counter,
    to_bytes,
)
from ._expiring_meta import (
    EXPIRES,
    check_ttl,
    deadline_in,
    deadline_of,
    expired,
    refuse_reserved,
    stamp,
    takes_ttl,
    visible,
)
from .base import Layer

__all__ = ["EXPIRES", "Expiring"]

_now = time.time
PathOrFile = str | os.PathLike[str] | IO[bytes]
# purge() deletes what it found after this many expired keys, not all at the end.
_PURGE_BATCH = 1000


class Expiring(Layer):
    """A store whose values can expire: ``put(key, data, ttl=seconds)``.

    State: none of its own. A value's expiry time is kept with it, in its
    metadata under the reserved name :data:`EXPIRES` (``"mkv-expires"``),
    which is hidden from every :class:`Meta` this layer returns; user
    metadata using that name (in any case) raises :class:`InvalidValue`.

    Once its expiry time has passed (by this machine's clock), a key is
    absent to every call: ``get``, ``head``, ``in``, ``open``, ``get_many``,
    ``list``, ``keys``, ``ls``, ``copy`` (as source), ``url_for``;
    ``incr`` counts from ``initial`` and ``put(..., if_none_match="*")``
    succeeds, and ``delete(..., if_match=)`` fails (:class:`PreconditionFailed`).
    An expired value is removed lazily by the read that finds it (best
    effort, errors ignored) and by :meth:`purge`; a removal first checks that
    the key still holds the same version, then deletes on the condition of
    its etag where the wrapped store has conditional deletes, so a fresh
    write is not deleted (see the docs for the one case it cannot tell, and
    for stores without conditional deletes).

    ``put`` and ``put_file`` take ``ttl``; ``put_many`` and ``incr``'s new
    counters use ``default_ttl`` (``None``: no expiry); ``incr`` and
    ``copy`` keep the expiry of the value they start from. A store whose
    ``put`` takes ``ttl=`` (RedisStore) also gets the expiry natively, so it
    frees the value itself; absence is still decided by the metadata.
    """

    def __init__(self, inner: Store, default_ttl: float | None = None) -> None:
        """Wrap ``inner``; ``default_ttl``: seconds (> 0) for writes given no ``ttl``.

        Raises :class:`InvalidValue` for a ``default_ttl`` that is not a
        finite number > 0.
        """
        super().__init__(inner)
        self._default_ttl = None if default_ttl is None else check_ttl(default_ttl)
        self._native = takes_ttl(inner)
        # Until the wrapped store answers NotSupported once, removals are conditional.
        self._conditional_deletes = True
        # incr is a compare-and-swap loop here; copy is a read and a write
        # where the expiry must be set natively; put_many loops where it stamps.
        lost = Capability.NATIVE_COUNTERS
        if self._native:
            lost |= Capability.SERVER_SIDE_COPY
        if self._default_ttl is not None:
            lost |= Capability.TRANSACTIONS
        self.capabilities = inner.capabilities & ~lost

    @property
    def default_ttl(self) -> float | None:
        """Seconds to live of a value written without ``ttl`` (``None``: no expiry)."""
        return self._default_ttl

    @property
    def native(self) -> bool:
        """Whether the wrapped store also expires values itself (its ``put`` takes ``ttl=``)."""
        return self._native

    def __repr__(self) -> str:
        return f"Expiring({self._inner!r}, default_ttl={self._default_ttl!r})"

    # -- writes -----------------------------------------------------------------

    def put(
        self,
        key: str,
        data: bytes | bytearray | memoryview,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        if_match: str | None = None,
        if_none_match: str | None = None,
        ttl: float | None = None,
    ) -> Meta:
        """Store ``data`` as :meth:`Store.put` does; it expires ``ttl`` seconds from now.

        ``ttl=None`` uses ``default_ttl``. An expired value counts as absent
        for ``if_none_match="*"`` and matches no ``if_match``. Raises
        :class:`InvalidValue` for a ``ttl`` that is not a finite number > 0.
        """
        check_key(key)
        refuse_reserved(metadata)
        deadline = self._deadline(ttl)
        options = make_options(content_type, metadata, if_match, if_none_match)
        value = self._checked_size(to_bytes(data))
        return self._write(key, value, options._replace(metadata=stamp(options.metadata, deadline)))

    def put_file(
        self,
        key: str,
        source: PathOrFile,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        if_match: str | None = None,
        if_none_match: str | None = None,
        ttl: float | None = None,
    ) -> Meta:
        """Store a file's contents as :meth:`Store.put_file` does; ``ttl`` as in :meth:`put`."""
        check_key(key)
        refuse_reserved(metadata)
        deadline = self._deadline(ttl)
        options = make_options(content_type, metadata, if_match, if_none_match)
        options = options._replace(metadata=stamp(options.metadata, deadline))
        if isinstance(source, str | os.PathLike):
            with open(source, "rb") as stream:
                return self._write(key, stream, options)
        return self._write(key, source, options)

    def _put(self, key: str, data: bytes, options: PutOptions) -> Meta:
        refuse_reserved(options.metadata)
        metadata = stamp(options.metadata, self._deadline(None))
        return self._write(key, data, options._replace(metadata=metadata))

    def _put_stream(self, key: str, stream: IO[bytes], options: PutOptions) -> Meta:
        refuse_reserved(options.metadata)
        metadata = stamp(options.metadata, self._deadline(None))
        return self._write(key, stream, options._replace(metadata=metadata))

    def _put_many(
        self, keys: builtins.list[str], values: builtins.list[bytes]
    ) -> builtins.list[Meta]:
        if self._default_ttl is None:
            return self._inner._put_many(keys, values)  # nothing to stamp: one batch
        options = PutOptions(metadata=stamp(NO_METADATA, self._deadline(None)))
        return [self._send(key, data, options) for key, data in zip(keys, values, strict=True)]

    def _deadline(self, ttl: float | None) -> float | None:
        seconds = self._default_ttl if ttl is None else check_ttl(ttl)
        return None if seconds is None else _now() + seconds

    def _write(self, key: str, payload: bytes | IO[bytes], options: PutOptions) -> Meta:
        """Write with ``options`` (stamped), reading an expired value as absent."""
        retry = isinstance(payload, bytes)  # a stream can be sent once only
        condition = options
        if options.if_match is not None or (options.if_none_match is not None and not retry):
            condition = self._resolve(key, options)
        while True:
            try:
                return self._send(key, payload, condition)
            except PreconditionFailed:
                if options.if_none_match is None or not retry:
                    raise
            condition = self._resolve(key, options)

    def _resolve(self, key: str, options: PutOptions) -> PutOptions:
        """The condition to send for a conditional write, given what ``key`` holds now.

        Create-only over an expired value becomes "replace that value"; an
        ``if_match`` on an expired value fails. :class:`PreconditionFailed`
        where the answer is known already.
        """
        try:
            held = self._inner._head(key)
        except KeyNotFound:
            return options
        if not expired(held):
            if options.if_none_match is not None:
                raise PreconditionFailed(f"{key!r} exists (if_none_match='*')")
            return options
        if options.if_none_match is not None:
            return options._replace(if_none_match=None, if_match=held.etag)
        raise PreconditionFailed(f"{key!r} does not have etag {options.if_match!r} (it expired)")

    def _send(self, key: str, payload: bytes | IO[bytes], options: PutOptions) -> Meta:
        """One write to the wrapped store; natively expiring where it can."""
        deadline = deadline_in(options.metadata)
        if not self._native or deadline is None:
            if isinstance(payload, bytes):
                return visible(self._inner._put(key, payload, options))
            return visible(self._inner._put_stream(key, payload, options))
        data = payload if isinstance(payload, bytes) else self._checked_size(payload.read())
        native_put: Any = self._inner.put  # typed as Store.put, which has no ttl
        meta: Meta = native_put(
            key,
            data,
            content_type=options.content_type,
            metadata=options.metadata,
            if_match=options.if_match,
            if_none_match=options.if_none_match,
            ttl=max(deadline - _now(), 0.001),
        )
        return visible(meta)

    def _delete_if(self, key: str, etag: str) -> None:
        # The etags are the wrapped store's own: only an expired value needs a say.
        try:
            held = self._inner._head(key)
        except KeyNotFound:
            held = None
        if held is None or not expired(held):
            self._inner._delete_if(key, etag)
            return
        # Expired: absent to the caller, so no etag matches. Removed on the way
        # (conditionally, as a read would); NotSupported propagates so the answer
        # over a store without conditional deletes never depends on the value.
        with contextlib.suppress(PreconditionFailed):
            self._inner._delete_if(key, held.etag)
        raise PreconditionFailed(f"{key!r} does not have etag {etag!r} (it expired)")

    # -- reads ------------------------------------------------------------------

    def _live(self, key: str, meta: Meta) -> Meta:
        """``meta`` if its value has not expired; else remove it and raise :class:`KeyNotFound`."""
        if expired(meta):
            self._remove_quietly(key, meta)
            raise KeyNotFound(key)
        return meta

    def _get(self, key: str) -> bytes:
        data, meta = self._inner._get_with_meta(key)
        self._live(key, meta)
        return data

    def _get_with_meta(self, key: str) -> tuple[bytes, Meta]:
        data, meta = self._inner._get_with_meta(key)
        return data, visible(self._live(key, meta))

    def _head(self, key: str) -> Meta:
        return visible(self._live(key, self._inner._head(key)))

    def _open(self, key: str) -> BinaryIO:
        # Checked, then streamed: a value written in between is a live one.
        self._live(key, self._inner._head(key))
        return self._inner._open(key)

    def _list(self, prefix: str, start_after: str | None) -> Iterator[Meta]:
        for meta in self._inner._list(prefix, start_after):
            if expired(meta):
                self._remove_quietly(meta.key, meta)
                continue
            yield visible(meta)

    def _keys(self, prefix: str, start_after: str | None) -> Iterator[str]:
        return (meta.key for meta in self._list(prefix, start_after))

    def _url_for(self, key: str, method: str, expires: float | None) -> str:
        if Capability.URLS not in self._inner.capabilities:
            return self._inner._url_for(key, method, expires)
        if method != "GET":
            raise NotSupported("Expiring has no PUT URLs: a value written by one has no expiry")
        deadline = deadline_of(self._live(key, self._inner._head(key)))
        if deadline is not None:  # the URL must not outlive the value
            left = max(deadline - _now(), 0.001)
            expires = left if expires is None else min(expires, left)
        return self._inner._url_for(key, method, expires)

    # -- derived methods that keep an expiry --------------------------------------

    def copy(self, source: str, target: str) -> Meta:
        """Copy a live value with its content type, metadata and expiry time.

        :class:`KeyNotFound` where ``source`` is absent or expired. Server-side
        where the wrapped store copies so and has no native expiry.
        """
        check_key(source)
        check_key(target)
        held = self._live(source, self._inner._head(source))
        if not self._native or deadline_of(held) is None:
            return visible(self._inner.copy(source, target))
        data, meta = self._inner._get_with_meta(source)
        self._live(source, meta)
        return self._send(target, data, PutOptions(meta.content_type, meta.metadata))

    def incr(self, key: str, delta: int = 1, *, initial: int = 0) -> int:
        """Add ``delta`` to a counter atomically (a compare-and-swap loop); see :meth:`Store.incr`.

        An absent or expired counter starts from ``initial`` and expires
        ``default_ttl`` from now; a live one keeps its expiry time.
        """
        check_key(key)
        check_counter_arguments(delta, initial)
        lost = 0
        while True:
            try:
                data, meta = self._inner._get_with_meta(key)
            except KeyNotFound:
                value = initial + delta
                fresh = stamp(NO_METADATA, self._deadline(None))
                condition = PutOptions(metadata=fresh, if_none_match="*")
            else:
                if expired(meta):
                    value = initial + delta
                    fresh = stamp(NO_METADATA, self._deadline(None))
                    condition = PutOptions(metadata=fresh, if_match=meta.etag)
                else:
                    value = parse_counter(key, data) + delta
                    condition = PutOptions(meta.content_type, meta.metadata, if_match=meta.etag)
            try:
                self._send(key, b"%d" % value, condition)
            except PreconditionFailed:
                lost += 1
                self._inner._lost_race(lost)
                continue
            return value

    # -- removal ------------------------------------------------------------------

    def purge(self, prefix: str = "") -> int:
        """Remove every expired key (starting with ``prefix``); return how many were removed.

        Walks the whole listing of the wrapped store. A key rewritten since
        it was listed is left alone (see :meth:`_remove`).
        """
        check_prefix(prefix)
        removed = 0
        found: builtins.list[Meta] = []
        for meta in self._inner._list(prefix, None):
            if expired(meta):
                found.append(meta)
            if len(found) >= _PURGE_BATCH:
                removed += sum(self._remove(held.key, held) for held in found)
                found.clear()
        return removed + sum(self._remove(held.key, held) for held in found)

    def _remove(self, key: str, seen: Meta) -> bool:
        """Delete ``key`` if it still holds the expired value ``seen``; whether it did.

        The delete is conditional on the etag of the value just checked,
        where the wrapped store has conditional deletes: a value written
        after the check is left alone. Without them (:class:`NotSupported`)
        it is a plain delete, so a write in that one round trip is lost.
        """
        try:
            held = self._inner._head(key)
        except KeyNotFound:
            return False
        if held.version != seen.version or not expired(held):
            return False
        if self._conditional_deletes:
            try:
                self._inner._delete_if(key, held.etag)
            except PreconditionFailed:
                return False  # rewritten (or removed) since the check: leave it
            except NotSupported:
                self._conditional_deletes = False
            else:
                return True
        self._inner._delete(key)
        return True

    def _remove_quietly(self, key: str, seen: Meta) -> None:
        # A read that found an expired value answers "absent" whether or not
        # the clean-up worked: the value is gone either way to callers.
        with contextlib.suppress(MirrorKVError):
            self._remove(key, seen)
