"""``mirrorkv mirror``: keep a mirror's metadata index true (sync from a listing, watch SQS).

Thin commands: ``sync`` is one :meth:`Mirror.sync` call, ``watch`` one
:func:`~mirrorkv.mirror.watch.watch_sqs` call; this module parses options
and shows progress and results.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import click

from ..mirror import Mirror, open_index
from ..mirror.watch import DEFAULT_MAX_RECEIVE, WatchReport, sqs_client, watch_sqs
from ._mirror_output import batch_line, sync_progress, watch_summary
from ._mirrored import opened
from ._output import Output, Settings, plural, shown, shown_url

__all__ = ["mirror_group"]


@click.group("mirror")
def mirror_group() -> None:
    """Keep a mirror's metadata index in step with its store.

    'sync' lists the store into the index; 'watch' follows S3 event
    notifications from an SQS queue. Then 'ls', 'du', 'stat' and 'find'
    with --index answer from the index without asking the store.
    """


@mirror_group.command("sync")
@click.argument("url")
@click.argument("prefix", default="")
@click.option(
    "--index",
    "index_url",
    required=True,
    metavar="INDEX_URL",
    help="The index to bring up to date, e.g. sqlite:///var/lib/idx.db.",
)
@click.option(
    "--keys-from",
    type=click.File("r", encoding="utf-8"),
    metavar="FILE",
    help="Check only the keys listed in FILE ('-': stdin), one per line, one HEAD each.",
)
@click.option(
    "--no-delete",
    is_flag=True,
    help="Keep index entries the store no longer lists (default: forget them).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the sync report as JSON.")
@click.pass_obj
def sync_command(
    settings: Settings,
    url: str,
    prefix: str,
    index_url: str,
    keys_from: IO[str] | None,
    no_delete: bool,
    as_json: bool,
) -> None:
    """Bring the index up to date with the store at URL (under PREFIX).

    Lists the store, 1,000 keys per request, and makes the index's entries
    exactly the listing; an interrupted sync resumes where it stopped. With
    --keys-from, checks only the keys given. Shows a progress bar on a
    terminal and a summary at the end.
    """
    out = Output(Settings(settings.url, settings.json or as_json))
    keys = None if keys_from is None else list(_lines(keys_from))
    with (
        opened(url, index_url) as mirror,
        sync_progress(out, None if keys is None else len(keys)) as progress,
    ):
        assert isinstance(mirror, Mirror)
        report = mirror.sync(prefix, keys, delete_missing=not no_delete, progress=progress)
    where = shown_url(url) + (f" {shown(prefix)}" if prefix else "")
    if out.json:
        out.document(
            {
                "url": shown_url(url),
                "prefix": prefix,
                "index": shown_url(index_url),
                "added": report.added,
                "changed": report.changed,
                "removed": report.removed,
                "checked": report.checked,
                "requests": report.requests,
                "seconds": round(report.seconds, 3),
                "resumed_after": report.resumed_after,
            }
        )
        return
    resumed = (
        "" if report.resumed_after is None else f" (resumed after {shown(report.resumed_after)})"
    )
    out.line(
        ("synced ", ""),
        (where, "bold"),
        (
            f": {report.added} added, {report.changed} changed, {report.removed} removed"
            f" ({plural(report.checked, 'key')} checked) in {plural(report.requests, 'request')},"
            f" {report.seconds:.1f} s{resumed}",
            "",
        ),
    )


def _lines(source: IO[str]) -> Iterator[str]:
    for line in source:
        key = line.rstrip("\r\n")
        if key:
            yield key


@mirror_group.command("watch")
@click.option(
    "--sqs",
    "queue_url",
    required=True,
    metavar="QUEUE_URL",
    help="The SQS queue S3 sends the bucket's events to (https://sqs.REGION.amazonaws.com/...).",
)
@click.option(
    "--index",
    "index_url",
    required=True,
    metavar="INDEX_URL",
    help="The index to keep current, e.g. sqlite:///var/lib/idx.db.",
)
@click.option(
    "--bucket",
    "buckets",
    multiple=True,
    metavar="NAME",
    help="Apply events of this S3 bucket only; repeat for more (default: every bucket).",
)
@click.option(
    "--until-empty",
    is_flag=True,
    help="Stop after the first receive that finds the queue empty.",
)
@click.option(
    "--wait",
    "wait_seconds",
    type=click.IntRange(0, 20),
    default=20,
    show_default=True,
    help="Seconds each receive waits for messages (long polling).",
)
@click.option(
    "--region",
    metavar="REGION",
    help="The queue's AWS region (default: from an AWS queue URL, else boto3's default).",
)
@click.option(
    "--max-receive",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_RECEIVE,
    show_default=True,
    help="Delete a malformed message once it has been received this many times.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object per batch, then the totals."
)
@click.pass_obj
def watch_command(
    settings: Settings,
    queue_url: str,
    index_url: str,
    buckets: tuple[str, ...],
    until_empty: bool,
    wait_seconds: int,
    region: str | None,
    max_receive: int,
    as_json: bool,
) -> None:
    """Apply the S3 events arriving on an SQS queue to the index, until stopped.

    Prints one line per batch of messages. A message is deleted from the
    queue only once applied, so stopping loses nothing. Ctrl-C or SIGTERM
    stops cleanly (status 0); so does --until-empty once the queue is drained.
    """
    out = Output(Settings(settings.url, settings.json or as_json))
    total = WatchReport()

    def on_batch(batch: WatchReport) -> None:
        total.add(batch)
        if out.json:
            click.echo(_json_line(batch.as_dict()))
        else:
            batch_line(out, batch)

    client = sqs_client(queue_url, region=region, wait_seconds=wait_seconds)
    stop = threading.Event()
    how = "drained" if until_empty else "stopped"
    with open_index(index_url) as index, _warnings_to_stderr(), _sigterm_sets(stop):
        try:
            report = watch_sqs(
                queue_url,
                index,
                sqs_client=client,
                buckets=buckets or None,
                wait_seconds=wait_seconds,
                stop=stop,
                on_batch=on_batch,
                until_empty=until_empty,
                max_receive=max_receive,
            )
            total.retries, total.receives, total.seconds = (
                report.retries,
                report.receives,
                report.seconds,
            )
            if stop.is_set():
                how = "stopped"
        except KeyboardInterrupt:
            how = "interrupted"
        finally:
            client.close()
    if out.json:
        click.echo(_json_line({"total": total.as_dict(), "end": how}))
    else:
        watch_summary(out, total, how)


def _json_line(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)


@contextmanager
def _warnings_to_stderr() -> Iterator[None]:
    """The watcher's warnings (malformed messages, retries) as lines on stderr."""
    logger = logging.getLogger("mirrorkv")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("mirrorkv: %(levelname)s: %(message)s"))
    handler.setLevel(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


@contextmanager
def _sigterm_sets(stop: threading.Event) -> Iterator[None]:
    """SIGTERM sets ``stop`` (from the main thread only; elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
