"""Following an SQS queue of S3 event notifications into a metadata index.

:func:`watch_sqs` long-polls a queue that S3 (directly, or through SNS or
EventBridge) sends object events to, applies each message to an index with
:func:`~mirrorkv.mirror.ingest.apply_events`, and deletes the messages it
applied. A message is deleted only after it was applied, so a watcher that
stops (Ctrl-C, a crash, a lost connection) loses nothing: what it had not
applied becomes visible again when the queue's visibility timeout runs out,
and the next watcher applies it. Applying a message twice changes nothing
(ingest keeps each key's last event position), so no bookkeeping of our own
is needed to resume.

A *malformed* message (not an S3 notification, or a record that breaks the
event rules) is logged with its message id and left in the queue, so a
queue with a redrive policy can move it to its dead-letter queue; once SQS
says it was received ``max_receive`` times (``ApproximateReceiveCount``) it
is deleted and logged as dropped, so a queue without a redrive policy does
not redeliver it forever. Pass ``max_receive=None`` to never delete one.

boto3 is optional: it is imported only when a watcher makes its own SQS
client, and a missing boto3 raises :class:`NotSupported` naming the
``mirrorkv[s3]`` extra.
"""

from __future__ import annotations

import importlib
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from ..errors import (
    AccessDenied,
    InvalidKey,
    InvalidValue,
    MirrorKVError,
    NotSupported,
    StoreUnavailable,
)
from .index import MetadataIndex
from .ingest import EventReport, apply_events

__all__ = ["DEFAULT_MAX_RECEIVE", "WatchReport", "sqs_client", "watch_sqs"]

log = logging.getLogger("mirrorkv.mirror.watch")

#: Receives after which a malformed message is deleted (see the module docstring).
DEFAULT_MAX_RECEIVE = 5
#: The first and the longest wait between attempts while SQS or the index is unreachable.
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0

#: What stops a watcher: an event that gets set, or a callable that returns True.
Stop = threading.Event | Callable[[], bool]


@dataclass(slots=True)
class WatchReport:
    """What :func:`watch_sqs` did (in total, or in one batch for ``on_batch``).

    ``receives`` counts answered ``ReceiveMessage`` calls; ``messages`` the
    messages received; ``applied`` those applied and deleted; ``malformed``
    the receipts of messages that could not be parsed, of which ``dropped``
    were deleted after ``max_receive`` receipts; ``retries`` the waits after
    SQS or the index could not be reached; ``events`` what the applied
    messages did to the index; ``seconds`` the time spent.
    """

    receives: int = 0
    messages: int = 0
    applied: int = 0
    malformed: int = 0
    dropped: int = 0
    retries: int = 0
    events: EventReport = field(default_factory=EventReport)
    seconds: float = 0.0

    def add(self, other: WatchReport) -> None:
        """Add the counts of ``other`` (a batch) to this report (``seconds`` excepted)."""
        for name in ("receives", "messages", "applied", "malformed", "dropped", "retries"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for item in fields(EventReport):
            setattr(
                self.events,
                item.name,
                getattr(self.events, item.name) + getattr(other.events, item.name),
            )

    def as_dict(self) -> dict[str, Any]:
        """The report as plain numbers (for JSON)."""
        counts: dict[str, Any] = {
            name: getattr(self, name)
            for name in ("receives", "messages", "applied", "malformed", "dropped", "retries")
        }
        counts["events"] = {
            item.name: getattr(self.events, item.name) for item in fields(EventReport)
        }
        counts["seconds"] = round(self.seconds, 3)
        return counts


def watch_sqs(
    queue_url: str,
    index: MetadataIndex,
    *,
    sqs_client: Any = None,
    buckets: Mapping[str, str] | Iterable[str] | None = None,
    wait_seconds: int = 20,
    max_messages: int = 10,
    stop: Stop | None = None,
    on_batch: Callable[[WatchReport], None] | None = None,
    until_empty: bool = False,
    max_receive: int | None = DEFAULT_MAX_RECEIVE,
) -> WatchReport:
    """Apply the S3 events arriving on an SQS queue to ``index`` until told to stop.

    ``sqs_client`` is a boto3 SQS client (default: :func:`sqs_client` for
    ``queue_url``). ``buckets`` limits which S3 buckets are applied: a
    mapping from S3 bucket name to the index's bucket name, or names kept as
    they are (None: every bucket, under its own name, which is how a
    :class:`Mirror` of ``s3://bucket`` names it). Each ``ReceiveMessage``
    waits up to ``wait_seconds`` (long polling) for up to ``max_messages``
    (1 to 10). After each batch that held messages, ``on_batch`` gets that
    batch's report.

    Stops when ``stop`` (a :class:`threading.Event`, or a callable returning
    True) is set, checked between receives and during backoff waits, so a
    stop takes effect within ``wait_seconds``; with ``until_empty``, also
    after the first receive that returns no message. While SQS or the index
    cannot be reached, waits (1 s doubling to 60 s, with jitter) and tries
    again; an error retrying cannot fix (access denied, no such queue)
    raises. Versioned removals that need a HEAD to decide are journaled dirty
    for the next sync (a watcher has no remote to ask). Returns the totals.
    """
    if isinstance(max_messages, bool) or not 1 <= max_messages <= 10:
        raise InvalidValue(f"max_messages is 1 to 10 (SQS's limit), not {max_messages!r}")
    if isinstance(wait_seconds, bool) or not 0 <= wait_seconds <= 20:
        raise InvalidValue(f"wait_seconds is 0 to 20 (SQS's limit), not {wait_seconds!r}")
    if max_receive is not None and max_receive < 1:
        raise InvalidValue(f"max_receive is at least 1 (or None), not {max_receive!r}")
    client = sqs_client if sqs_client is not None else _default_client(queue_url, wait_seconds)
    watcher = _Watcher(client, queue_url, index, _bucket_map(buckets), max_receive)
    stopped = _stop_test(stop)
    total = WatchReport()
    started = time.monotonic()
    delay = BACKOFF_FIRST
    while not stopped():
        batch = WatchReport()
        try:
            messages = watcher.receive(wait_seconds, max_messages)
            batch.receives = 1
            if messages:
                watcher.apply(messages, batch)
        except StoreUnavailable as error:
            batch.retries = 1
            total.add(batch)
            if on_batch is not None and batch.messages:
                on_batch(batch)
            pause = delay * random.uniform(0.5, 1.0)
            log.warning("%s; trying again in %.1f s", error, pause)
            if _wait(stop, pause):
                break
            delay = min(delay * 2, BACKOFF_MAX)
            continue
        delay = BACKOFF_FIRST
        total.add(batch)
        if batch.messages and on_batch is not None:
            on_batch(batch)
        if until_empty and not batch.messages:
            break
    total.seconds = time.monotonic() - started
    return total


class _Watcher:
    """One queue, one index: receive, apply, delete."""

    def __init__(
        self,
        client: Any,
        queue_url: str,
        index: MetadataIndex,
        buckets: Mapping[str, str] | None,
        max_receive: int | None,
    ) -> None:
        self._client = client
        self._queue_url = queue_url
        self._shown = queue_url.split("?", 1)[0]
        self._index = index
        self._buckets = buckets
        self._max_receive = max_receive
        self._errors = _SQSErrors(queue_url)

    def receive(self, wait_seconds: int, max_messages: int) -> list[dict[str, Any]]:
        """One long poll; the messages it returned (maybe none)."""
        with self._errors("receive"):
            answer = self._client.receive_message(
                QueueUrl=self._queue_url,
                MaxNumberOfMessages=max_messages,
                WaitTimeSeconds=wait_seconds,
                # AttributeNames (deprecated by AWS in favour of MessageSystemAttributeNames)
                # is the spelling every boto3 our extra allows (>= 1.34) still accepts.
                AttributeNames=["ApproximateReceiveCount"],
            )
        messages: list[dict[str, Any]] = answer.get("Messages", [])
        return messages

    def apply(self, messages: list[dict[str, Any]], batch: WatchReport) -> None:
        """Apply ``messages`` in order, then delete those applied (and those dropped).

        An index that cannot be reached stops the batch: what is applied is
        deleted, the rest comes back after the visibility timeout.
        """
        batch.messages = len(messages)
        done: list[dict[str, Any]] = []
        try:
            for message in messages:
                if self._apply_one(message, batch):
                    done.append(message)
        finally:
            self._delete(done)

    def _apply_one(self, message: dict[str, Any], batch: WatchReport) -> bool:
        """Apply one message; True where it may be deleted."""
        ident = message.get("MessageId", "?")
        try:
            body = message["Body"]
            report = apply_events(self._index, body, buckets=self._buckets)
        except (KeyError, InvalidValue, InvalidKey) as error:
            batch.malformed += 1
            reason = "no Body" if isinstance(error, KeyError) else str(error)
            received = _receive_count(message)
            if self._max_receive is not None and received >= self._max_receive:
                batch.dropped += 1
                log.error(
                    "watch of %s: dropping malformed message %s after %d receipts: %s",
                    self._shown,
                    ident,
                    received,
                    reason,
                )
                return True
            log.warning(
                "watch of %s: malformed message %s left in the queue (receipt %d): %s",
                self._shown,
                ident,
                received,
                reason,
            )
            return False
        batch.applied += 1
        batch.add(WatchReport(events=report))
        return True

    def _delete(self, messages: list[dict[str, Any]]) -> None:
        if not messages:
            return
        entries = [
            {"Id": str(number), "ReceiptHandle": message["ReceiptHandle"]}
            for number, message in enumerate(messages)
        ]
        with self._errors("delete"):
            answer = self._client.delete_message_batch(QueueUrl=self._queue_url, Entries=entries)
        for failure in answer.get("Failed", ()):
            # Redelivered later and applied again: harmless, positions make it stale.
            message = messages[int(failure.get("Id", 0))]
            log.warning(
                "watch of %s: could not delete message %s (%s); it will be delivered again",
                self._shown,
                message.get("MessageId", "?"),
                failure.get("Code", "unknown"),
            )


def _receive_count(message: Mapping[str, Any]) -> int:
    attributes = message.get("Attributes") or {}
    try:
        return int(attributes.get("ApproximateReceiveCount", 1))
    except (TypeError, ValueError):
        return 1


def _bucket_map(buckets: Mapping[str, str] | Iterable[str] | None) -> Mapping[str, str] | None:
    if buckets is None or isinstance(buckets, Mapping):
        return buckets
    if isinstance(buckets, str):
        return {buckets: buckets}
    return {name: name for name in buckets}


def _stop_test(stop: Stop | None) -> Callable[[], bool]:
    if stop is None:
        return lambda: False
    if isinstance(stop, threading.Event):
        return stop.is_set
    return stop


def _wait(stop: Stop | None, seconds: float) -> bool:
    """Sleep ``seconds`` or until ``stop``; True where stopped."""
    if isinstance(stop, threading.Event):
        return stop.wait(seconds)
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if stop is not None and stop():
            return True
        time.sleep(min(left, 0.1))
    return stop is not None and stop()


# -- the SQS client ------------------------------------------------------------------

_AWS_HOST = re.compile(
    r"^sqs\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$|^([a-z0-9-]+)\.queue\.amazonaws\.com$"
)


def sqs_client(queue_url: str, *, region: str | None = None, wait_seconds: int = 20) -> Any:
    """A boto3 SQS client for the queue at ``queue_url``.

    The endpoint is the queue URL's scheme and host (so a local server such
    as moto works without configuration); the region is ``region``, else the
    one an AWS host names, else boto3's configured default, else
    ``us-east-1``. Credentials come from boto3's usual chain. The read
    timeout outlasts a long poll of ``wait_seconds``. Raises
    :class:`NotSupported` where boto3 is not installed, :class:`InvalidValue`
    for a URL that is not an http(s) queue URL.
    """
    try:
        boto3: Any = importlib.import_module("boto3")
        config_module: Any = importlib.import_module("botocore.config")
    except ImportError as error:
        raise NotSupported(
            f"watching SQS needs boto3, which is missing ({error.name});"
            " install it with: pip install 'mirrorkv[s3]'"
        ) from error
    parts = urlsplit(queue_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path in ("", "/"):
        raise InvalidValue(f"not an SQS queue URL: {queue_url.split('?', 1)[0]!r}")
    if region is None and (named := _AWS_HOST.match(parts.hostname or "")):
        region = named.group(1) or named.group(2)
    session = boto3.session.Session()
    region = region or session.region_name or "us-east-1"
    config = config_module.Config(
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=5,
        read_timeout=wait_seconds + 10,
    )
    return session.client(
        "sqs",
        endpoint_url=f"{parts.scheme}://{parts.netloc}",
        region_name=region,
        config=config,
    )


def _default_client(queue_url: str, wait_seconds: int) -> Any:
    return sqs_client(queue_url, wait_seconds=wait_seconds)


_RETRYABLE_CODES = frozenset(
    {
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
        "RequestThrottled",
        "Throttling",
        "ThrottlingException",
        "KmsThrottled",
        "RequestTimeout",
        "500",
        "502",
        "503",
        "504",
    }
)
_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "403",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "UnrecognizedClientException",
        "MissingAuthenticationToken",
    }
)


class _SQSErrors:
    """botocore's exceptions during one SQS call, as mirrorkv errors (never a credential)."""

    def __init__(self, queue_url: str) -> None:
        self._where = f"SQS queue {queue_url.split('?', 1)[0]}"

    def __call__(self, operation: str) -> _SQSCall:
        return _SQSCall(f"{self._where}, {operation}")


class _SQSCall:
    def __init__(self, where: str) -> None:
        self._where = where

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None or not _is_botocore(exc):
            return
        raise _translate(exc, self._where) from exc


def _is_botocore(error: BaseException) -> bool:
    module = type(error).__module__
    return module.startswith(("botocore", "urllib3"))


def _translate(error: BaseException, where: str) -> MirrorKVError:
    name = type(error).__name__
    response = getattr(error, "response", None)
    if isinstance(response, dict):  # a ClientError: the server answered
        info = response.get("Error", {})
        code = str(info.get("Code") or response.get("ResponseMetadata", {}).get("HTTPStatusCode"))
        if code in _DENIED_CODES:
            return AccessDenied(f"{where}: access denied ({code})")
        if code in _RETRYABLE_CODES:
            return StoreUnavailable(f"{where}: the server is busy or failing ({code})")
        return MirrorKVError(f"{where}: {code}: {info.get('Message', '')}".rstrip(": "))
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return AccessDenied(f"{where}: no usable AWS credentials")
    if name == "ParamValidationError":
        return InvalidValue(f"{where}: {error}")
    return StoreUnavailable(f"{where}: cannot reach the server ({name})")
