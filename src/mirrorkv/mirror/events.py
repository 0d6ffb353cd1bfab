"""S3 event notifications: parsed into :class:`ObjectEvent` records and put in order.

Pure logic, no I/O: the mirror's ``apply_events`` and ``mirrorkv mirror watch``
hand over whatever a delivery channel gave them, and this module answers
*which object changed, how, and is this news or an echo*.

:func:`parse_events` accepts every shape the channels deliver (see its
docstring) and yields one :class:`ObjectEvent` per ``ObjectCreated:*``,
``ObjectRemoved:*`` or ``LifecycleExpiration:*`` record; everything else S3
can notify about (restores, replication, tagging, ACLs, storage-class
transitions, the ``s3:TestEvent``) is skipped. A payload with any malformed
record raises :class:`~mirrorkv.errors.InvalidValue` as a whole: nothing of it
is returned, so a caller never applies half a message.

Ordering follows the AWS documentation of the event message structure
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html):
for two events on the same key, the one with the greater ``sequencer`` is the
later one, where sequencers of different lengths compare after right-padding
the shorter with zeros. Where either event lacks a sequencer (moto sends
none), the event time decides instead, and at equal times a creation beats a
removal. :class:`Position` is what a mirror stores per key to recognise stale
and duplicate deliveries; :class:`SequencerState` keeps positions in any
mapping. ``docs/mirror-events.md`` explains the rules and their limits.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import unquote_plus

from ..errors import InvalidKey, InvalidValue
from ..keys import check_key

__all__ = [
    "EventKind",
    "ObjectEvent",
    "Position",
    "SequencerState",
    "compare_sequencers",
    "latest_per_key",
    "newer",
    "parse_events",
    "should_apply",
]

#: What an event did to its key: it now holds an object, or it no longer does.
EventKind = Literal["created", "removed"]

# At equal times (no sequencer to decide), a creation wins: the index then
# lists a key that may be gone (a forced head or the next sync corrects it)
# rather than hiding one that may exist.
_KIND_RANK: dict[str, int] = {"removed": 0, "created": 1}

_HEX = re.compile(r"[0-9A-Fa-f]+")

# The S3 notification (record) event names that change what a key holds.
_RECORD_PREFIXES: tuple[tuple[str, EventKind], ...] = (
    ("ObjectCreated:", "created"),
    ("ObjectRemoved:", "removed"),
    ("LifecycleExpiration:", "removed"),
)

# EventBridge detail types that change what a key holds.
_DETAIL_TYPES: dict[str, EventKind] = {"Object Created": "created", "Object Deleted": "removed"}


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectEvent:
    """One change to one object, as an S3 event notification reported it.

    ``key`` is decoded (the notification URL-encodes it, a space as ``+``)
    and satisfies :mod:`mirrorkv.keys`; ``etag`` has its quotes stripped;
    ``time`` is timezone-aware UTC; ``sequencer`` is upper-case hex or None
    where the record carried none; ``size`` and ``etag`` are None where the
    record does not say (removals). ``name`` is the record's ``eventName``
    as sent (``"ObjectCreated:Put"``), or for EventBridge its ``detail-type``
    (``"Object Created"``).
    """

    bucket: str
    key: str
    kind: EventKind
    time: datetime
    name: str
    size: int | None = None
    etag: str | None = None
    version_id: str | None = None
    sequencer: str | None = None

    @property
    def needs_check(self) -> bool:
        """True where this event alone cannot tell whether the key still holds an object.

        That is a removal naming one version (``ObjectRemoved:Delete`` or
        ``LifecycleExpiration:Delete`` with a ``version_id``): in a versioned
        bucket it deletes that version for good, and an older version (or a
        delete marker) becomes current. A mirror should head the key rather
        than drop it. A removal that creates a delete marker is certain.
        """
        return (
            self.kind == "removed"
            and self.version_id is not None
            and self.version_id != "null"
            and not self.name.endswith("DeleteMarkerCreated")
        )

    @property
    def position(self) -> Position:
        """Where this event stands in its key's history (what a mirror stores to compare)."""
        return Position(sequencer=self.sequencer, time=self.time, kind=self.kind, etag=self.etag)


@dataclass(frozen=True, slots=True, kw_only=True)
class Position:
    """The ordering facts of one event: enough to tell whether another is newer.

    ``str(position)`` is a compact text form that :meth:`parse` reads back,
    for a mirror to persist beside each key.
    """

    sequencer: str | None
    time: datetime
    kind: EventKind
    etag: str | None = field(default=None)

    def __str__(self) -> str:
        return "|".join((self.sequencer or "", self.time.isoformat(), self.kind, self.etag or ""))

    @classmethod
    def parse(cls, text: str) -> Position:
        """Read back ``str(position)``; raise :class:`InvalidValue` on anything else."""
        parts = text.split("|", 3)
        if len(parts) != 4 or parts[2] not in _KIND_RANK:
            raise InvalidValue(f"not a stored event position: {text!r}")
        sequencer, when, kind, etag = parts
        return cls(
            sequencer=_sequencer(sequencer or None, "stored position"),
            time=_time(when, "stored position"),
            kind="created" if kind == "created" else "removed",
            etag=etag or None,
        )


def compare_sequencers(a: str, b: str) -> int:
    """-1, 0 or 1 as sequencer ``a`` is earlier than, equal to or later than ``b``.

    As AWS documents it: the shorter is right-padded with zeros, then the two
    compare as strings (case-insensitively, both being hex). Only sequencers of
    the same key are comparable; raises :class:`InvalidValue` for a non-hex one.
    """
    ka, kb = (
        _sequencer_rank(_given_sequencer(a)),
        _sequencer_rank(_given_sequencer(b)),
    )
    return (ka > kb) - (ka < kb)


def newer(a: ObjectEvent | Position, b: ObjectEvent | Position) -> bool:
    """True where ``a`` happened after ``b`` (both about the same key).

    By sequencer where both have one; otherwise by time, a creation beating a
    removal at the same time, then by etag, so that the answer never depends
    on which arrived first. A duplicate delivery is not newer than itself.
    """
    pa = a.position if isinstance(a, ObjectEvent) else a
    pb = b.position if isinstance(b, ObjectEvent) else b
    if pa.sequencer is not None and pb.sequencer is not None:
        return _by_sequencer(pa) > _by_sequencer(pb)
    return _by_time(pa) > _by_time(pb)


def should_apply(event: ObjectEvent, last: Position | str | None) -> bool:
    """True where ``event`` is news for a key whose last applied event was ``last``.

    ``last`` is the stored :class:`Position` (or its ``str``), a bare sequencer
    string, or None for a key with no history (then every event applies). A
    bare sequencer carries no time: against an event without a sequencer it
    cannot decide, so the event applies.
    """
    if last is None:
        return True
    if isinstance(last, str):
        if "|" not in last:
            if event.sequencer is None:
                return True
            return _sequencer_rank(event.sequencer) > _sequencer_rank(_given_sequencer(last))
        last = Position.parse(last)
    return newer(event, last)


def latest_per_key(events: Iterable[ObjectEvent]) -> dict[tuple[str, str], ObjectEvent]:
    """The last event of each ``(bucket, key)``, whatever order ``events`` came in.

    A key whose events all carry sequencers is ordered by sequencer; one with
    any event lacking a sequencer is ordered by time (see :func:`newer`), so
    the answer is the same for every permutation of the input.
    """
    groups: dict[tuple[str, str], list[ObjectEvent]] = {}
    for event in events:
        groups.setdefault((event.bucket, event.key), []).append(event)
    latest: dict[tuple[str, str], ObjectEvent] = {}
    for where, group in groups.items():
        if all(event.sequencer is not None for event in group):
            latest[where] = max(group, key=lambda event: _by_sequencer(event.position))
        else:
            latest[where] = max(group, key=lambda event: _by_time(event.position))
    return latest


class SequencerState:
    """The last applied :class:`Position` of each ``(bucket, key)``, in a mapping.

    The mapping holds ``str(position)`` values, so a mirror can back it with
    its index (any ``MutableMapping[tuple[str, str], str]``); by default it is
    a private dict. Not thread-safe: give each consumer its own, or lock.
    """

    __slots__ = ("_positions",)

    def __init__(self, positions: MutableMapping[tuple[str, str], str] | None = None) -> None:
        self._positions: MutableMapping[tuple[str, str], str] = (
            {} if positions is None else positions
        )

    def last(self, bucket: str, key: str) -> Position | None:
        """The position last recorded for the key, or None."""
        text = self._positions.get((bucket, key))
        return None if text is None else Position.parse(text)

    def should_apply(self, event: ObjectEvent) -> bool:
        """True where ``event`` is newer than what was recorded for its key (nothing recorded)."""
        return should_apply(event, self._positions.get((event.bucket, event.key)))

    def record(self, event: ObjectEvent) -> None:
        """Remember ``event`` as its key's last applied event (after applying it)."""
        self._positions[(event.bucket, event.key)] = str(event.position)

    def offer(self, event: ObjectEvent) -> bool:
        """Record ``event`` and return True where it is news; else change nothing, return False."""
        if not self.should_apply(event):
            return False
        self.record(event)
        return True


# -- parsing ---------------------------------------------------------------------------------


def parse_events(payload: object) -> list[ObjectEvent]:
    """The object events in ``payload``, in the order it lists them.

    ``payload`` may be, or be a JSON ``str``/``bytes`` of, any of:

    - an S3 notification ``{"Records": [...]}`` (as sent to SQS, SNS, Lambda
      or a webhook; an SQS message body is exactly this JSON);
    - an SNS envelope ``{"Type": "Notification", "Message": "<json>"}``
      (other SNS message types, such as a subscription confirmation, hold no
      events and give ``[]``);
    - an EventBridge event ``{"source": "aws.s3", "detail-type": ..., "detail": ...}``;
    - an SQS message as boto3's ``receive_message`` returns it (``{"Body": ...}``),
      or a Lambda event whose records wrap SQS bodies or SNS messages;
    - the ``s3:TestEvent`` S3 sends when a notification is configured (gives ``[]``);
    - a list of any of these.

    Records of event types that do not change what a key holds are skipped.
    Raises :class:`InvalidValue` naming the first malformed part, and then
    returns nothing from the payload (all or nothing).
    """
    return list(_walk(payload, "payload"))


def _walk(payload: object, where: str) -> Iterator[ObjectEvent]:
    if isinstance(payload, (bytes, bytearray, memoryview)):
        try:
            payload = bytes(payload).decode("utf-8")
        except UnicodeDecodeError as error:
            raise InvalidValue(f"{where}: not UTF-8 text ({error.reason})") from None
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except json.JSONDecodeError as error:
            raise InvalidValue(f"{where}: not JSON ({error.msg} at char {error.pos})") from None
        if isinstance(payload, str):
            raise InvalidValue(f"{where}: JSON text holding a string, not an event")
    if isinstance(payload, list):
        for index, item in enumerate(payload):
            yield from _walk(item, f"{where}[{index}]")
        return
    if not isinstance(payload, dict):
        raise InvalidValue(
            f"{where}: expected an S3 event notification, got {type(payload).__name__}"
        )
    yield from _walk_dict(payload, where)


def _walk_dict(payload: dict[object, object], where: str) -> Iterator[ObjectEvent]:
    if "Records" in payload:
        records = payload["Records"]
        if not isinstance(records, list):
            raise InvalidValue(f"{where}.Records: expected a list, got {type(records).__name__}")
        for index, record in enumerate(records):
            yield from _record(record, f"{where}.Records[{index}]")
        return
    if payload.get("Event") == "s3:TestEvent":
        return
    if payload.get("source") == "aws.s3" and "detail-type" in payload:
        yield from _eventbridge(payload, where)
        return
    kind = payload.get("Type")
    if kind == "Notification" or (isinstance(kind, str) and "TopicArn" in payload):
        if kind != "Notification":
            return  # SubscriptionConfirmation, UnsubscribeConfirmation: no events
        yield from _walk(_text(payload, "Message", where), f"{where}.Message")
        return
    if "Body" in payload:  # an SQS message as boto3 returns it
        yield from _walk(_text(payload, "Body", where), f"{where}.Body")
        return
    names = ", ".join(sorted(repr(name) for name in payload)[:8])
    raise InvalidValue(
        f"{where}: not an S3 event notification, SNS envelope, EventBridge event or SQS message"
        f" (its fields: {names or 'none'})"
    )


def _record(record: object, where: str) -> Iterator[ObjectEvent]:
    if not isinstance(record, dict):
        raise InvalidValue(f"{where}: expected an object, got {type(record).__name__}")
    # Lambda wraps what SQS and SNS deliver in records of their own.
    if record.get("eventSource") == "aws:sqs" and "body" in record:
        yield from _walk(_text(record, "body", where), f"{where}.body")
        return
    if record.get("EventSource") == "aws:sns" and "Sns" in record:
        yield from _walk(record["Sns"], f"{where}.Sns")
        return
    name = _text(record, "eventName", where)
    kind = _record_kind(name)
    if kind is None:
        return
    s3 = _object(record, "s3", where)
    bucket = _object(s3, "bucket", f"{where}.s3")
    obj = _object(s3, "object", f"{where}.s3")
    owhere = f"{where}.s3.object"
    yield ObjectEvent(
        bucket=_bucket(bucket, f"{where}.s3.bucket"),
        key=_key(_text(obj, "key", owhere), owhere),
        kind=kind,
        time=_time(record.get("eventTime"), f"{where}.eventTime"),
        name=name,
        size=_size(obj.get("size"), f"{owhere}.size"),
        etag=_etag(obj.get("eTag", obj.get("etag")), f"{owhere}.eTag"),
        version_id=_optional_text(obj.get("versionId"), f"{owhere}.versionId"),
        sequencer=_sequencer(obj.get("sequencer"), f"{owhere}.sequencer"),
    )


def _eventbridge(event: dict[object, object], where: str) -> Iterator[ObjectEvent]:
    detail_type = event["detail-type"]
    if not isinstance(detail_type, str):
        raise InvalidValue(f"{where}.detail-type: expected a string")
    kind = _DETAIL_TYPES.get(detail_type)
    if kind is None:
        return
    detail = _object(event, "detail", where)
    dwhere = f"{where}.detail"
    obj = _object(detail, "object", dwhere)
    owhere = f"{dwhere}.object"
    yield ObjectEvent(
        bucket=_bucket(_object(detail, "bucket", dwhere), f"{dwhere}.bucket"),
        # Keys in EventBridge events are URL-encoded like the notification's
        # (see docs/mirror-events.md: not confirmed by the AWS pages).
        key=_key(_text(obj, "key", owhere), owhere),
        kind=kind,
        time=_time(event.get("time"), f"{where}.time"),
        name=detail_type,
        size=_size(obj.get("size"), f"{owhere}.size"),
        # AWS spells it "etag"; moto 5 sends "eTag".
        etag=_etag(obj.get("etag", obj.get("eTag")), f"{owhere}.etag"),
        version_id=_optional_text(obj.get("version-id"), f"{owhere}.version-id"),
        sequencer=_sequencer(obj.get("sequencer"), f"{owhere}.sequencer"),
    )


def _record_kind(name: str) -> EventKind | None:
    bare = name[3:] if name.startswith("s3:") else name  # MinIO and Ceph prefix "s3:"
    for prefix, kind in _RECORD_PREFIXES:
        if bare.startswith(prefix):
            return kind
    return None


# -- fields ----------------------------------------------------------------------------------


def _object(parent: Mapping[object, object], name: str, where: str) -> dict[object, object]:
    value = parent.get(name)
    if not isinstance(value, dict):
        found = "missing" if value is None else f"a {type(value).__name__}"
        raise InvalidValue(f"{where}.{name}: expected an object, {found}")
    return value


def _text(parent: Mapping[object, object], name: str, where: str) -> str:
    value = parent.get(name)
    if not isinstance(value, str):
        found = "missing" if value is None else f"a {type(value).__name__}"
        raise InvalidValue(f"{where}.{name}: expected a string, {found}")
    return value


def _optional_text(value: object, where: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidValue(f"{where}: expected a string, got {type(value).__name__}")
    return value


def _bucket(bucket: Mapping[object, object], where: str) -> str:
    name = _text(bucket, "name", where)
    if not name:
        raise InvalidValue(f"{where}.name: empty bucket name")
    return name


def _key(raw: str, where: str) -> str:
    try:
        # Form encoding (a space as "+"), as AWS documents for the notification.
        key = unquote_plus(raw, errors="strict")
    except UnicodeDecodeError:
        raise InvalidValue(f"{where}.key: {raw!r} decodes to bytes that are not UTF-8") from None
    try:
        return check_key(key)
    except InvalidKey as error:
        raise InvalidValue(f"{where}.key: {error}") from None


def _size(value: object, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise InvalidValue(f"{where}: expected a byte count, got {value!r}")


def _etag(value: object, where: str) -> str | None:
    text = _optional_text(value, where)
    return None if text is None else (text.strip('"') or None)


def _sequencer(value: object, where: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or _HEX.fullmatch(value) is None:
        raise InvalidValue(f"{where}: expected a hexadecimal string, got {value!r}")
    return value.upper()


def _given_sequencer(value: str) -> str:
    sequencer = _sequencer(value, "sequencer")
    if sequencer is None:
        raise InvalidValue("sequencer: empty")
    return sequencer


def _time(value: object, where: str) -> datetime:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        # moto 5 sends EventBridge's "time" as seconds since the epoch.
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            raise InvalidValue(f"{where}: {value!r} is not a time") from None
    if not isinstance(value, str):
        found = "missing" if value is None else f"a {type(value).__name__}"
        raise InvalidValue(f"{where}: expected an ISO 8601 time, {found}")
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidValue(f"{where}: {value!r} is not an ISO 8601 time") from None
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


# -- ordering --------------------------------------------------------------------------------


def _sequencer_rank(sequencer: str) -> str:
    # Right-padding with "0", the smallest hex digit, then comparing strings
    # orders exactly as comparing with the trailing zeros removed, which needs
    # no knowledge of the other operand: "AB" == "AB00" < "AB01" < "AC".
    return sequencer.upper().rstrip("0")


def _by_sequencer(position: Position) -> tuple[str, int, str, str]:
    assert position.sequencer is not None
    # Equal ranks are one event delivered twice; the rest only makes the order total.
    return (
        _sequencer_rank(position.sequencer),
        _KIND_RANK[position.kind],
        position.etag or "",
        position.sequencer,
    )


def _by_time(position: Position) -> tuple[datetime, int, str, str]:
    return (
        position.time,
        _KIND_RANK[position.kind],
        position.etag or "",
        _sequencer_rank(position.sequencer or ""),
    )
