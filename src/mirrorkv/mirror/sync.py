"""Bringing a mirror's index up to date with its remote: by listing, or key by key.

A listing sync reads the remote's listing in pages of 1,000 keys (what one
S3 LIST returns) and makes each page's key range in the index exactly what
the page holds (:meth:`MetadataIndex.replace_range`), then stores the last
key as a checkpoint. An interrupted sync therefore resumes after the last
page it finished, and a finished one leaves no checkpoint behind.

Records are kept as the listing gives them: an object store lists key,
size, etag and time but not content type, user metadata or version, and
such a record is stored with the version ``""`` (see :data:`LISTED`), so no
HEAD request is made per key; the mirror fetches the rest on first read.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..errors import KeyNotFound
from ..meta import DEFAULT_CONTENT_TYPE, NO_METADATA, Details, Meta
from ..store import Store
from .index import LISTED, MetadataIndex
from .stats import PAGE, RequestCounter, list_requests, page_sizes

__all__ = ["LISTED", "SyncReport", "listed_record", "sync_keys", "sync_listing"]

_new_meta = tuple.__new__

#: Concurrent HEAD requests of a key sync.
HEAD_WORKERS = 8


@dataclass(slots=True)
class SyncReport:
    """What one :meth:`Mirror.sync` did.

    ``added``, ``changed`` and ``removed`` count index entries; ``checked``
    the remote objects seen; ``requests`` the remote requests made;
    ``resumed_after`` the key an interrupted earlier sync had reached (None:
    started from the beginning); ``complete`` is False while a sync runs and
    in the report of one that stopped early.
    """

    added: int = 0
    changed: int = 0
    removed: int = 0
    checked: int = 0
    requests: int = 0
    seconds: float = 0.0
    resumed_after: str | None = None
    complete: bool = False

    def add(self, changes: tuple[int, int, int]) -> None:
        """Count ``(added, changed, removed)`` as :meth:`MetadataIndex.replace_range` returns."""
        self.added += changes[0]
        self.changed += changes[1]
        self.removed += changes[2]


Progress = Callable[[SyncReport], None]


def listed_record(meta: Meta, key_prefix: str = "") -> Meta:
    """The index record of a listed object, without fetching what the listing left out.

    A record whose content type was deferred (a :class:`Details`) becomes
    one with version :data:`LISTED`; a complete one is kept. ``key_prefix``
    is prepended to the key.
    """
    if meta[4].__class__ is Details:
        return _new_meta(
            Meta,
            (
                key_prefix + meta.key,
                meta.size,
                meta.etag,
                meta[3],
                DEFAULT_CONTENT_TYPE,
                NO_METADATA,
                LISTED,
            ),
        )
    if key_prefix:
        return _new_meta(Meta, (key_prefix + meta[0], *meta[1:]))
    return meta


def checkpoint_name(prefix: str) -> str:
    """The name of the checkpoint of a listing sync of ``prefix`` (in index key space)."""
    return f"sync:{prefix}"


def sync_listing(
    remote: Store,
    index: MetadataIndex,
    bucket: str,
    key_prefix: str,
    prefix: str,
    *,
    delete_missing: bool,
    report: SyncReport,
    counter: RequestCounter,
    progress: Progress | None = None,
    start_after: str | None = None,
    resume: bool = True,
) -> Iterator[Meta]:
    """Refresh the index from the remote's listing of ``prefix``; yield the listed records.

    ``prefix`` is in the remote's key space and the index holds keys under
    ``key_prefix`` + it. The listing starts after ``start_after``, or with
    ``resume`` after this prefix's checkpoint, which then follows every page.
    The tail of the range is cleared only once the iterator is exhausted.
    """
    scope = key_prefix + prefix
    name = checkpoint_name(scope)
    if resume and (reached := index.checkpoint(bucket, name)) is not None:
        start_after = reached[len(key_prefix) :]
        report.resumed_after = start_after
    done = start_after
    listing = iter(remote.list(prefix, start_after=start_after))
    sizes = page_sizes(remote)
    listed = made = 0  # keys listed and LIST requests counted, by this listing
    while page := list(itertools.islice(listing, PAGE)):
        listed += len(page)
        requests = list_requests(listed, *sizes) - made
        counter.remote("LIST", requests)
        report.requests += requests
        made += requests
        records = [listed_record(meta, key_prefix) for meta in page]
        low = None if done is None else key_prefix + done
        if not delete_missing:
            records = _keep_unlisted(index, bucket, scope, records, low)
        report.add(
            index.replace_range(bucket, scope, records, start_after=low, until=records[-1].key)
        )
        report.checked += len(page)
        done = page[-1].key
        if resume:
            index.set_checkpoint(bucket, name, key_prefix + done)
        if progress is not None:
            progress(report)
        yield from page
    if done == start_after:  # nothing listed: that empty page was a request too
        counter.remote("LIST")
        report.requests += 1
    if delete_missing:
        low = None if done is None else key_prefix + done
        report.add(index.replace_range(bucket, scope, [], start_after=low))
    if resume:
        index.set_checkpoint(bucket, name, None)


def _keep_unlisted(
    index: MetadataIndex, bucket: str, scope: str, records: list[Meta], low: str | None
) -> list[Meta]:
    """``records`` plus the index's entries in their range that the page did not list."""
    until = records[-1].key
    listed = {meta.key for meta in records}
    kept = [
        meta
        for meta in itertools.takewhile(
            lambda meta: meta.key <= until, index.list(bucket, scope, start_after=low)
        )
        if meta.key not in listed
    ]
    if not kept:
        return records
    return sorted(records + kept, key=lambda meta: meta.key.encode())


def sync_keys(
    remote: Store,
    index: MetadataIndex,
    bucket: str,
    key_prefix: str,
    keys: Iterable[str],
    *,
    report: SyncReport,
    counter: RequestCounter,
    progress: Progress | None = None,
) -> None:
    """Refresh the index entries of ``keys`` (remote key space) with one HEAD each."""

    def head(key: str) -> Meta | None:
        try:
            return remote.head(key)
        except KeyNotFound:
            return None

    keys = iter(keys)
    with ThreadPoolExecutor(HEAD_WORKERS, thread_name_prefix="mirrorkv-sync") as pool:
        while chunk := list(itertools.islice(keys, PAGE)):
            found: list[Meta] = []
            missing: list[str] = []
            for key, meta in zip(chunk, pool.map(head, chunk), strict=True):
                full = key_prefix + key
                old = index.get(bucket, full)
                if meta is None:
                    if old is not None:
                        missing.append(full)
                        report.removed += 1
                    continue
                record = _new_meta(Meta, (full, *meta[1:])) if key_prefix else meta
                found.append(record)
                report.checked += 1
                if old is None:
                    report.added += 1
                elif old != record:
                    report.changed += 1
            counter.remote("HEAD", len(chunk))
            report.requests += len(chunk)
            index.record_many(bucket, found)
            index.forget_many(bucket, missing)
            index.clear_dirty(bucket, [key_prefix + key for key in chunk])
            if progress is not None:
                progress(report)


def timed(report: SyncReport, started: float) -> SyncReport:
    """``report`` marked complete, with the time since ``started`` (a ``perf_counter``)."""
    report.seconds = time.perf_counter() - started
    report.complete = True
    return report
