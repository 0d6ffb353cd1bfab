"""`Mirror`: a remote store whose metadata is answered from a local index.

Values stay in the remote. Every write made through the mirror goes to the
remote first and is then recorded in the index; every question about what
exists (``head``, ``in``, ``list``, ``keys``, ``ls``, ``du``, ``find``) is
answered from the index without a remote request unless the caller passes
``force=True``. :meth:`Mirror.sync` repairs what changed behind the mirror's
back; :meth:`Mirror.apply_events` follows S3 event notifications.

If the remote write fails the index is untouched (a write whose outcome is
unknown, such as a timeout, journals its key as dirty). If recording fails
after the remote write succeeded, the key is journaled as dirty in the index
(or, if the index cannot even take that, kept in memory and logged) and the
next :meth:`Mirror.sync` or :meth:`Mirror.repair` fixes it.
"""

from __future__ import annotations

import builtins
import functools
import io
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import IO, Any, BinaryIO, cast

from ..errors import InvalidValue, KeyNotFound, MirrorKVError, NotSupported, StoreUnavailable
from ..keys import check_key, check_prefix
from ..meta import Details, Listing, Meta
from ..store import Capability, PutOptions, Store
from ._value_cache import ValueCache
from .index import MetadataIndex, Usage, entry_state, open_index
from .ingest import EventReport, apply_events
from .stats import PAGE, MirrorStats, RequestCounter, RequestPrices, list_requests, page_sizes
from .sync import LISTED, Progress, SyncReport, listed_record, sync_keys, sync_listing, timed

__all__ = ["DEFAULT_CACHE_BYTES", "Mirror", "mirror_bucket"]

log = logging.getLogger("mirrorkv.mirror")

#: The default bound of the value cache, in bytes.
DEFAULT_CACHE_BYTES = 256 * 1024 * 1024

_new_meta = tuple.__new__

# The index could not be read before a remote call: record without comparing.
_UNSEEN: Any = object()
#: How many times a write re-reads the remote when other writers keep recording its key.
_SETTLE_TRIES = 8


def mirror_bucket(remote: Store) -> tuple[str, str]:
    """``(bucket, key prefix)`` under which the index holds ``remote``'s objects.

    An S3 store is held as S3 names it (its bucket, its keys with the store's
    prefix), so a mirror and a wrapped boto3 client share entries; any other
    store under its URL with an empty key prefix.
    """
    if _is_s3(remote):
        return remote.bucket, remote.prefix  # type: ignore[attr-defined]
    url = getattr(remote, "url", None)
    if not isinstance(url, str) or url == "memory://":
        raise InvalidValue(
            f"cannot tell which bucket {type(remote).__name__} is: pass Mirror(..., bucket=)"
        )
    return url, ""


class Mirror(Store):
    """A store that answers what exists from a local index and reads values remotely.

    ``index`` is a :class:`MetadataIndex` or a URL for :func:`open_index`
    (the mirror closes an index it opened). ``bucket`` names the remote in the
    index (default: :func:`mirror_bucket`). ``cache`` is an optional store
    for values, kept within ``cache_bytes`` (least recently used first out);
    a cached value is served only while its etag matches the index.
    ``prices`` values the requests the index spares (see :meth:`stats`).
    """

    def __init__(
        self,
        remote: Store,
        index: MetadataIndex | str = "sqlite:mirrorkv-index.db",
        *,
        bucket: str | None = None,
        cache: Store | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        prices: RequestPrices | None = None,
    ) -> None:
        if not isinstance(remote, Store):
            raise InvalidValue(f"Mirror wraps a Store, not {type(remote).__name__}")
        if bucket is None:
            bucket, key_prefix = mirror_bucket(remote)
        else:
            key_prefix = ""
        self._remote = remote
        self._owns_index = isinstance(index, str)
        self._index = open_index(index) if isinstance(index, str) else index
        self._bucket = bucket
        self._key_prefix = key_prefix
        self._counter = RequestCounter(prices)
        self._page_sizes = page_sizes(remote)
        self._unjournaled: set[str] = set()
        self._swaps = True  # the index has compare_and_set (until it says otherwise)
        self._lock = threading.Lock()
        self.capabilities = remote.capabilities & ~Capability.NATIVE_TTL  # put takes no ttl
        self.max_value_size = remote.max_value_size
        self.content_etags = remote.content_etags
        self._cache = None if cache is None else ValueCache(cache, cache_bytes)

    @property
    def remote(self) -> Store:
        """The store values are read from and written to."""
        return self._remote

    @property
    def max_key_bytes(self) -> int:
        """The remote's key length limit."""
        return self._remote.max_key_bytes

    @property
    def index(self) -> MetadataIndex:
        """The metadata index."""
        return self._index

    @property
    def bucket(self) -> str:
        """The name of the remote in the index."""
        return self._bucket

    def __repr__(self) -> str:
        return f"Mirror({self._remote!r}, index={self._index!r}, bucket={self._bucket!r})"

    # -- key space ------------------------------------------------------------

    def _full(self, key: str) -> str:
        return self._key_prefix + key

    def _relative(self, meta: Meta) -> Meta:
        """An index record as the mirror gives it: its own key, details fetched on demand."""
        key = meta[0]
        if self._key_prefix:
            key = key[len(self._key_prefix) :]
        if meta[6] == LISTED:
            details = Details(functools.partial(self._fetch_details, key))
            return _new_meta(Meta, (key, meta[1], meta[2], meta[3], details, details, details))
        return _new_meta(Meta, (key, *meta[1:])) if self._key_prefix else meta

    def _relative_all(self, metas: Iterable[Meta], method: str | None = None) -> Iterator[Meta]:
        """:meth:`_relative` of each record; with ``method``, counted as LIST requests saved.

        One generator with the conversion inlined: it runs once per listed key.
        (A mirror without a key prefix lists through ``list_pages`` instead.)
        """
        cut = len(self._key_prefix)
        details = Details.shared(self._fetch_details)  # one for all: nothing more per key
        seen = 0
        try:
            for meta in metas:
                seen += 1
                if meta[6] == LISTED:
                    key = meta[0][cut:] if cut else meta[0]
                    yield _new_meta(
                        Meta, (key, meta[1], meta[2], meta[3], details, details, details)
                    )
                elif cut:
                    yield _new_meta(Meta, (meta[0][cut:], *meta[1:]))
                else:
                    yield meta
        finally:
            if method is not None:
                self._counter.local(method, "LIST", list_requests(seen, *self._page_sizes))

    def _fetch_details(self, key: str) -> Meta:
        """The remote's full record of ``key``, recorded in the index (one HEAD)."""
        seen = self._seen(key)
        try:
            meta = self._head_remote(key)
        except KeyNotFound:
            self._settle(key, seen, None, wrote=False)
            raise
        self._settle(key, seen, meta, wrote=False)
        return meta

    # -- recording -------------------------------------------------------------

    def _seen(self, key: str) -> object:
        """The state of ``key``'s entry before a remote call (for compare_and_set), or _UNSEEN."""
        if not self._swaps:
            return _UNSEEN
        try:
            return entry_state(self._index.get(self._bucket, self._full(key)))
        except Exception:  # the recording that follows journals the key if need be
            return _UNSEEN

    def _settle(self, key: str, seen: object, meta: Meta | None, *, wrote: bool) -> None:
        """Make the entry of ``key`` what the remote told us (``meta``; None: absent).

        The entry is replaced only if it is still what it was before the
        remote call (``seen``). If another process recorded the key since: a
        read gives way (that record is at least as new); a write asks the
        remote what the key holds now and records that, so whichever of
        several concurrent writers records last, the index ends up holding
        the remote's final state.
        """
        if seen is not _UNSEEN:
            results = {key: meta}
            self._settle_many({key: seen}, results, wrote=wrote)
        elif meta is None:
            self._forget([key])
        else:
            self._record([meta])

    def _seen_many(self, keys: builtins.list[str]) -> dict[str, object]:
        """:meth:`_seen` of each key (before a remote batch write), in one index call."""
        if not self._swaps:
            return dict.fromkeys(keys, _UNSEEN)
        try:
            found = self._index.get_many(self._bucket, [self._full(key) for key in keys])
        except Exception:  # the recording that follows journals the keys if need be
            return dict.fromkeys(keys, _UNSEEN)
        return {key: entry_state(found.get(self._full(key))) for key in keys}

    def _settle_many(
        self, seen: dict[str, object], results: dict[str, Meta | None], *, wrote: bool = True
    ) -> None:
        """:meth:`_settle` of each key of ``results``, in one index call where it can."""
        if any(state is _UNSEEN for state in seen.values()):
            self._record([meta for meta in results.values() if meta is not None])
            self._forget([key for key, meta in results.items() if meta is None])
            return
        changes = [
            (
                self._full(key),
                cast("tuple[str, str] | None", seen[key]),
                None if meta is None else _new_meta(Meta, (self._full(key), *meta[1:])),
            )
            for key, meta in results.items()
        ]
        try:
            lost = self._index.compare_and_set_many(self._bucket, changes)
        except NotSupported:
            self._swaps = False
            self._settle_many(dict.fromkeys(results, _UNSEEN), results, wrote=wrote)
            return
        except Exception as error:
            self._mark_dirty([change[0] for change in changes], error)
            return
        if wrote:
            cut = len(self._key_prefix)
            for full in lost:
                try:
                    self._catch_up(full[cut:])
                except Exception as error:
                    self._mark_dirty([full], error)

    def _catch_up(self, key: str) -> None:
        """Record what the remote holds now for ``key``, which another writer recorded meanwhile."""
        full = self._full(key)
        for _ in range(_SETTLE_TRIES):
            expected = entry_state(self._index.get(self._bucket, full))
            try:
                current: Meta | None = self._head_remote(key)
            except KeyNotFound:
                current = None
            record = None if current is None else _new_meta(Meta, (full, *current[1:]))
            if self._index.compare_and_set(self._bucket, full, expected, record):
                return
        raise MirrorKVError(f"the entry of {key!r} kept changing under concurrent writers")

    def _record(self, metas: builtins.list[Meta]) -> None:
        """Record metas the remote confirmed; journal their keys dirty if that fails."""
        if not metas:
            return
        records = [_new_meta(Meta, (self._full(m[0]), *m[1:])) for m in metas]
        self._journaled(
            [m.key for m in records],
            lambda: (
                self._index.record(self._bucket, records[0])
                if len(records) == 1
                else self._index.record_many(self._bucket, records)
            ),
        )

    def _forget(self, keys: builtins.list[str]) -> None:
        """Forget keys the remote deleted; journal them dirty if that fails."""
        full = [self._full(key) for key in keys]
        self._journaled(
            full,
            lambda: (
                self._index.forget(self._bucket, full[0])
                if len(full) == 1
                else self._index.forget_many(self._bucket, full)
            ),
        )

    def _journaled(self, full_keys: builtins.list[str], change: Callable[[], None]) -> None:
        try:
            change()
        except Exception as error:
            self._mark_dirty(full_keys, error)

    def _mark_dirty(self, full_keys: builtins.list[str], error: BaseException) -> None:
        try:
            self._index.mark_dirty(self._bucket, full_keys)
        except Exception:
            with self._lock:
                self._unjournaled.update(full_keys)
            log.error(
                "mirror of %s: %d key(s) written remotely could not be recorded nor journaled"
                " (%s); repair() or sync() will fix them while this process runs",
                self._bucket,
                len(full_keys),
                error,
            )
        else:
            log.warning(
                "mirror of %s: %d key(s) journaled dirty after a failed index write (%s)",
                self._bucket,
                len(full_keys),
                error,
            )

    def _remote_write(self, kind: str, keys: builtins.list[str], write: Callable[[], Any]) -> Any:
        """Run a remote write; journal ``keys`` dirty when its outcome is unknown."""
        self._counter.remote(kind, len(keys) if kind == "PUT" else 1)
        try:
            return write()
        except StoreUnavailable as error:
            self._mark_dirty([self._full(key) for key in keys], error)
            raise

    # -- remote reads ------------------------------------------------------------

    def _head_remote(self, key: str) -> Meta:
        self._counter.remote("HEAD")
        return self._remote.head(key)

    # -- primitives: writes go remote first, then to the index ---------------------

    def _put(self, key: str, data: bytes, options: PutOptions) -> Meta:
        seen = self._seen(key)
        meta: Meta = self._remote_write("PUT", [key], lambda: self._remote._put(key, data, options))
        self._settle(key, seen, meta, wrote=True)
        if self._cache is not None:
            self._cache.store(key, meta.etag, data)
        return meta

    def _put_stream(self, key: str, stream: IO[bytes], options: PutOptions) -> Meta:
        seen = self._seen(key)
        meta: Meta = self._remote_write(
            "PUT", [key], lambda: self._remote._put_stream(key, stream, options)
        )
        self._settle(key, seen, meta, wrote=True)
        if self._cache is not None:
            self._cache.drop(key)
        return meta

    def _put_many(
        self, keys: builtins.list[str], values: builtins.list[bytes]
    ) -> builtins.list[Meta]:
        seen = self._seen_many(keys)
        metas: builtins.list[Meta] = self._remote_write(
            "PUT", keys, lambda: self._remote._put_many(keys, values)
        )
        self._settle_many(seen, {meta[0]: meta for meta in metas})
        if self._cache is not None:
            for key in keys:
                self._cache.drop(key)
        return metas

    def _delete(self, key: str) -> None:
        seen = self._seen(key)
        self._remote_write("DELETE", [key], lambda: self._remote._delete(key))
        self._settle(key, seen, None, wrote=True)
        if self._cache is not None:
            self._cache.drop(key)

    def _delete_if(self, key: str, etag: str) -> None:
        # The remote decides (atomically where it can); on PreconditionFailed
        # or NotSupported nothing was deleted, so the entry stays as it is.
        seen = self._seen(key)
        self._remote_write("DELETE", [key], lambda: self._remote._delete_if(key, etag))
        self._settle(key, seen, None, wrote=True)
        if self._cache is not None:
            self._cache.drop(key)

    def _delete_many(self, keys: builtins.list[str]) -> None:
        for start in range(0, len(keys), PAGE):
            chunk = keys[start : start + PAGE]
            seen = self._seen_many(chunk)
            self._remote_write("DELETE", chunk, functools.partial(self._remote._delete_many, chunk))
            self._settle_many(seen, dict.fromkeys(chunk))
        if self._cache is not None:
            for key in keys:
                self._cache.drop(key)

    def copy(self, source: str, target: str) -> Meta:
        """Copy on the remote (server-side where it can), then record the target."""
        check_key(source)
        check_key(target)
        seen = self._seen(target)
        meta: Meta = self._remote_write("COPY", [target], lambda: self._remote.copy(source, target))
        self._settle(target, seen, meta, wrote=True)
        if self._cache is not None:
            self._cache.drop(target)
        return meta

    def incr(self, key: str, delta: int = 1, *, initial: int = 0) -> int:
        """The remote's (atomic) counter, then one HEAD to record its new state."""
        seen = self._seen(key)
        value: int = self._remote_write(
            "PUT", [key], lambda: self._remote.incr(key, delta, initial=initial)
        )
        try:
            current: Meta | None = self._head_remote(key)
        except KeyNotFound:  # deleted by someone else since
            current = None
        except MirrorKVError as error:
            self._mark_dirty([self._full(key)], error)
            return value
        self._settle(key, seen, current, wrote=True)
        return value

    def _url_for(self, key: str, method: str, expires: float | None) -> str:
        return self._remote._url_for(key, method, expires)

    # -- primitives: reads -----------------------------------------------------------

    def _get(self, key: str) -> bytes:
        cache = self._cache
        if cache is not None:
            entry = self._index.get(self._bucket, self._full(key))
            if entry is not None and (data := cache.load(key, entry.etag)) is not None:
                return data
            return self._get_and_record(key)
        self._counter.remote("GET")
        seen = self._seen(key)
        try:
            return self._remote._get(key)
        except KeyNotFound:
            self._settle(key, seen, None, wrote=False)
            raise

    def _get_and_record(self, key: str) -> bytes:
        """Read the value and its metadata remotely; record both (index and cache)."""
        self._counter.remote("GET")
        seen = self._seen(key)
        try:
            data, meta = self._remote._get_with_meta(key)
        except KeyNotFound:
            self._settle(key, seen, None, wrote=False)
            raise
        self._settle(key, seen, meta, wrote=False)
        if self._cache is not None:
            self._cache.store(key, meta.etag, data)
        return data

    def _get_with_meta(self, key: str) -> tuple[bytes, Meta]:
        self._counter.remote("GET")
        seen = self._seen(key)
        data, meta = self._remote._get_with_meta(key)
        self._settle(key, seen, meta, wrote=False)
        return data, meta

    def _open(self, key: str) -> BinaryIO:
        cache = self._cache
        if cache is not None:
            entry = self._index.get(self._bucket, self._full(key))
            if entry is not None and (data := cache.load(key, entry.etag)) is not None:
                return io.BytesIO(data)
        self._counter.remote("GET")
        return self._remote._open(key)

    def _head(self, key: str) -> Meta:
        meta = self._index.get(self._bucket, self._full(key))
        self._counter.local("head", "HEAD")
        if meta is None:
            raise KeyNotFound(key)
        return self._relative(meta)

    def _list(self, prefix: str, start_after: str | None) -> Iterator[Meta]:
        low = None if start_after is None else self._full(start_after)
        if self._key_prefix:
            metas = self._index.list(self._bucket, self._full(prefix), low)
            return self._relative_all(metas, "list")
        details = Details.shared(self._fetch_details)
        return self._paged(self._index.list_pages(self._bucket, prefix, low, details), "list")

    def _paged(self, pages: Iterator[builtins.list[Meta]], method: str) -> Iterator[Meta]:
        """The records of ``pages``, counted as the LIST requests a remote listing would take."""
        seen = 0
        try:
            for page in pages:
                seen += len(page)
                yield from page
        finally:
            self._counter.local(method, "LIST", list_requests(seen, *self._page_sizes))

    def _keys(self, prefix: str, start_after: str | None) -> Iterator[str]:
        keys = self._index.keys(
            self._bucket,
            self._full(prefix),
            None if start_after is None else self._full(start_after),
        )
        if self._key_prefix:
            cut = len(self._key_prefix)
            keys = (key[cut:] for key in keys)
        return self._counted("keys", keys)

    def _counted(self, method: str, items: Iterator[Any]) -> Iterator[Any]:
        """``items``, counting the LIST requests a remote listing of them would take."""
        seen = 0
        try:
            for item in items:
                seen += 1
                yield item
        finally:
            self._counter.local(method, "LIST", list_requests(seen, *self._page_sizes))

    # -- the public API, with force= ---------------------------------------------------

    def get(self, key: str, *, force: bool = False) -> bytes:
        """The value of ``key`` from the remote (or the cache, while its etag is current).

        ``force=True`` reads the remote and records what it returned.
        """
        check_key(key)
        return self._get_and_record(key) if force else self._get(key)

    def head(self, key: str, *, force: bool = False) -> Meta:
        """The metadata of ``key`` from the index; ``force=True`` asks the remote (and records)."""
        check_key(key)
        return self._fetch_details(key) if force else self._head(key)

    def exists(self, key: str, *, force: bool = False) -> bool:
        """Whether ``key`` exists, by the index (``key in mirror``) or the remote (``force``)."""
        try:
            self.head(key, force=force)
        except KeyNotFound:
            return False
        return True

    def list(
        self, prefix: str = "", *, start_after: str | None = None, force: bool = False
    ) -> Iterator[Meta]:
        """The index's records under ``prefix``; ``force=True`` lists the remote (and records).

        A forced listing refreshes the index page by page as it is consumed.
        """
        if not force:
            return super().list(prefix, start_after=start_after)
        check_prefix(prefix)
        if start_after is not None:
            check_key(start_after)
        return self._forced_listing(prefix, start_after)

    def _forced_listing(self, prefix: str, start_after: str | None) -> Iterator[Meta]:
        yield from self._listing(prefix, SyncReport(), start_after=start_after, resume=False)

    def _listing(
        self,
        prefix: str,
        report: SyncReport,
        *,
        delete_missing: bool = True,
        progress: Progress | None = None,
        start_after: str | None = None,
        resume: bool,
    ) -> Iterator[Meta]:
        """The remote listing of ``prefix``, recorded in the index page by page."""
        return sync_listing(
            self._remote,
            self._index,
            self._bucket,
            self._key_prefix,
            prefix,
            delete_missing=delete_missing,
            report=report,
            counter=self._counter,
            progress=progress,
            start_after=start_after,
            resume=resume,
        )

    def keys(
        self, prefix: str = "", *, start_after: str | None = None, force: bool = False
    ) -> Iterator[str]:
        """The keys :meth:`list` would list."""
        if force:
            return (meta.key for meta in self.list(prefix, start_after=start_after, force=True))
        return super().keys(prefix, start_after=start_after)

    def ls(self, prefix: str = "", delimiter: str = "/", *, force: bool = False) -> Listing:
        """One level below ``prefix``, from the index; ``force=True`` asks the remote.

        A forced ``ls`` records the objects it saw, and forgets index entries
        at that level (and below common prefixes) that the remote no longer has.
        """
        check_prefix(prefix)
        if not isinstance(delimiter, str) or not delimiter:
            raise InvalidValue("delimiter must be a non-empty str")
        if force:
            return self._forced_ls(prefix, delimiter)
        cut = len(self._key_prefix)
        if cut:
            listing = self._index.ls(self._bucket, self._full(prefix), delimiter)
            listing = Listing(
                builtins.list(self._relative_all(listing.objects)),
                [common[cut:] for common in listing.prefixes],
            )
        else:
            details = Details.shared(self._fetch_details)
            listing = self._index.ls_listed(self._bucket, prefix, delimiter, details)
        self._counter.local(
            "ls", "LIST", list_requests(len(listing.objects) + len(listing.prefixes))
        )
        return listing

    def _forced_ls(self, prefix: str, delimiter: str) -> Listing:
        remote = self._remote.ls(prefix, delimiter)
        self._counter.remote("LIST", list_requests(len(remote.objects) + len(remote.prefixes)))
        known = self._index.ls(self._bucket, self._full(prefix), delimiter)
        present = {meta.key for meta in remote.objects}
        gone = [
            m.key[len(self._key_prefix) :]
            for m in known.objects
            if m.key[len(self._key_prefix) :] not in present
        ]
        full_prefixes = {self._full(common) for common in remote.prefixes}
        for common in known.prefixes:
            if common not in full_prefixes:
                cut = len(self._key_prefix)
                gone.extend(key[cut:] for key in self._index.keys(self._bucket, common))
        self._journaled(
            [self._full(m.key) for m in remote.objects],
            lambda: self._index.record_many(
                self._bucket, [listed_record(m, self._key_prefix) for m in remote.objects]
            ),
        )
        if gone:
            self._forget(gone)
        return remote

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` exists, by the index."""
        return self.exists(check_key(key))

    def du(self, prefix: str = "", *, depth: int = 0, force: bool = False) -> Usage:
        """Objects and bytes under ``prefix``, from the index's aggregates.

        ``depth=1`` adds a breakdown by child prefix (``photos/`` ->
        ``photos/2025/``, ...), ``depth=2`` breaks those down too, and so on,
        as :func:`mirrorkv.bulk.usage` does: values directly at a level count
        in its total but in no child. ``force=True`` syncs ``prefix`` first.
        """
        check_prefix(prefix)
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
            raise InvalidValue(f"depth must be a whole number of at least 0, not {depth!r}")
        if force:
            self.sync(prefix)
        usage = self._index.du(self._bucket, self._full(prefix))
        self._counter.local("du", "LIST", list_requests(usage.objects, *self._page_sizes))
        if depth == 0:
            return usage
        return Usage(usage.objects, usage.bytes, self._children(prefix, depth))

    def _children(self, prefix: str, depth: int) -> Mapping[str, Usage]:
        """The usage of each child prefix one ``/`` below ``prefix``, ``depth`` levels deep."""
        cut = len(self._key_prefix)
        full = self._full(prefix)
        if prefix == "" or prefix.endswith("/"):
            level = {
                child[cut:]: usage
                for child, usage in self._index.du_children(self._bucket, full).items()
                if child
            }
        else:  # "photos" -> "photos/", "photos2/": the common prefixes under it
            level = {
                common[cut:]: self._index.du(self._bucket, common)
                for common in self._index.ls(self._bucket, full).prefixes
            }
        if depth > 1:
            level = {
                name: Usage(usage.objects, usage.bytes, self._children(name, depth - 1))
                for name, usage in level.items()
            }
        return MappingProxyType(level)

    def find(
        self,
        glob: str | None = None,
        regex: str | None = None,
        *,
        prefix: str = "",
        min_size: int | None = None,
        max_size: int | None = None,
        modified_after: datetime | float | None = None,
        modified_before: datetime | float | None = None,
        content_type: str | None = None,
        force: bool = False,
    ) -> Iterator[Meta]:
        """The records under ``prefix`` matching every filter given, in key order.

        See :meth:`MetadataIndex.find` for the filters. Records a listing
        made (content type unknown) do not match a ``content_type`` filter
        until their details are fetched. ``force=True`` syncs ``prefix`` first.
        """
        check_prefix(prefix)
        if force:
            self.sync(prefix)
        kp = self._key_prefix
        if kp and regex is not None:
            # The index searches whole stored keys: match the mirror's own keys here.
            pattern = re.compile(regex)
            found = self.find(
                glob,
                prefix=prefix,
                min_size=min_size,
                max_size=max_size,
                modified_after=modified_after,
                modified_before=modified_before,
                content_type=content_type,
            )
            return (meta for meta in found if pattern.search(meta.key))
        metas = self._index.find(
            self._bucket,
            prefix=kp + prefix,
            glob=None if glob is None else _escape_glob(kp) + glob,
            regex=regex,
            min_size=min_size,
            max_size=max_size,
            modified_after=modified_after,
            modified_before=modified_before,
            content_type=content_type,
            listed=None if kp else Details.shared(self._fetch_details),
        )
        scanned = self._index.du(self._bucket, kp + prefix).objects
        self._counter.local("find", "LIST", list_requests(scanned, *self._page_sizes))
        return self._relative_all(metas) if kp else metas

    # -- keeping the index true --------------------------------------------------------

    def sync(
        self,
        prefix: str = "",
        keys: Iterable[str] | None = None,
        *,
        delete_missing: bool = True,
        progress: Progress | None = None,
    ) -> SyncReport:
        """Bring the index up to date with the remote; return what changed.

        Without ``keys``: list ``prefix`` remotely, one LIST per 1,000 keys,
        and make the index's entries under it exactly the listing
        (``delete_missing=False`` keeps entries the remote no longer lists).
        An interrupted sync of the same prefix resumes after the last page it
        finished. With ``keys``: one HEAD per key, for callers who know which
        keys are stale. ``progress`` is called with the report after each page.
        Dirty keys journaled before a listing sync are repaired by it.
        """
        check_prefix(prefix)
        started = time.perf_counter()
        report = SyncReport()
        if keys is not None:
            checked = (check_key(key) for key in keys)
            sync_keys(
                self._remote,
                self._index,
                self._bucket,
                self._key_prefix,
                checked,
                report=report,
                counter=self._counter,
                progress=progress,
            )
            return timed(report, started)
        full = self._full(prefix)
        dirty = [key for key in self._index.dirty(self._bucket) if key.startswith(full)]
        with self._lock:
            unjournaled = {key for key in self._unjournaled if key.startswith(full)}
        for _ in self._listing(
            prefix, report, delete_missing=delete_missing, progress=progress, resume=True
        ):
            pass
        self._index.clear_dirty(self._bucket, dirty)
        with self._lock:
            self._unjournaled -= unjournaled
        return timed(report, started)

    def dirty(self) -> builtins.list[str]:
        """The keys written remotely whose index entries may be wrong until repaired."""
        cut = len(self._key_prefix)
        with self._lock:
            pending = set(self._unjournaled)
        journaled = set(self._index.dirty(self._bucket))
        return sorted(key[cut:] for key in journaled | pending if key.startswith(self._key_prefix))

    def repair(self) -> SyncReport:
        """Sync the dirty keys (one HEAD each) and clear them from the journal."""
        keys = self.dirty()
        report = self.sync(keys=keys)
        with self._lock:
            self._unjournaled -= {self._full(key) for key in keys}
        return report

    def apply_events(self, payload: object) -> EventReport:
        """Apply S3 event notifications about this mirror's bucket (others are skipped).

        ``payload`` is anything :func:`~mirrorkv.mirror.events.parse_events`
        takes (an S3 notification, an SQS message or its body, SNS, EventBridge).
        A removal that needs checking (a versioned delete) costs one HEAD.
        """
        return apply_events(
            self._index,
            payload,
            buckets={self._event_bucket(): self._bucket},
            key_prefix=self._key_prefix,
            head=self._fetch_for_event,
        )

    def _event_bucket(self) -> str:
        return self._remote.bucket if _is_s3(self._remote) else self._bucket  # type: ignore[attr-defined]

    def _fetch_for_event(self, full_key: str) -> Meta | None:
        self._counter.remote("HEAD")
        try:
            return self._remote.head(full_key[len(self._key_prefix) :])
        except KeyNotFound:
            return None

    def stats(self) -> MirrorStats:
        """Remote requests by kind, local answers, and what those answers saved."""
        return self._counter.snapshot()

    def close(self) -> None:
        """Close the remote, the cache and an index the mirror opened itself."""
        self._remote.close()
        if self._cache is not None:
            self._cache.close()
        if self._owns_index:
            self._index.close()


def _is_s3(store: Store) -> bool:
    """Whether ``store`` is an S3Store (without importing boto3 when it cannot be)."""
    module = sys.modules.get("mirrorkv.stores.s3")
    return module is not None and isinstance(store, module.S3Store)


def _escape_glob(text: str) -> str:
    """``text`` as a glob matching itself (wildcard characters in brackets)."""
    return "".join(f"[{char}]" if char in "*?[" else char for char in text)
