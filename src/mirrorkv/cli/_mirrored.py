"""What the commands that take ``--index`` share: the store (or its mirror), find, du, values.

With ``--index INDEX_URL`` a command wraps the store named by ``--url`` in a
:class:`~mirrorkv.mirror.Mirror` over that index and every answer comes from
the index; without it the store is asked directly. ``find`` over a plain
store filters a listing here, with the index's own glob rules
(:func:`~mirrorkv.mirror.index.glob_regex`), so both ways match the same keys.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from .. import open as open_store
from ..errors import InvalidValue
from ..meta import Details, Meta
from ..mirror import Mirror
from ..mirror.index import glob_regex, literal_prefix, regex_literal_prefix
from ..store import Store

__all__ = [
    "Filters",
    "find",
    "index_option",
    "known_meta_json",
    "opened",
    "parse_size",
    "parse_time",
]

#: The ``--index`` option of ls, stat, du and find.
index_option = click.option(
    "--index",
    "index_url",
    metavar="INDEX_URL",
    help="Answer from this mirror index (e.g. sqlite:///var/lib/idx.db) instead of asking "
    "the store; see 'mirrorkv mirror sync'.",
)


@contextmanager
def opened(url: str | None, index_url: str | None) -> Iterator[Store]:
    """The store at ``url``, wrapped in a mirror over ``index_url`` when one is given."""
    store = open_store(url)
    if index_url is None:
        with store:
            yield store
        return
    try:
        mirror = Mirror(store, index_url)
    except BaseException:
        store.close()
        raise
    with mirror:
        yield mirror


@dataclass(frozen=True, slots=True)
class Filters:
    """The filters of ``mirrorkv find``; None where not given. Times are exclusive bounds."""

    glob: str | None = None
    regex: str | None = None
    min_size: int | None = None
    max_size: int | None = None
    newer: datetime | None = None
    older: datetime | None = None
    content_type: str | None = None


def find(store: Store, prefix: str, filters: Filters) -> Iterator[Meta]:
    """The records under ``prefix`` passing ``filters``, in key order.

    A mirror answers from its index; any other store is listed (from the
    longest literal prefix the glob or anchored regex allows) and filtered here.
    """
    if filters.regex is not None:
        try:
            pattern = re.compile(filters.regex)
        except re.error as error:
            raise InvalidValue(f"--regex {filters.regex!r}: {error}") from None
    if isinstance(store, Mirror):
        return store.find(
            filters.glob,
            filters.regex,
            prefix=prefix,
            min_size=filters.min_size,
            max_size=filters.max_size,
            modified_after=filters.newer,
            modified_before=filters.older,
            content_type=filters.content_type,
        )
    glob = None if filters.glob is None else glob_regex(filters.glob)
    scan = prefix
    for literal in (
        "" if filters.glob is None else literal_prefix(filters.glob),
        "" if filters.regex is None else regex_literal_prefix(filters.regex),
    ):
        if literal.startswith(scan):
            scan = literal
        elif not scan.startswith(literal):
            return iter(())  # the prefix and the pattern exclude each other

    def passes(meta: Meta) -> bool:
        if glob is not None and glob.fullmatch(meta.key) is None:
            return False
        if filters.regex is not None and pattern.search(meta.key) is None:
            return False
        if filters.min_size is not None and meta.size < filters.min_size:
            return False
        if filters.max_size is not None and meta.size > filters.max_size:
            return False
        if filters.newer is not None and not meta.modified > filters.newer:
            return False
        if filters.older is not None and not meta.modified < filters.older:
            return False
        return filters.content_type is None or meta.content_type == filters.content_type

    return (meta for meta in store.list(scan) if passes(meta))


def known_meta_json(meta: Meta) -> dict[str, Any]:
    """A record as JSON without fetching anything: fields a listing left out are null.

    An index record made from a listing or an event holds key, size, etag and
    time; its content type, metadata and version are fetched on first read,
    which would be a remote request, so they are shown as unknown instead.
    """
    fields = meta.as_dict(evaluate=False)
    for name in ("content_type", "metadata", "version"):
        if fields[name].__class__ is Details:
            fields[name] = None
    if fields["metadata"] is not None:
        fields["metadata"] = dict(fields["metadata"])
    fields["etag"] = meta.etag
    fields["modified"] = meta.modified.isoformat()
    return fields


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*$", re.IGNORECASE)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_size(text: str) -> int:
    """Bytes from ``1234``, ``10k``, ``1.5M``, ``2GiB`` (powers of 1024); else InvalidValue."""
    found = _SIZE.match(text)
    if found is None:
        raise InvalidValue(f"not a size: {text!r} (e.g. 1234, 10k, 1.5M, 2G)")
    number, unit = found.groups()
    power = "kmgtp".index(unit.lower()) + 1 if unit else 0
    return int(float(number) * 1024**power)


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """A UTC datetime from ISO 8601 (no zone: UTC) or an age such as ``90s``, ``2h``, ``7d``."""
    if (age := _DURATION.match(text)) is not None:
        seconds = float(age.group(1)) * _SECONDS[age.group(2)]
        return (now or datetime.now(UTC)) - timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidValue(
            f"not a time: {text!r} (ISO 8601 such as 2026-01-31T12:00, or an age: 30m, 2h, 7d)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
