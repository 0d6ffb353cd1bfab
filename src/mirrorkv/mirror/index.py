"""`MetadataIndex`: what a mirror knows about the objects of its remote buckets.

An index holds, for one or more buckets (a bucket is any non-empty ``str``
naming a remote, e.g. ``"s3://bucket/prefix"``), one :class:`~mirrorkv.meta.Meta`
per key, plus what answers questions about many keys at once without reading
them: per-prefix aggregates (objects and bytes at every ``/`` level), a
journal of dirty keys, and named checkpoints for a resumable sync.

Contract shared by every backend (the conformance suite in
:mod:`mirrorkv.testing.index_conformance` checks it):

* Keys follow :mod:`mirrorkv.keys` and are listed in UTF-8 byte order.
* Every write (``record``, ``forget``, their batches, ``replace_range``) is
  one transaction that changes the entries and the aggregates together, so
  ``du`` is always exact, also with several processes writing one index.
* ``du`` of ``""`` or of any prefix ending in ``/`` reads one aggregate row;
  any other prefix is summed over its key range.
* ``find``'s ``glob``: ``*`` and ``?`` match within one path segment (they do
  not match ``/``), ``**`` matches any run of characters including ``/``,
  ``[...]`` is a character class (``[!...]`` negated); the glob must match the
  whole key. ``regex`` is a Python regular expression searched anywhere in
  the key (``re.search``): anchor it with ``^`` to get a key range. The
  literal leading part of either (up to the first wildcard) narrows the scan
  to a key range; the rest is filtered.
* Iterators are lazy and paged: a page is read in one short query, so no
  transaction stays open between pages; writes made while iterating may or
  may not be seen by later pages, but no key is listed twice or out of order.
"""

from __future__ import annotations

import builtins
import functools
import importlib
import itertools
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Self, cast

from ..bulk import Usage
from ..errors import InvalidURL, InvalidValue, NotSupported
from ..keys import check_key, check_prefix, prefix_upper_bound
from ..meta import DEFAULT_CONTENT_TYPE, Details, Listing, Meta
from ..urls import parse_url

__all__ = [
    "LISTED",
    "SUFFIX_MOST",
    "SUFFIX_SHARE",
    "SUFFIX_SHORTEST",
    "FindQuery",
    "MetadataIndex",
    "Usage",
    "check_bucket",
    "check_delimiter",
    "check_listing",
    "check_swap",
    "entry_state",
    "find_query",
    "glob_regex",
    "key_bounds",
    "literal_prefix",
    "narrow_prefix",
    "open_index",
    "parent_prefixes",
    "regex_literal_prefix",
    "replace_range_check",
    "seek_listing",
    "timestamp",
    "with_listed",
]


#: The version of a record that holds only what a listing gives (no content type or metadata).
LISTED = ""

_new_meta = tuple.__new__

#: ``find`` reads through a backend's index of reversed keys where the keys ending in
#: the glob's literal text number less than this share of the keys of the range's
#: directory (counting them costs about a tenth of scanning them).
SUFFIX_SHARE = 8
#: ``find`` tries a suffix index for literal endings at least this long (one
#: character, such as the last digit of a number, is seldom rare enough to pay).
SUFFIX_SHORTEST = 2
#: ``find`` reads at most this many keys at once through a suffix index.
SUFFIX_MOST = 100_000

#: Records per page of :meth:`MetadataIndex.list_pages` where a backend has no pages of its own.
_PAGE = 1000


def with_listed(metas: Iterable[Meta], listed: Details) -> builtins.list[Meta]:
    """``metas``, each holding only what a listing gave with ``listed`` in its detail slots.

    See :meth:`MetadataIndex.list_pages`; the other records are kept as they are.
    """
    return [
        _new_meta(Meta, (*meta[:4], listed, listed, listed)) if meta[6] == LISTED else meta
        for meta in metas
    ]


def _pages(metas: Iterator[Meta]) -> Iterator[builtins.list[Meta]]:
    """``metas`` in lists of up to :data:`_PAGE` records."""
    return iter(lambda: builtins.list(itertools.islice(metas, _PAGE)), [])


def entry_state(meta: Meta | None) -> tuple[str, str] | None:
    """What :meth:`MetadataIndex.compare_and_set` compares: ``(etag, version)``, or None."""
    return None if meta is None else (meta.etag, meta.version)


def check_swap(key: str, meta: Meta | None) -> None:
    """Check :meth:`MetadataIndex.compare_and_set`'s record: a ``Meta`` of ``key``, or None."""
    check_key(key)
    if meta is not None and (not isinstance(meta, Meta) or meta.key != key):
        raise InvalidValue(f"compare_and_set of {key!r} takes a Meta of that key or None")


def check_bucket(bucket: object) -> str:
    """Return ``bucket`` if it names a bucket (a non-empty str without NUL); else InvalidValue."""
    if not isinstance(bucket, str) or not bucket or "\x00" in bucket:
        raise InvalidValue(f"a bucket is a non-empty str without NUL, not {bucket!r}")
    return bucket


def parent_prefixes(key: str) -> builtins.list[str]:
    """The aggregate prefixes a key counts in: ``""`` and every prefix ending in ``/``.

    ``"a/b/c"`` -> ``["", "a/", "a/b/"]``; ``"a//b"`` -> ``["", "a/", "a//"]``.
    """
    prefixes = [""]
    at = key.find("/")
    while at != -1:
        prefixes.append(key[: at + 1])
        at = key.find("/", at + 1)
    return prefixes


def timestamp(moment: datetime | float) -> float:
    """A POSIX time from a timezone-aware datetime or a number (naive datetimes are refused)."""
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            raise InvalidValue("a naive datetime is ambiguous: give a timezone-aware one")
        return moment.timestamp()
    if isinstance(moment, bool) or not isinstance(moment, int | float):
        raise InvalidValue(f"a time is a datetime or a POSIX timestamp, not {moment!r}")
    return float(moment)


_GLOB_SPECIAL = "*?["


def literal_prefix(glob: str) -> str:
    """The part of a glob before its first wildcard (``*``, ``?`` or ``[``)."""
    for at, char in enumerate(glob):
        if char in _GLOB_SPECIAL:
            return glob[:at]
    return glob


def _class_end(glob: str, at: int) -> int:
    """Where the character class opened at ``glob[at]`` closes, or -1 (a literal ``[``).

    As in fnmatch, a ``]`` right after ``[`` or ``[!`` belongs to the class.
    """
    return glob.find("]", at + (3 if glob.startswith("[!", at) else 2))


def _class_body(body: str) -> str:
    """A glob class's characters as a regex class body: ranges ``a-z`` kept, all else literal."""
    out: list[str] = []
    at = 0
    while at < len(body):
        if at + 2 < len(body) and body[at + 1] == "-":
            out.append(f"{re.escape(body[at])}-{re.escape(body[at + 2])}")
            at += 3
        else:
            out.append(re.escape(body[at]))
            at += 1
    return "".join(out)


@functools.lru_cache(maxsize=256)  # a find compiles its glob once, not on every call
def glob_regex(glob: str) -> re.Pattern[str]:
    """The compiled regular expression of a glob (see the module docstring), matched whole."""
    out: list[str] = []
    at, end = 0, len(glob)
    while at < end:
        char = glob[at]
        if char == "*":
            if glob.startswith("**", at):
                out.append(".*")
                at += 2
                continue
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            close = _class_end(glob, at)
            if close == -1:
                out.append(re.escape(char))
            else:
                body = glob[at + 1 : close]
                negate = body.startswith("!")
                if negate:
                    body = body[1:]
                body = _class_body(body)
                # A negated class must not match "/" either: * and ? never cross a segment.
                out.append(f"[^/{body}]" if negate else f"[{body}]")
                at = close
        else:
            out.append(re.escape(char))
        at += 1
    try:
        return re.compile("".join(out), re.DOTALL)
    except re.error as error:  # a class with a reversed range, such as [z-a]
        raise InvalidValue(f"bad glob {glob!r}: {error}") from None


#: Tokens of a glob (see :func:`_glob_tokens`): a run of any characters, any one character.
_MANY, _ONE = object(), object()


def _glob_tokens(glob: str) -> list[object]:
    """``glob`` as :data:`_MANY`, :data:`_ONE` (``?`` or a class) and literal characters."""
    tokens: list[object] = []
    at, end = 0, len(glob)
    while at < end:
        char = glob[at]
        if char == "*":
            if not tokens or tokens[-1] is not _MANY:
                tokens.append(_MANY)
        elif char == "?":
            tokens.append(_ONE)
        elif char == "[" and (close := _class_end(glob, at)) != -1:
            tokens.append(_ONE)
            at = close
        else:
            tokens.append(char)
        at += 1
    return tokens


@functools.lru_cache(maxsize=256)
def glob_literal_suffix(glob: str) -> str:
    """The literal characters a key matching ``glob`` must end with (``""``: none)."""
    tokens = _glob_tokens(glob)
    at = len(tokens)
    while at and isinstance(tokens[at - 1], str):
        at -= 1
    return "".join(cast("list[str]", tokens[at:])) if at else ""


@functools.lru_cache(maxsize=256)
def glob_prefilter(glob: str, dialect: str) -> str | None:
    """A pattern for SQL's ``GLOB`` (``dialect="glob"``) or ``LIKE`` (``"like"``) that
    every key matching ``glob`` matches, so that the database drops most other
    keys before they reach Python; ``None`` where it would drop nothing.

    A superset, not the same set: ``*`` and ``?`` there also cross ``/`` and a
    character class becomes "any one character", so the exact
    :func:`glob_regex` still runs on what it keeps. ``LIKE`` patterns escape
    with a backslash (PostgreSQL's default).
    """
    if dialect == "glob":
        many, one = "*", "?"

        def literal(char: str) -> str:
            return f"[{char}]" if char in "*?[" else char
    elif dialect == "like":
        many, one = "%", "_"

        def literal(char: str) -> str:
            return "\\" + char if char in "%_\\" else char
    else:
        raise ValueError(f"unknown SQL pattern dialect {dialect!r}")
    tokens = _glob_tokens(glob)
    if tokens[-1:] == [_MANY] and _MANY not in tokens[:-1] and _ONE not in tokens:
        return None  # a literal start and one trailing wildcard: the key range itself
    return "".join(
        many if token is _MANY else one if token is _ONE else literal(cast(str, token))
        for token in tokens
    )


_REGEX_META = set(".^$*+?{}[]|()\\")
_QUANTIFIERS = set("*+?{")


def narrow_prefix(prefix: str | None, literal: str) -> str | None:
    """The longer of two prefixes when one extends the other; ``None`` when they conflict.

    ``find`` narrows its scan to ``prefix`` and to the literal start of its
    pattern at once: ``("a/", "a/b")`` -> ``"a/b"``; ``("a/", "b")`` -> None
    (nothing can match). A ``prefix`` of None stays None.
    """
    if prefix is None:
        return None
    if literal.startswith(prefix):
        return literal
    if prefix.startswith(literal):
        return prefix
    return None


def regex_literal_prefix(regex: str) -> str:
    """The literal text every match of an ``^``-anchored regex starts with ('' if none is sure).

    Conservative: alternation anywhere, or a pattern not starting with ``^``,
    gives ``""``; a literal character followed by a quantifier is left out.
    """
    if not regex.startswith("^") or "|" in regex:
        return ""
    literal: list[str] = []
    at, end = 1, len(regex)
    while at < end:
        char = regex[at]
        if char == "\\" and at + 1 < end and not regex[at + 1].isalnum():
            char, step = regex[at + 1], 2
        elif char in _REGEX_META:
            break
        else:
            step = 1
        if at + step < end and regex[at + step] in _QUANTIFIERS:
            break
        literal.append(char)
        at += step
    return "".join(literal)


#: A reader of one page of entry rows for :func:`seek_listing`:
#: ``(low, low_inclusive, high, limit) -> rows``, each row starting with its key.
PageReader = Callable[[str, bool, "str | None", int], "Sequence[tuple[Any, ...]]"]


def seek_listing(
    prefix: str,
    delimiter: str,
    read: PageReader,
    to_metas: Callable[[builtins.list[Any]], builtins.list[Meta]],
    last_page: int,
) -> Listing:
    """:meth:`MetadataIndex.ls` over a backend that reads key ranges in pages.

    Skips over each common prefix with one seek: after a seek it reads one
    row (the next is often another prefix), and pages grow (x4, up to
    ``last_page``) while rows are objects directly at this level. The rows
    of the objects become records by one call of ``to_metas`` at the end.
    ``prefix`` and ``delimiter`` must be checked already.
    """
    objects: builtins.list[Any] = []
    prefixes: builtins.list[str] = []
    low, inclusive, high = prefix, True, prefix_upper_bound(prefix)
    start = len(prefix)
    page = 1
    while True:
        rows = read(low, inclusive, high, page)
        seeked = False
        for row in rows:
            key = row[0]
            at = key.find(delimiter, start)
            if at == -1:
                objects.append(row)
                low, inclusive = key, False
                continue
            common = key[: at + len(delimiter)]
            prefixes.append(common)
            bound = prefix_upper_bound(common)
            if bound is None:
                return Listing(to_metas(objects), prefixes)
            low, inclusive, seeked = bound, True, True
            break
        if seeked:
            page = 1
        elif len(rows) < page:
            return Listing(to_metas(objects), prefixes)
        else:
            page = min(page * 4, last_page)


def key_bounds(prefix: str, start_after: str | None) -> tuple[str, bool, str | None]:
    """``(low, inclusive, high)`` of a listing: keys ``>= low`` (``> low`` where not
    inclusive) and ``< high`` (None: unbounded) that start with ``prefix``, after ``start_after``.
    """
    if start_after is not None and start_after >= prefix:
        return start_after, False, prefix_upper_bound(prefix)
    return prefix, True, prefix_upper_bound(prefix)


def replace_range_check(
    bucket: str, prefix: str, start_after: str | None, until: str | None
) -> Callable[[str], str]:
    """Check :meth:`MetadataIndex.replace_range`'s arguments; return a checker of its keys.

    The checker returns a record's key if it is valid (else :class:`InvalidKey`)
    and lies in the range being replaced (else :class:`InvalidValue`).
    """
    check_bucket(bucket)
    check_prefix(prefix)
    if start_after is not None:
        check_key(start_after)
    if until is not None:
        check_key(until)

    def inside(key: str) -> str:
        check_key(key)
        if (
            not key.startswith(prefix)
            or (start_after is not None and key <= start_after)
            or (until is not None and key > until)
        ):
            raise InvalidValue(f"{key!r} is outside the range being replaced")
        return key

    return inside


def check_listing(bucket: str, prefix: str, start_after: str | None) -> None:
    """Check the arguments of ``list`` and ``keys`` (:class:`InvalidValue`, :class:`InvalidKey`)."""
    check_bucket(bucket)
    check_prefix(prefix)
    if start_after is not None:
        check_key(start_after)


def check_delimiter(delimiter: object) -> str:
    """``delimiter`` if it is a non-empty str; else :class:`InvalidValue`."""
    if not isinstance(delimiter, str) or not delimiter:
        raise InvalidValue(f"delimiter must be a non-empty str, not {delimiter!r}")
    return delimiter


@dataclass(frozen=True, slots=True)
class FindQuery:
    """The arguments of one :meth:`MetadataIndex.find`, checked and prepared for a backend.

    ``range_prefix`` is the key range to scan (the prefix narrowed by the
    patterns' literal start), or None where nothing can match. The size,
    time and content type bounds go to the backend's query where it can
    (:meth:`sql`); :meth:`keep` filters the key patterns, and
    :meth:`matches` everything, for a backend that filters in Python.
    """

    range_prefix: str | None
    min_size: int | None = None
    max_size: int | None = None
    modified_after: float | None = None
    modified_before: float | None = None
    content_type: str | None = None
    patterns: tuple[Callable[[str], object], ...] = ()
    glob: str | None = None
    #: Goes in the detail slots of records holding only what a listing gave (see ``list_pages``).
    listed: Details | None = None

    def sql(self, placeholder: str, dialect: str | None = None) -> tuple[str, tuple[Any, ...]]:
        """``(" AND size >= ? ...", args)`` for the bounds, with the driver's placeholder.

        The columns are those of the SQL backends: ``size``, ``modified`` (a
        float POSIX time) and ``content_type`` (NULL for the default type).
        With ``dialect`` (``"glob"`` or ``"like"``, see :func:`glob_prefilter`)
        the glob also narrows the rows in SQL; :meth:`keep` still decides.
        """
        clauses: list[str] = []
        args: list[Any] = []
        if dialect is not None and self.glob is not None:
            pattern = glob_prefilter(self.glob, dialect)
            if pattern is not None:
                clauses.append(f"key {dialect.upper()} {placeholder}")
                args.append(pattern)
        for clause, value in (
            ("size >= ", self.min_size),
            ("size <= ", self.max_size),
            ("modified > ", self.modified_after),
            ("modified < ", self.modified_before),
        ):
            if value is not None:
                clauses.append(clause + placeholder)
                args.append(value)
        if self.content_type == DEFAULT_CONTENT_TYPE:
            clauses.append("content_type IS NULL")
        elif self.content_type is not None:
            clauses.append("content_type = " + placeholder)
            args.append(self.content_type)
        return "".join(f" AND {clause}" for clause in clauses), tuple(args)

    @property
    def keeps(self) -> Callable[[str], object]:
        """A test of a key, true where it matches every pattern (one call: it runs per key)."""
        patterns = self.patterns
        if len(patterns) == 1:
            return patterns[0]
        return lambda key: all(pattern(key) for pattern in patterns)

    def keep(self, metas: Iterator[Meta]) -> Iterator[Meta]:
        """``metas`` whose keys match every pattern."""
        if not self.patterns:
            return metas
        keeps = self.keeps
        return (meta for meta in metas if keeps(meta[0]))

    def matches(self, meta: Meta) -> bool:
        """Whether ``meta`` passes every filter (patterns, bounds and type)."""
        size, modified = meta[1], meta[3]
        if modified.__class__ is not float:
            modified = timestamp(meta.modified)
        return (
            (self.min_size is None or size >= self.min_size)
            and (self.max_size is None or size <= self.max_size)
            and (self.modified_after is None or modified > self.modified_after)
            and (self.modified_before is None or modified < self.modified_before)
            and (self.content_type is None or meta.content_type == self.content_type)
            and all(pattern(meta[0]) for pattern in self.patterns)
        )

    @property
    def filters(self) -> bool:
        """Whether any filter beyond the key range was given."""
        bounds = (self.min_size, self.max_size, self.modified_after, self.modified_before)
        return bool(self.patterns) or self.content_type is not None or bounds != (None,) * 4


def find_query(
    prefix: str = "",
    glob: str | None = None,
    regex: str | None = None,
    min_size: int | None = None,
    max_size: int | None = None,
    modified_after: datetime | float | None = None,
    modified_before: datetime | float | None = None,
    content_type: str | None = None,
    listed: Details | None = None,
) -> FindQuery:
    """Check ``find``'s arguments (:class:`InvalidValue`, :class:`InvalidKey`) and prepare them."""
    check_prefix(prefix)
    for name, bound in (("min_size", min_size), ("max_size", max_size)):
        if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int)):
            raise InvalidValue(f"{name} must be an int, not {bound!r}")
    range_prefix: str | None = prefix
    patterns: list[Callable[[str], object]] = []
    if glob is not None:
        patterns.append(glob_regex(glob).fullmatch)
        range_prefix = narrow_prefix(range_prefix, literal_prefix(glob))
    if regex is not None:
        try:
            patterns.append(re.compile(regex).search)
        except re.error as error:
            raise InvalidValue(f"bad regex {regex!r}: {error}") from None
        range_prefix = narrow_prefix(range_prefix, regex_literal_prefix(regex))
    return FindQuery(
        range_prefix,
        min_size,
        max_size,
        None if modified_after is None else timestamp(modified_after),
        None if modified_before is None else timestamp(modified_before),
        content_type,
        tuple(patterns),
        glob,
        listed,
    )


class MetadataIndex(ABC):
    """The metadata of the objects of several remote buckets, queried locally.

    Thread-safe: one instance may be used by many threads. Every method that
    takes a ``bucket`` raises :class:`InvalidValue` for one that is not a
    non-empty str, and :class:`InvalidKey` for keys (or prefixes) that break
    :mod:`mirrorkv.keys`. Use as a context manager or call :meth:`close`.
    """

    @abstractmethod
    def record(self, bucket: str, meta: Meta) -> None:
        """Insert or replace the entry of ``meta.key`` and update the aggregates, atomically."""

    @abstractmethod
    def record_many(self, bucket: str, metas: Iterable[Meta]) -> None:
        """Record many entries; atomic per chunk (a backend documents its chunk size).

        A key given twice keeps its last record.
        """

    @abstractmethod
    def forget(self, bucket: str, key: str) -> None:
        """Remove the entry of ``key`` (nothing if absent) and update the aggregates, atomically."""

    @abstractmethod
    def forget_many(self, bucket: str, keys: Iterable[str]) -> None:
        """Remove the entries of ``keys`` (absent ones are ignored); atomic per chunk."""

    def compare_and_set(
        self, bucket: str, key: str, expected: tuple[str, str] | None, meta: Meta | None
    ) -> bool:
        """Atomically replace the entry of ``key`` if it is still ``expected``; return whether.

        ``expected`` is the ``(etag, version)`` of the entry the caller saw,
        or None for "no entry"; ``meta`` the record to store (its key must be
        ``key``), or None to forget the key. Where the entry has changed
        since, nothing changes and False is returned. The aggregates change
        in the same transaction. This is what lets several mirrors writing
        the same keys keep the index exact (see ``docs/mirror.md``).
        :class:`NotSupported` where a backend does not implement it.
        """
        raise NotSupported(f"{type(self).__name__} has no compare_and_set")

    def compare_and_set_many(
        self, bucket: str, changes: Iterable[tuple[str, tuple[str, str] | None, Meta | None]]
    ) -> builtins.list[str]:
        """:meth:`compare_and_set` of each ``(key, expected, meta)``; the keys that lost.

        A key whose entry is no longer ``expected`` is left as it is and
        returned. Atomic per key; a backend may apply all in one transaction
        (this default makes one call per key). :class:`NotSupported` where
        :meth:`compare_and_set` is.
        """
        return [
            key
            for key, expected, meta in changes
            if not self.compare_and_set(bucket, key, expected, meta)
        ]

    @abstractmethod
    def get(self, bucket: str, key: str) -> Meta | None:
        """The entry of ``key``, or ``None``."""

    def get_many(self, bucket: str, keys: Sequence[str]) -> dict[str, Meta]:
        """The entries of those of ``keys`` that have one, by key (one snapshot where it can)."""
        found = {key: self.get(bucket, key) for key in keys}
        return {key: meta for key, meta in found.items() if meta is not None}

    @abstractmethod
    def list(self, bucket: str, prefix: str = "", start_after: str | None = None) -> Iterator[Meta]:
        """The entries whose keys start with ``prefix`` and sort after ``start_after``, in order."""

    def list_pages(
        self,
        bucket: str,
        prefix: str = "",
        start_after: str | None = None,
        listed: Details | None = None,
    ) -> Iterator[builtins.list[Meta]]:
        """The records :meth:`list` lists, a page (a non-empty list) at a time.

        With ``listed``, a record that holds only what a listing gave (version
        :data:`LISTED`) has ``listed`` in place of its content type, metadata
        and version, so that reading them fetches them. A backend makes the
        records of a page in one pass where it can: a mirror's listing of
        many keys spends most of its time there.
        """
        for page in _pages(self.list(bucket, prefix, start_after)):
            yield page if listed is None else with_listed(page, listed)

    def keys(self, bucket: str, prefix: str = "", start_after: str | None = None) -> Iterator[str]:
        """The keys :meth:`list` would list, in the same order."""
        return (meta.key for meta in self.list(bucket, prefix, start_after))

    @abstractmethod
    def ls(self, bucket: str, prefix: str = "", delimiter: str = "/") -> Listing:
        """The entries directly under ``prefix`` and the common prefixes one level down.

        A common prefix is ``prefix`` + text up to and including the next
        ``delimiter``; each appears once, in key order, as S3 lists them.
        """

    def ls_listed(
        self, bucket: str, prefix: str = "", delimiter: str = "/", listed: Details | None = None
    ) -> Listing:
        """:meth:`ls`, its objects made as :meth:`list_pages` makes them with ``listed``."""
        listing = self.ls(bucket, prefix, delimiter)
        if listed is not None:
            listing.objects[:] = with_listed(listing.objects, listed)
        return listing

    @abstractmethod
    def du(self, bucket: str, prefix: str = "") -> Usage:
        """The objects and bytes under ``prefix`` (one row read for ``""`` or a ``/`` prefix)."""

    @abstractmethod
    def du_children(self, bucket: str, prefix: str = "") -> dict[str, Usage]:
        """``du`` one level down, for ``""`` or a prefix ending in ``/``.

        Keys are the child prefixes (``prefix`` + one segment + ``/``), in key
        order, plus ``""`` for the objects directly under ``prefix`` when
        there are any. The values add up to ``du(bucket, prefix)``.
        """

    def find(
        self,
        bucket: str,
        *,
        prefix: str = "",
        glob: str | None = None,
        regex: str | None = None,
        min_size: int | None = None,
        max_size: int | None = None,
        modified_after: datetime | float | None = None,
        modified_before: datetime | float | None = None,
        content_type: str | None = None,
        listed: Details | None = None,
    ) -> Iterator[Meta]:
        """The entries under ``prefix`` that pass every filter given, in key order.

        Sizes are inclusive bounds; times are exclusive bounds (a datetime or a
        POSIX time); ``content_type`` must be equal. See the module docstring
        for ``glob`` and ``regex``, and :meth:`list_pages` for ``listed``. The
        arguments are checked here; a backend answers the prepared
        :class:`FindQuery` in :meth:`_find`.
        """
        check_bucket(bucket)
        query = find_query(
            prefix,
            glob,
            regex,
            min_size,
            max_size,
            modified_after,
            modified_before,
            content_type,
            listed,
        )
        if query.range_prefix is None:
            return iter(())
        found = self._find(bucket, query, query.range_prefix)
        if listed is None or self._find_fills_listed:
            return found
        return itertools.chain.from_iterable(with_listed(page, listed) for page in _pages(found))

    #: Whether :meth:`_find` puts ``query.listed`` in the records itself.
    _find_fills_listed = False

    @abstractmethod
    def _find(self, bucket: str, query: FindQuery, low: str) -> Iterator[Meta]:
        """:meth:`find` of a checked ``query``; ``low`` is its ``range_prefix`` (not None)."""

    @abstractmethod
    def mark_dirty(self, bucket: str, keys: Iterable[str]) -> None:
        """Journal ``keys`` as dirty: their remote write succeeded but recording it failed."""

    @abstractmethod
    def dirty(self, bucket: str) -> builtins.list[str]:
        """The journaled dirty keys of ``bucket``, in key order."""

    @abstractmethod
    def clear_dirty(self, bucket: str, keys: Iterable[str]) -> None:
        """Remove ``keys`` from the dirty journal (absent ones are ignored)."""

    @abstractmethod
    def set_checkpoint(self, bucket: str, name: str, value: str | None) -> None:
        """Set (or with ``None`` delete) the checkpoint ``name`` of ``bucket``."""

    @abstractmethod
    def checkpoint(self, bucket: str, name: str) -> str | None:
        """The value of checkpoint ``name`` of ``bucket``, or ``None``."""

    @abstractmethod
    def buckets(self) -> builtins.list[str]:
        """The buckets holding any entry, dirty key or checkpoint, sorted."""

    @abstractmethod
    def replace_range(
        self,
        bucket: str,
        prefix: str,
        metas: Iterable[Meta],
        *,
        start_after: str | None = None,
        until: str | None = None,
    ) -> tuple[int, int, int]:
        """Make the entries in one key range exactly ``metas``, atomically; return the changes.

        The range is the keys starting with ``prefix`` that sort after
        ``start_after`` (if given) and not after ``until`` (if given, inclusive):
        what one page of a remote listing covers. Every given record must lie in
        it (else :class:`InvalidValue`); the range is read whole, so keep it to a page.
        Returns ``(added, changed, removed)``,
        where *changed* counts keys whose stored record differed.
        """

    @abstractmethod
    def close(self) -> None:
        """Release connections; closing twice is harmless, later use raises MirrorKVError."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


#: Index backends by URL scheme: ``(module under mirrorkv.mirror, class name)``.
INDEX_SCHEMES: dict[str, tuple[str, str]] = {
    "sqlite": ("sqlite_index", "SQLiteIndex"),
    "redis": ("redis_index", "RedisIndex"),
    "rediss": ("redis_index", "RedisIndex"),
    "redis+cluster": ("redis_index", "RedisIndex"),
    "postgresql": ("postgres_index", "PostgresIndex"),
    "postgres": ("postgres_index", "PostgresIndex"),
}


def open_index(url: str, **options: Any) -> MetadataIndex:
    """Open the index a URL names.

    ``sqlite:///abs/path.db`` (or ``sqlite:rel/path.db``), ``redis://host:port/db``
    (``rediss://`` with TLS, ``redis+cluster://`` on a cluster) or
    ``postgresql://user@host/database``. Options come from the URL's query and
    from ``options`` (which win). Unknown schemes raise :class:`InvalidURL`; a
    backend whose driver is missing names its extra.
    """
    parsed = parse_url(url)
    merged: dict[str, Any] = {**parsed.query, **options}
    try:
        module_name, class_name = INDEX_SCHEMES[parsed.scheme]
    except KeyError:
        known = ", ".join(sorted(INDEX_SCHEMES))
        raise InvalidURL(f"no metadata index for {parsed.scheme}: URLs (known: {known})") from None
    try:
        module = importlib.import_module(f"{__package__}.{module_name}")
    except ModuleNotFoundError as error:
        extra = "redis" if module_name == "redis_index" else "sql"
        raise InvalidURL(
            f"the {parsed.scheme}: index needs a package that is missing ({error.name});"
            f" install mirrorkv[{extra}]"
        ) from error
    backend: Any = getattr(module, class_name)
    index: MetadataIndex = backend.from_url(parsed, **merged)
    return index
