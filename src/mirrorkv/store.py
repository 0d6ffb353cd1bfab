"""`Store`, the one contract every backend and layer implements.

A backend implements six primitives (``_get``, ``_put``, ``_delete``,
``_head``, ``_list`` and optionally ``_open`` and ``_put_stream``); this base
class validates arguments and derives the whole public API from them. A
backend overrides a derived method only to make it faster or atomic, and
keeps its meaning.

Guarantees every store gives (the conformance suite checks them):

* Keys follow :mod:`mirrorkv.keys`; a bad key raises :class:`InvalidKey`
  before anything is done.
* ``put`` is atomic: a reader sees the old value or the new, never a torn
  one, and its metadata always belongs to the value it reads.
* ``list``/``keys``/``ls`` yield keys in ascending order of their UTF-8 bytes,
  lazily; a listing reflects writes made before it started, and may or may
  not reflect writes made while it runs.
* ``delete`` is idempotent.
* ``put(..., if_match=etag)`` writes only if the current etag is ``etag``,
  ``put(..., if_none_match="*")`` only if the key is absent; otherwise
  :class:`PreconditionFailed` and nothing changes. ``incr`` is atomic.
"""

from __future__ import annotations

import builtins
import contextlib
import enum
import io
import operator
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, BinaryIO, NamedTuple, Self

from .errors import InvalidValue, KeyNotFound, NotSupported, PreconditionFailed
from .keys import MAX_KEY_BYTES, check_key, check_keys, check_prefix
from .meta import DEFAULT_CONTENT_TYPE, NO_METADATA, Listing, Meta, freeze_metadata

__all__ = [
    "CHUNK_SIZE",
    "DEFAULT_PUT_OPTIONS",
    "Capability",
    "PutOptions",
    "Store",
    "after_prefix",
    "check_counter_arguments",
    "check_precondition",
    "checked_batch",
    "make_options",
    "parse_counter",
    "to_bytes",
]

#: The chunk size used when a store streams a value in or out.
CHUNK_SIZE = 1 << 20

PathOrFile = str | os.PathLike[str] | IO[bytes]


class Capability(enum.Flag):
    """What a store does natively, so callers (and layers) can check before they start."""

    NONE = 0
    #: ``if_match`` / ``if_none_match`` on put, and ``if_match`` on delete, are
    #: checked atomically by the store itself.
    CONDITIONAL_WRITES = enum.auto()
    #: ``copy`` happens inside the store without the value passing through Python.
    SERVER_SIDE_COPY = enum.auto()
    #: ``incr`` is one atomic operation of the store.
    NATIVE_COUNTERS = enum.auto()
    #: ``put_many`` / ``delete_many`` are all-or-nothing.
    TRANSACTIONS = enum.auto()
    #: ``url_for`` returns a URL.
    URLS = enum.auto()
    #: Several processes may open and write the same store at once.
    MULTI_PROCESS = enum.auto()
    #: ``put(..., ttl=seconds)`` expires the value in the store itself.
    NATIVE_TTL = enum.auto()


class PutOptions(NamedTuple):
    """The options of one write, as a backend's ``_put`` receives them (already validated)."""

    content_type: str = DEFAULT_CONTENT_TYPE
    metadata: Mapping[str, str] = NO_METADATA
    if_match: str | None = None
    if_none_match: str | None = None


DEFAULT_PUT_OPTIONS = PutOptions()


def to_bytes(data: object) -> bytes:
    """``data`` as ``bytes`` if it is bytes-like; :class:`InvalidValue` if it is not."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    if isinstance(data, str):
        raise InvalidValue("values are bytes: encode a str first (e.g. text.encode())")
    raise InvalidValue(f"values are bytes, not {type(data).__name__}")


def after_prefix(prefix: str) -> str:
    """A ``start_after`` bound that skips every key starting with ``prefix``.

    No valid key is longer than 1024 bytes, so ``prefix`` followed by 256 of
    the largest code point sorts after every key that starts with it.
    """
    return prefix + "\U0010ffff" * 256


def make_options(
    content_type: str | None,
    metadata: Mapping[str, str] | None,
    if_match: str | None,
    if_none_match: str | None,
) -> PutOptions:
    """Validate the keyword arguments of a write and bundle them."""
    if if_none_match is not None and if_none_match != "*":
        raise InvalidValue('if_none_match takes only "*" (create if absent)')
    if if_match is not None and not isinstance(if_match, str):
        raise InvalidValue("if_match takes an etag string")
    if content_type is not None and not isinstance(content_type, str):
        raise InvalidValue("content_type must be a str")
    return PutOptions(
        content_type or DEFAULT_CONTENT_TYPE,
        freeze_metadata(metadata),
        if_match,
        if_none_match,
    )


def check_precondition(key: str, current: Meta | None, options: PutOptions) -> None:
    """Raise :class:`PreconditionFailed` unless ``current`` satisfies the write's conditions.

    For backends that check conditions themselves under their own lock or
    transaction; ``current`` is ``None`` where the key is absent.
    """
    if options.if_none_match is not None and current is not None:
        raise PreconditionFailed(f"{key!r} exists (if_none_match='*')")
    if options.if_match is not None and (current is None or current.etag != options.if_match):
        raise PreconditionFailed(f"{key!r} does not have etag {options.if_match!r}")


class Store(ABC):
    """A map from string keys to byte values with a little metadata for each.

    Use as a context manager, or call :meth:`close`, to release connections
    and files. Every store is safe to share between threads.
    """

    #: What this store does natively; see :class:`Capability`.
    capabilities: Capability = Capability.NONE

    #: The largest value the store accepts, in bytes (``None``: no limit of its own).
    max_value_size: int | None = None

    #: True where every etag is the hex MD5 of the value, so equal values have
    #: equal etags (the default). False where etags only identify a write: each
    #: is a non-empty str, the same from ``put`` and ``head`` until the next
    #: write, and different after it (as S3's SSE-KMS etags are not MD5 digests).
    content_etags: bool = True

    @property
    def max_key_bytes(self) -> int:
        """The longest key this store accepts, in UTF-8 bytes (1024; less under a prefix)."""
        return MAX_KEY_BYTES

    # -- primitives ---------------------------------------------------------

    @abstractmethod
    def _get(self, key: str) -> bytes:
        """The value of ``key``; :class:`KeyNotFound` where absent."""

    @abstractmethod
    def _put(self, key: str, data: bytes, options: PutOptions) -> Meta:
        """Store ``data`` atomically, honouring the conditions in ``options``."""

    @abstractmethod
    def _delete(self, key: str) -> None:
        """Remove ``key``; nothing happens where it is absent."""

    def _delete_if(self, key: str, etag: str) -> None:
        """Remove ``key`` only if its value's etag is ``etag``, atomically.

        :class:`PreconditionFailed` where the key is absent or its etag
        differs. Stores with :attr:`Capability.CONDITIONAL_WRITES` implement
        it under the same lock or transaction as their conditional puts; the
        default raises :class:`NotSupported`.
        """
        raise NotSupported(f"{type(self).__name__} has no conditional delete")

    @abstractmethod
    def _head(self, key: str) -> Meta:
        """The metadata of ``key``; :class:`KeyNotFound` where absent."""

    @abstractmethod
    def _list(self, prefix: str, start_after: str | None) -> Iterator[Meta]:
        """Metadata of the keys starting with ``prefix`` and after ``start_after``, in order."""

    def _open(self, key: str) -> BinaryIO:
        """A readable binary stream of the value; the default wraps :meth:`_get`."""
        return io.BytesIO(self._get(key))

    def _put_stream(self, key: str, stream: IO[bytes], options: PutOptions) -> Meta:
        """Store what ``stream`` yields; the default reads it whole and calls :meth:`_put`."""
        return self._put(key, self._checked_size(stream.read()), options)

    def _keys(self, prefix: str, start_after: str | None) -> Iterator[str]:
        """Keys only, in order; override where that is cheaper than :meth:`_list`."""
        return (meta.key for meta in self._list(prefix, start_after))

    def _get_with_meta(self, key: str) -> tuple[bytes, Meta]:
        """A value and the metadata of that same value; override to make it atomic."""
        while True:
            meta = self._head(key)
            data = self._get(key)
            if self._head(key).version == meta.version:
                return data, meta

    # -- the public API -----------------------------------------------------

    def get(self, key: str) -> bytes:
        """The value of ``key``. Raises :class:`KeyNotFound` where absent."""
        return self._get(check_key(key))

    def put(
        self,
        key: str,
        data: bytes | bytearray | memoryview,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> Meta:
        """Store ``data`` under ``key`` atomically and return its new metadata.

        Content type and metadata replace those of any previous value.
        ``if_match=etag`` writes only over a value with that etag,
        ``if_none_match="*"`` only where the key is absent; otherwise
        :class:`PreconditionFailed` is raised and nothing changes.
        """
        check_key(key)
        options = (
            DEFAULT_PUT_OPTIONS
            if content_type is None and not metadata and if_match is None and if_none_match is None
            else make_options(content_type, metadata, if_match, if_none_match)
        )
        return self._put(key, self._checked_size(to_bytes(data)), options)

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        """Remove ``key``. Deleting an absent key is not an error.

        ``if_match=etag`` removes the value only while it still has that etag
        (atomically, on stores with :attr:`Capability.CONDITIONAL_WRITES`);
        otherwise, and where the key is absent, :class:`PreconditionFailed`
        is raised and nothing changes. So a value written since the caller
        looked is never deleted by mistake.
        """
        check_key(key)
        if if_match is None:
            self._delete(key)
            return
        if not isinstance(if_match, str) or not if_match:
            raise InvalidValue(f"if_match takes an etag (a non-empty str), not {if_match!r}")
        self._delete_if(key, if_match)

    def head(self, key: str) -> Meta:
        """The metadata of ``key`` without its value. Raises :class:`KeyNotFound` where absent."""
        return self._head(check_key(key))

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` exists. An invalid key raises :class:`InvalidKey`."""
        try:
            self._head(check_key(key))
        except KeyNotFound:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        """Every key, in ascending order."""
        return self._keys("", None)

    def keys(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[str]:
        """The keys starting with ``prefix`` (after ``start_after``), in ascending order, lazily."""
        return self._keys(check_prefix(prefix), _check_start_after(start_after))

    def list(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[Meta]:
        """Metadata of the keys starting with ``prefix`` (after ``start_after``), in order."""
        return self._list(check_prefix(prefix), _check_start_after(start_after))

    def ls(self, prefix: str = "", delimiter: str = "/") -> Listing:
        """One level of the hierarchy below ``prefix``, as S3 lists with a delimiter.

        Keys that hold ``delimiter`` after ``prefix`` are rolled up into common
        prefixes (each ending with ``delimiter``); the rest are objects.
        """
        check_prefix(prefix)
        if not isinstance(delimiter, str) or not delimiter:
            raise InvalidValue("delimiter must be a non-empty str")
        listing = Listing()
        start_after: str | None = None
        skip = len(prefix)
        while True:
            for meta in self._list(prefix, start_after):
                cut = meta.key.find(delimiter, skip)
                if cut < 0:
                    listing.objects.append(meta)
                    continue
                common = meta.key[: cut + len(delimiter)]
                listing.prefixes.append(common)
                start_after = after_prefix(common)
                break
            else:
                return listing

    def open(self, key: str) -> BinaryIO:
        """A readable binary stream of the value, for values too large to hold in memory.

        Close it (or use ``with``). Raises :class:`KeyNotFound` where absent.
        """
        return self._open(check_key(key))

    def put_file(
        self,
        key: str,
        source: PathOrFile,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> Meta:
        """Store the contents of a file (a path or a readable binary file object), streaming.

        Same guarantees and conditions as :meth:`put`.
        """
        check_key(key)
        options = make_options(content_type, metadata, if_match, if_none_match)
        if isinstance(source, str | os.PathLike):
            with open(source, "rb") as stream:
                return self._put_stream(key, stream, options)
        return self._put_stream(key, source, options)

    def get_file(self, key: str, target: PathOrFile) -> int:
        """Write the value of ``key`` to a path or a writable binary file; return its size.

        A path is written to a temporary file beside it and renamed into
        place, so it never holds a partial value.
        """
        with self.open(key) as source:
            if not isinstance(target, str | os.PathLike):
                return _copy_stream(source, target)
            path = Path(target)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as out:
                    size = _copy_stream(source, out)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            return size

    def copy(self, source: str, target: str) -> Meta:
        """Copy a value with its content type and metadata to another key; return its new Meta."""
        check_key(source)
        check_key(target)
        meta = self._head(source)
        with self._open(source) as stream:
            return self._put_stream(target, stream, PutOptions(meta.content_type, meta.metadata))

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        """The values of the keys that exist; absent keys are left out."""
        found: dict[str, bytes] = {}
        for key in keys:
            with contextlib.suppress(KeyNotFound):
                found[key] = self._get(check_key(key))
        return found

    def put_many(
        self, items: Mapping[str, bytes] | Iterable[tuple[str, bytes]]
    ) -> builtins.list[Meta]:
        """Store many values; all-or-nothing on stores with :attr:`Capability.TRANSACTIONS`.

        Every key and value is checked before anything is written. Where a
        key repeats, its last value wins.
        """
        keys, values = checked_batch(items, self.max_value_size)
        return self._put_many(keys, values) if keys else []

    def _put_many(
        self, keys: builtins.list[str], values: builtins.list[bytes]
    ) -> builtins.list[Meta]:
        """Store checked keys and values (same length, in order); override to batch them."""
        pairs = zip(keys, values, strict=True)
        return [self._put(key, data, DEFAULT_PUT_OPTIONS) for key, data in pairs]

    def delete_many(self, keys: Iterable[str]) -> None:
        """Remove many keys; absent ones are ignored. Every key is checked first."""
        self._delete_many([check_key(key) for key in keys])

    def _delete_many(self, keys: builtins.list[str]) -> None:
        """Remove checked keys; override to batch them."""
        for key in keys:
            self._delete(key)

    def incr(self, key: str, delta: int = 1, *, initial: int = 0) -> int:
        """Add ``delta`` to the counter at ``key`` atomically and return the new value.

        A counter is stored as ASCII decimal bytes (``b"42"``); an absent key
        counts from ``initial``. A value that is not a counter raises
        :class:`InvalidValue`.
        """
        check_key(key)
        check_counter_arguments(delta, initial)
        lost = 0
        while True:
            try:
                data, meta = self._get_with_meta(key)
            except KeyNotFound:
                value = initial + delta
                condition = PutOptions(if_none_match="*")
            else:
                value = parse_counter(key, data) + delta
                condition = PutOptions(meta.content_type, meta.metadata, if_match=meta.etag)
            try:
                self._put(key, b"%d" % value, condition)
            except PreconditionFailed:
                lost += 1
                self._lost_race(lost)
                continue
            return value

    def _lost_race(self, times: int) -> None:  # noqa: B027 - most stores retry at once
        """Called when :meth:`incr`'s conditional write lost a race for the ``times``-th time.

        Nothing by default (try again at once); a store whose writes are
        slow round trips backs off here so that contenders spread out.
        """

    def decr(self, key: str, delta: int = 1, *, initial: int = 0) -> int:
        """Subtract ``delta`` from the counter at ``key``; see :meth:`incr`."""
        check_counter_arguments(delta, initial)  # before negating: -True is a valid int
        return self.incr(key, -delta, initial=initial)

    def url_for(self, key: str, *, method: str = "GET", expires: float | None = None) -> str:
        """A URL that reads (``method="GET"``) or writes (``"PUT"``) the value of ``key``.

        Where the store signs URLs (S3, Azure, GCS), anyone holding one may
        use it without credentials for ``expires`` seconds (``None``: the
        store's default, an hour unless configured). :class:`NotSupported`
        where the store has no URLs, or none for that method.
        """
        check_key(key)
        verb = method.upper() if isinstance(method, str) else None
        if verb not in ("GET", "PUT"):
            raise InvalidValue(f"url_for takes method GET or PUT, not {method!r}")
        if expires is not None and (
            isinstance(expires, bool) or not isinstance(expires, int | float) or expires <= 0
        ):
            raise InvalidValue(f"expires takes seconds > 0, not {expires!r}")
        return self._url_for(key, verb, expires)

    def _url_for(self, key: str, method: str, expires: float | None) -> str:
        """A URL for a checked key, method (GET or PUT) and lifetime; none by default."""
        raise NotSupported(f"{type(self).__name__} has no URLs for its values")

    def close(self) -> None:  # noqa: B027 - most stores hold nothing to release
        """Release connections and files. Closing twice is harmless."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- helpers for subclasses --------------------------------------------

    def _checked_size(self, data: bytes) -> bytes:
        if self.max_value_size is not None and len(data) > self.max_value_size:
            raise InvalidValue(
                f"{type(self).__name__} holds values of at most {self.max_value_size} bytes, "
                f"this one has {len(data)}"
            )
        return data


def checked_batch(
    items: Mapping[str, bytes] | Iterable[tuple[str, bytes]], max_value_size: int | None = None
) -> tuple[list[str], list[bytes]]:
    """Split ``put_many``'s argument into keys and values, every one checked.

    Raises :class:`InvalidKey` or :class:`InvalidValue` (nothing is written
    before this returns). A plain batch (a dict or list of ``(str, bytes)``
    pairs) is split and checked in C-level passes; anything else item by item.
    """
    if isinstance(items, Mapping):
        keys = list(items.keys())
        values = list(items.values())
    else:
        pairs = items if isinstance(items, list) else list(items)
        if set(map(type, pairs)) <= _TUPLE and set(map(len, pairs)) <= _PAIR:
            keys = list(map(_first, pairs))
            values = list(map(_second, pairs))
        else:
            keys, values = [], []
            for key, value in pairs:
                keys.append(key)
                values.append(value)
    check_keys(keys)
    if set(map(type, values)) - _BYTES:
        values = [to_bytes(value) for value in values]
    if max_value_size is not None and values and max(map(len, values)) > max_value_size:
        size = max(map(len, values))
        raise InvalidValue(f"values are at most {max_value_size} bytes, one has {size}")
    return keys, values


_TUPLE = {tuple}
_PAIR = {2}
_BYTES = {bytes}
_first = operator.itemgetter(0)
_second = operator.itemgetter(1)


def check_counter_arguments(delta: object, initial: object) -> None:
    """Raise :class:`InvalidValue` unless ``delta`` and ``initial`` are ints (not bools)."""
    for value in (delta, initial):
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidValue(f"counters take whole numbers, not {value!r}")


def parse_counter(key: str, data: bytes) -> int:
    """The integer a counter value holds; :class:`InvalidValue` if it holds something else."""
    digits = data[1:] if data[:1] == b"-" else data
    if digits.isdigit() and digits.isascii():
        try:
            return int(data)
        except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
            raise InvalidValue(f"{key!r} holds a counter too long to convert") from None
    raise InvalidValue(f"{key!r} does not hold a counter (ASCII decimal bytes)")


def _check_start_after(start_after: str | None) -> str | None:
    if start_after is None or start_after == "":
        return None
    if not isinstance(start_after, str):
        raise InvalidValue("start_after must be a str")
    return start_after


def _copy_stream(source: IO[bytes], target: IO[bytes]) -> int:
    size = 0
    while chunk := source.read(CHUNK_SIZE):
        target.write(chunk)
        size += len(chunk)
    return size
