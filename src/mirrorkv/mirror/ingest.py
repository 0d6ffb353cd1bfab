"""Applying S3 event notifications to a metadata index.

:func:`apply_events` keeps an index current with writers that do not go
through a mirror: each ``ObjectCreated`` event records its key (with what
the event says: size, etag, time; content type and user metadata are
fetched when first read, as after a listing sync), each ``ObjectRemoved``
event forgets it. Events are applied in their own order, not in arrival
order: the position (sequencer, else time) of the last event applied to a
key is kept as an index checkpoint named ``event:<key>``, so a late or
duplicate delivery changes nothing, also after a restart and across
processes sharing the index.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass

from ..meta import DEFAULT_CONTENT_TYPE, NO_METADATA, Meta
from .events import ObjectEvent, SequencerState, latest_per_key, parse_events
from .index import MetadataIndex
from .sync import LISTED

__all__ = ["EventReport", "apply_events"]

#: Checkpoint names holding the position of a key's last applied event start with this.
POSITION_PREFIX = "event:"


@dataclass(slots=True)
class EventReport:
    """What one :func:`apply_events` call did.

    ``recorded`` and ``removed`` count index changes; ``stale`` events older
    than (or duplicates of) what was already applied; ``skipped`` events
    about buckets or keys outside the index's scope; ``checked`` the keys a
    versioned removal made us head; ``dirty`` the keys journaled because
    they needed a check no one could make.
    """

    recorded: int = 0
    removed: int = 0
    stale: int = 0
    skipped: int = 0
    checked: int = 0
    dirty: int = 0

    @property
    def events(self) -> int:
        """Every event counted."""
        return self.recorded + self.removed + self.stale + self.skipped + self.checked + self.dirty


class _Positions(MutableMapping[tuple[str, str], str]):
    """Event positions kept as index checkpoints of the bucket they belong to."""

    def __init__(self, index: MetadataIndex, buckets: Mapping[str, str] | None) -> None:
        self._index = index
        self._buckets = buckets

    def _bucket(self, bucket: str) -> str:
        return bucket if self._buckets is None else self._buckets[bucket]

    def __getitem__(self, where: tuple[str, str]) -> str:
        value = self._index.checkpoint(self._bucket(where[0]), POSITION_PREFIX + where[1])
        if value is None:
            raise KeyError(where)
        return value

    def __setitem__(self, where: tuple[str, str], value: str) -> None:
        self._index.set_checkpoint(self._bucket(where[0]), POSITION_PREFIX + where[1], value)

    def __delitem__(self, where: tuple[str, str]) -> None:
        self._index.set_checkpoint(self._bucket(where[0]), POSITION_PREFIX + where[1], None)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        raise NotImplementedError("event positions are looked up, never listed")

    def __len__(self) -> int:
        raise NotImplementedError("event positions are looked up, never listed")


def apply_events(
    index: MetadataIndex,
    payload: object,
    *,
    buckets: Mapping[str, str] | None = None,
    key_prefix: str = "",
    head: Callable[[str], Meta | None] | None = None,
) -> EventReport:
    """Apply the object events in ``payload`` to ``index``; return what changed.

    ``payload`` is anything :func:`~mirrorkv.mirror.events.parse_events`
    takes; a malformed one raises :class:`~mirrorkv.errors.InvalidValue` and
    applies nothing. ``buckets`` maps the S3 bucket names to apply to the
    index's bucket names (None: every bucket, under its own name); only keys
    starting with ``key_prefix`` are applied. ``head(key)`` returns the
    current record of a key (None where absent): it is called for removals
    whose outcome the event cannot tell (a versioned delete); without it
    such keys are journaled dirty for the next sync.
    """
    events = parse_events(payload)
    report = EventReport()
    state = SequencerState(_Positions(index, buckets))
    for event in latest_per_key(events).values():
        if (buckets is not None and event.bucket not in buckets) or not event.key.startswith(
            key_prefix
        ):
            report.skipped += 1
            continue
        if not state.should_apply(event):
            report.stale += 1
            continue
        bucket = event.bucket if buckets is None else buckets[event.bucket]
        _apply(index, bucket, event, head, report)
        state.record(event)
    report.stale += len(events) - report.events
    return report


def _apply(
    index: MetadataIndex,
    bucket: str,
    event: ObjectEvent,
    head: Callable[[str], Meta | None] | None,
    report: EventReport,
) -> None:
    if event.needs_check:
        if head is None:
            index.mark_dirty(bucket, [event.key])
            report.dirty += 1
            return
        current = head(event.key)
        report.checked += 1
        if current is None:
            index.forget(bucket, event.key)
        else:
            index.record(bucket, current.replace(key=event.key))
        return
    if event.kind == "removed":
        index.forget(bucket, event.key)
        report.removed += 1
        return
    known = index.get(bucket, event.key)
    if known is not None and event.etag is not None and known.etag == event.etag:
        report.recorded += 1  # the same object, already recorded (with its details)
        return
    index.record(
        bucket,
        Meta(
            event.key,
            event.size or 0,
            event.etag or "",
            event.time,
            DEFAULT_CONTENT_TYPE,
            NO_METADATA,
            LISTED,
        ),
    )
    report.recorded += 1
