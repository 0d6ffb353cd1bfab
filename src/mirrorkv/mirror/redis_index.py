"""`RedisIndex`: the metadata index in Redis (or Valkey), shared by many application servers.

The layout, readable with ``redis-cli``, is described in
:mod:`._redis_index_layout`; the scripts that keep entries and aggregates
together in :mod:`._redis_index_scripts`; connections, retries and error
translation are the Redis store's (:mod:`mirrorkv.stores._redis_client`).
The user documentation is the "Redis index" section of ``docs/mirror-index.md``.
"""

from __future__ import annotations

import builtins
import itertools
import json
import re
from collections.abc import Iterable, Iterator
from typing import Any, NoReturn

import redis
from redis.cluster import RedisCluster

from ..errors import InvalidValue, MirrorKVError
from ..keys import check_key, check_prefix
from ..meta import Listing, Meta
from ..stores._redis_client import (
    URL_OPTIONS,
    Caller,
    RedisErrors,
    check_client,
    client_from_url,
    describe,
)
from ..urls import StoreURL, reject_unknown
from ._redis_index_layout import (
    BucketNames,
    bucket_names,
    byte_range,
    expected_fields,
    fields_meta,
    meta_fields,
    upper_bound,
)
from ._redis_index_scripts import (
    CHILDREN,
    FORGET,
    KEY_PAGE,
    LS,
    PAGE,
    PARTIAL_DU,
    RECORD,
    REPLACE,
    SWAP,
)
from .index import (
    FindQuery,
    MetadataIndex,
    Usage,
    check_bucket,
    check_listing,
    check_swap,
    replace_range_check,
)

__all__ = ["CHUNK", "DEFAULT_NAMESPACE", "RedisIndex"]

#: The namespace an index uses where none is given.
DEFAULT_NAMESPACE = "mirrorkv:index"
_NAMESPACE = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")
#: ``record_many`` and ``forget_many`` send one script (one atomic step) per this many keys,
#: so that no script holds the server for more than some milliseconds.
CHUNK = 1000
#: Iterators read pages growing from the first size to the last.
_FIRST_PAGE = 64
_LAST_PAGE = 1024
#: How many buckets' names an index keeps ready.
_NAMES_KEPT = 4096
#: ``ls`` reads at most this many keys per script call.
_LS_BUDGET = 1024

Client = redis.Redis | RedisCluster
_loads = json.loads


class _Closed:
    """Stands in for the caller of a closed index: every call raises MirrorKVError."""

    def __init__(self, name: str) -> None:
        self.name = name

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise MirrorKVError(f"{self.name} is closed")

    call = call_bytes = load_script = transaction = _refuse


class RedisIndex(MetadataIndex):
    """A metadata index in a Redis (or Valkey) database, shared by any number of processes.

    Layout (see ``docs/mirror-index.md``, "Redis index"): per bucket, a sorted
    set of keys ranged with ``ZRANGEBYLEX`` (UTF-8 byte order), one hash per
    entry with S3's field names, a hash of per-prefix usage, a sorted set of
    the prefixes holding objects, the dirty journal and the checkpoints; all
    under the hash tag ``{<namespace>:<bucket>}``.

    Guarantees: ``record``, ``forget``, ``replace_range`` and each chunk of
    :data:`CHUNK` keys of ``record_many``/``forget_many`` are one Lua script,
    so entries and aggregates change together and ``du`` is exact with any
    number of writers. ``du`` of ``""`` or a ``/`` prefix is one ``HMGET``;
    ``du`` of another prefix and ``du_children`` are one script each, so
    they add up one moment. Iterators read pages of one script call each.
    A connection error raises :class:`StoreUnavailable` after the call was
    sent once more on a new connection (``retries`` more times where given):
    every write here is idempotent, since it sets a state and computes the
    aggregate changes from what it finds, so a write whose reply was lost
    may be applied twice (a record of the same key by another writer in
    between is then replaced, as if this write had come later).
    ``compare_and_set`` is one script too; a resent swap reports True where
    it finds the entry already equal to its record (see the method).
    Sizes above 2**53 - 1 raise :class:`InvalidValue` (Lua adds doubles).
    """

    def __init__(
        self,
        client: Client,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        retries: int = 0,
        where: str | None = None,
        owns_client: bool = False,
    ) -> None:
        """An index over ``client`` (``redis.Redis`` or ``redis.cluster.RedisCluster``).

        The client must not decode responses. ``namespace`` starts every Redis
        name the index uses (letters, digits, ``_ . : -``; no braces).
        ``retries``: how many times a call is sent again after a connection
        error (at least once). ``where`` names the server in errors and ``repr`` (never a
        password). ``owns_client``: :meth:`close` closes the client too.
        """
        check_client("RedisIndex", client, retries)
        if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
            raise InvalidValue(
                "namespace is 1 to 128 characters of A-Z a-z 0-9 _ . : - "
                f"(no '#' or braces), not {namespace!r}"
            )
        self._client = client
        self._namespace = namespace
        self._where = where or describe(client)
        self._errors = RedisErrors(self._where)
        self._caller: Any = Caller(client, retries)
        self._owns_client = owns_client
        self._registry = "{" + namespace + "}:buckets"
        self._names: dict[str, BucketNames] = {}
        self._registered: set[str] = set()

    @classmethod
    def from_url(cls, url: StoreURL, **options: Any) -> RedisIndex:
        """Open ``redis://host:port/db`` or ``rediss://`` (TLS); see ``docs/mirror-index.md``.

        Options: ``namespace`` (default ``mirrorkv:index``); ``timeout`` and
        ``connect_timeout`` (seconds); ``retries``; ``max_connections``;
        ``ssl_ca_certs``, ``ssl_verify``. Raises :class:`InvalidURL` for any
        other option; the password comes from the URL's user info only.
        """
        reject_unknown(url, options, URL_OPTIONS)
        namespace = str(options.get("namespace", DEFAULT_NAMESPACE))
        client, retries = client_from_url(url, options)
        return cls(
            client, namespace=namespace, retries=retries, where=url.redacted(), owns_client=True
        )

    @property
    def namespace(self) -> str:
        """The namespace: every Redis name of the index starts with ``{<namespace>``."""
        return self._namespace

    @property
    def client(self) -> Client:
        """The redis-py client, for what the index does not cover (use with care)."""
        return self._client

    @property
    def buckets_key(self) -> str:
        """The name of the set of every bucket ever written through an index of this namespace."""
        return self._registry

    def redis_names(self, bucket: str) -> BucketNames:
        """The Redis key names holding ``bucket`` (what an operator types in ``redis-cli``)."""
        try:
            return self._names[bucket]
        except (KeyError, TypeError):
            check_bucket(bucket)
        if len(self._names) >= _NAMES_KEPT:  # buckets may come from requests: stay bounded
            self._names.clear()
        names = self._names[bucket] = bucket_names(self._namespace, bucket)
        return names

    def __repr__(self) -> str:
        return f"RedisIndex({self._where!r}, namespace={self._namespace!r})"

    def close(self) -> None:
        """Release the connections (where the index made its client); later calls raise."""
        caller = self._caller
        if isinstance(caller, _Closed):
            return
        self._caller = _Closed(repr(self))
        if self._owns_client:
            caller.close()

    def _writable(self, bucket: str) -> BucketNames:
        """The names of ``bucket``, listed in the bucket set first (once per index)."""
        names = self.redis_names(bucket)
        if bucket not in self._registered:
            with self._errors:
                self._caller.call("SADD", self._registry, bucket, retry=True)
            self._registered.add(bucket)
        return names

    # -- writes ---------------------------------------------------------------

    def record(self, bucket: str, meta: Meta) -> None:
        """See :meth:`MetadataIndex.record`: one script."""
        fields = meta_fields(meta)
        check_key(fields[0])
        names = self._writable(bucket)
        with self._errors:
            RECORD(self._caller, names.scripts, names.object_prefix, *fields, retry=True)

    def record_many(self, bucket: str, metas: Iterable[Meta]) -> None:
        """See :meth:`MetadataIndex.record_many`: one script per :data:`CHUNK` records."""
        check_bucket(bucket)
        iterator = iter(metas)
        names: BucketNames | None = None
        while chunk := list(itertools.islice(iterator, CHUNK)):
            rows: dict[str, tuple[str, ...]] = {}
            for meta in chunk:
                fields = meta_fields(meta)
                rows[check_key(fields[0])] = fields
            names = names or self._writable(bucket)
            args = [value for fields in rows.values() for value in fields]
            with self._errors:
                RECORD(self._caller, names.scripts, names.object_prefix, *args, retry=True)

    def forget(self, bucket: str, key: str) -> None:
        """See :meth:`MetadataIndex.forget`: one script."""
        check_key(key)
        names = self.redis_names(bucket)
        with self._errors:
            FORGET(self._caller, names.scripts, names.object_prefix, key, retry=True)

    def forget_many(self, bucket: str, keys: Iterable[str]) -> None:
        """See :meth:`MetadataIndex.forget_many`: one script per :data:`CHUNK` keys."""
        names = self.redis_names(bucket)
        iterator = iter(keys)
        while chunk := list(itertools.islice(iterator, CHUNK)):
            for key in chunk:
                check_key(key)
            with self._errors:
                FORGET(
                    self._caller,
                    names.scripts,
                    names.object_prefix,
                    *dict.fromkeys(chunk),
                    retry=True,
                )

    def compare_and_set(
        self, bucket: str, key: str, expected: tuple[str, str] | None, meta: Meta | None
    ) -> bool:
        """See :meth:`MetadataIndex.compare_and_set`: one script.

        The script compares the hash's ``ETag`` and ``VersionId`` with
        ``expected``, then stores or deletes as :meth:`record` and
        :meth:`forget` do. Like every write it is sent again after a
        connection error; so that a swap which had applied before its reply
        was lost is still reported as applied, True is also returned where
        the entry is not ``expected`` but already equals ``meta`` in every
        field (nothing changes then). A resent forget (``meta`` None) that
        had applied finds no entry and returns False, as it would after
        another writer's forget: the key is gone either way.
        """
        check_swap(key, meta)
        condition = expected_fields(expected)
        if meta is None:
            names = self.redis_names(bucket)
            record: tuple[str, ...] = ()
        else:
            record = meta_fields(meta)
            names = self._writable(bucket)
        with self._errors:
            done = SWAP(
                self._caller,
                names.scripts,
                names.object_prefix,
                key,
                *condition,
                *record,
                retry=True,
            )
        return bool(done)

    def replace_range(
        self,
        bucket: str,
        prefix: str,
        metas: Iterable[Meta],
        *,
        start_after: str | None = None,
        until: str | None = None,
    ) -> tuple[int, int, int]:
        """See :meth:`MetadataIndex.replace_range`: one script reading the range whole."""
        inside = replace_range_check(bucket, prefix, start_after, until)
        low, high = byte_range(prefix, start_after)
        rows: dict[str, tuple[str, ...]] = {}
        for meta in metas:
            fields = meta_fields(meta)
            rows[inside(fields[0])] = fields
        if until is not None:
            last = until.encode()
            if high == b"+" or last < high[1:]:  # the tighter of until and the prefix's bound
                high = b"[" + last
        names = self._writable(bucket)
        args = [value for fields in rows.values() for value in fields]
        with self._errors:
            added, changed, removed = REPLACE(
                self._caller, names.scripts, names.object_prefix, low, high, *args, retry=True
            )
        return int(added), int(changed), int(removed)

    # -- reads ----------------------------------------------------------------

    def get(self, bucket: str, key: str) -> Meta | None:
        """See :meth:`MetadataIndex.get`: one ``HMGET``."""
        names = self.redis_names(bucket)
        check_key(key)
        with self._errors:
            fields = self._caller.call(
                "HMGET",
                names.object(key),
                "Size",
                "ETag",
                "LastModified",
                "ContentType",
                "Metadata",
                "VersionId",
                retry=True,
            )
        if fields[0] is None:
            return None
        return fields_meta(key, ["" if value is None else value.decode() for value in fields])

    def _pages(self, names: BucketNames, low: bytes, high: bytes) -> Iterator[Meta]:
        """The entries in ``[low, high]`` (``ZRANGEBYLEX`` bounds), one script call per page."""
        page = _FIRST_PAGE
        while True:
            with self._errors:
                reply = PAGE(
                    self._caller, (names.keys,), names.object_prefix, low, high, page, retry=True
                )
            scanned, last, rows = reply[0], reply[1], _loads(reply[2])
            for at in range(0, len(rows), 7):
                yield fields_meta(rows[at], rows[at + 1 : at + 7])
            if scanned < page:
                return
            low = b"(" + last
            page = min(page * 4, _LAST_PAGE)

    def list(self, bucket: str, prefix: str = "", start_after: str | None = None) -> Iterator[Meta]:
        """See :meth:`MetadataIndex.list`."""
        check_listing(bucket, prefix, start_after)
        names = self.redis_names(bucket)
        return self._pages(names, *byte_range(prefix, start_after))

    def keys(self, bucket: str, prefix: str = "", start_after: str | None = None) -> Iterator[str]:
        """See :meth:`MetadataIndex.keys`: ``ZRANGEBYLEX`` pages."""
        check_listing(bucket, prefix, start_after)
        names = self.redis_names(bucket)
        return self._key_pages(names.keys, *byte_range(prefix, start_after))

    def _key_pages(self, zset: str, low: bytes, high: bytes) -> Iterator[str]:
        page = _FIRST_PAGE
        while True:
            with self._errors:
                keys: list[str] = _loads(
                    KEY_PAGE(self._caller, (zset,), low, high, page, retry=True)
                )
            yield from keys
            if len(keys) < page:
                return
            low = b"(" + keys[-1].encode()
            page = min(page * 4, _LAST_PAGE * 4)

    def ls(self, bucket: str, prefix: str = "", delimiter: str = "/") -> Listing:
        """See :meth:`MetadataIndex.ls`: the server seeks past each common prefix."""
        names = self.redis_names(bucket)
        check_prefix(prefix)
        if not isinstance(delimiter, str) or not delimiter:
            raise InvalidValue(f"delimiter must be a non-empty str, not {delimiter!r}")
        listing = Listing()
        low, high = byte_range(prefix)
        start = len(prefix.encode())
        done = False
        while not done:
            with self._errors:
                reply = LS(
                    self._caller,
                    (names.keys,),
                    names.object_prefix,
                    low,
                    high,
                    start,
                    delimiter,
                    _LS_BUDGET,
                    retry=True,
                )
            done, low, rows = reply[0] == 1, reply[1], _loads(reply[2])
            at = 0
            while at < len(rows):
                if rows[at] == "p":
                    listing.prefixes.append(rows[at + 1])
                    at += 2
                else:
                    listing.objects.append(fields_meta(rows[at + 1], rows[at + 2 : at + 8]))
                    at += 8
        return listing

    def du(self, bucket: str, prefix: str = "") -> Usage:
        """See :meth:`MetadataIndex.du`: one ``HMGET`` for ``""`` and ``/`` prefixes.

        Any other prefix, say ``logs/2024-0`` in the directory ``logs/``, is
        one script that walks its key range, reading the usage of each
        subdirectory it meets (``logs/2024-01/``) and seeking past its keys,
        and summing the objects directly in ``logs/``: its cost grows with
        those subdirectories and direct objects, not with the keys inside.
        """
        names = self.redis_names(bucket)
        check_prefix(prefix)
        with self._errors:
            if prefix == "" or prefix.endswith("/"):
                objects, size = self._caller.call(
                    "HMGET", names.usage, "objects:" + prefix, "bytes:" + prefix, retry=True
                )
            else:
                low, high = byte_range(prefix)
                depth = len(prefix[: prefix.rfind("/") + 1].encode())
                objects, direct, inner = PARTIAL_DU(
                    self._caller,
                    (names.keys, names.usage),
                    names.object_prefix,
                    low,
                    high,
                    depth,
                    retry=True,
                )
                size = int(direct) + sum(map(int, inner.split()))
        return Usage(int(objects or 0), int(size or 0))

    def du_children(self, bucket: str, prefix: str = "") -> dict[str, Usage]:
        """See :meth:`MetadataIndex.du_children`: one script, one seek per child."""
        names = self.redis_names(bucket)
        check_prefix(prefix)
        if prefix and not prefix.endswith("/"):
            raise InvalidValue(f"du_children takes '' or a prefix ending in '/', not {prefix!r}")
        encoded = prefix.encode()
        low = b"(" + encoded if encoded else b"-"
        with self._errors:
            reply = CHILDREN(
                self._caller,
                (names.usage, names.prefixes),
                prefix,
                low,
                upper_bound(encoded),
                retry=True,
            )
        if not reply:
            return {}
        objects, size = int(reply[0]), int(reply[1])
        children: dict[str, Usage] = {}
        rows = _loads(reply[2])
        for at in range(0, len(rows), 3):
            usage = Usage(int(rows[at + 1]), int(rows[at + 2]))
            children[rows[at]] = usage
            objects -= usage.objects
            size -= usage.bytes
        result = {"": Usage(objects, size)} if objects else {}
        result.update(children)
        return result

    def _find(self, bucket: str, query: FindQuery, low: str) -> Iterator[Meta]:
        """See :meth:`MetadataIndex.find`: a key range read in pages, filtered here."""
        metas = self._pages(self.redis_names(bucket), *byte_range(low))
        return filter(query.matches, metas) if query.filters else metas

    # -- journal, checkpoints, buckets -----------------------------------------

    def mark_dirty(self, bucket: str, keys: Iterable[str]) -> None:
        """See :meth:`MetadataIndex.mark_dirty`: one ``ZADD``."""
        check_bucket(bucket)
        members = [check_key(key) for key in keys]
        if not members:
            return
        names = self._writable(bucket)
        args: list[Any] = ["ZADD", names.dirty]
        for key in members:
            args += (0, key)
        with self._errors:
            self._caller.call(*args, retry=True)

    def dirty(self, bucket: str) -> builtins.list[str]:
        """See :meth:`MetadataIndex.dirty`."""
        names = self.redis_names(bucket)
        return builtins.list(self._key_pages(names.dirty, b"-", b"+"))

    def clear_dirty(self, bucket: str, keys: Iterable[str]) -> None:
        """See :meth:`MetadataIndex.clear_dirty`: one ``ZREM``."""
        names = self.redis_names(bucket)
        members = [check_key(key) for key in keys]
        if members:
            with self._errors:
                self._caller.call("ZREM", names.dirty, *members, retry=True)

    def set_checkpoint(self, bucket: str, name: str, value: str | None) -> None:
        """See :meth:`MetadataIndex.set_checkpoint`: one ``HSET`` or ``HDEL``."""
        check_bucket(bucket)
        if not isinstance(name, str) or not name:
            raise InvalidValue(f"a checkpoint name is a non-empty str, not {name!r}")
        if value is not None and not isinstance(value, str):
            raise InvalidValue(f"a checkpoint value is a str or None, not {value!r}")
        if value is None:
            names = self.redis_names(bucket)
            with self._errors:
                self._caller.call("HDEL", names.checkpoints, name, retry=True)
        else:
            names = self._writable(bucket)
            with self._errors:
                self._caller.call("HSET", names.checkpoints, name, value, retry=True)

    def checkpoint(self, bucket: str, name: str) -> str | None:
        """See :meth:`MetadataIndex.checkpoint`: one ``HGET``."""
        names = self.redis_names(bucket)
        if not isinstance(name, str):
            raise InvalidValue(f"a checkpoint name is a str, not {name!r}")
        with self._errors:
            value: bytes | None = self._caller.call("HGET", names.checkpoints, name, retry=True)
        return None if value is None else value.decode()

    def buckets(self) -> builtins.list[str]:
        """See :meth:`MetadataIndex.buckets`: the bucket set, less the buckets left empty."""
        found: builtins.list[str] = []
        with self._errors:
            for raw in self._caller.call("SMEMBERS", self._registry, retry=True):
                bucket = raw.decode()
                names = self.redis_names(bucket)
                held = self._caller.call(
                    "EXISTS", names.keys, names.dirty, names.checkpoints, retry=True
                )
                if held:
                    found.append(bucket)
        return sorted(found)
