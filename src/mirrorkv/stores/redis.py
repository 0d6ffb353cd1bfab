"""`RedisStore`: values in Redis (or Valkey), with metadata and an ordered index beside them.

URLs: ``redis://[user:password@]host[:port][/db]``, ``rediss://`` (TLS) and
``redis+cluster://[user:password@]host[:port]`` (any node of a cluster). The
layout and the scripts that keep it consistent are described in
:mod:`._redis_scripts`, the connection handling in :mod:`._redis_client`;
the user documentation is ``docs/stores/redis.md``.
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import itertools
import json
import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from itertools import repeat
from types import MappingProxyType
from typing import Any

import redis
from redis.cluster import RedisCluster

from ..errors import InvalidValue, KeyNotFound, PreconditionFailed
from ..keys import check_key, check_keys, prefix_upper_bound
from ..meta import DEFAULT_CONTENT_TYPE, NO_METADATA, Meta, etag_of
from ..store import (
    DEFAULT_PUT_OPTIONS,
    Capability,
    PutOptions,
    Store,
    check_counter_arguments,
    make_options,
    to_bytes,
)
from ..urls import StoreURL, reject_unknown
from ._redis_client import (
    URL_OPTIONS,
    Caller,
    RedisErrors,
    check_client,
    client_from_url,
    describe,
)
from ._redis_scripts import COPY, DELETE, DELETE_IF, HEAD, INCR, LIST, PUT

__all__ = ["DEFAULT_NAMESPACE", "RedisStore"]

#: The namespace a store uses where none is given.
DEFAULT_NAMESPACE = "mirrorkv"
_NAMESPACE = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
#: A batch is sent as commands of at most this many keys or bytes, in one transaction.
_BATCH_KEYS = 5000
_BATCH_BYTES = 16 << 20
#: Listing pages grow from the first to the last size, so an early ``break`` stays cheap.
_FIRST_PAGE = 100
_LAST_PAGE = 2000
#: Redis takes expiry times in milliseconds as signed 64-bit integers.
_MAX_TTL = 2**62 / 1000
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_new_meta = tuple.__new__
_make_from_fields = functools.partial(tuple.__new__, Meta)
_md5 = hashlib.md5
_now = time.time
_loads = json.loads
_dumps = json.dumps

Client = redis.Redis | RedisCluster


class _Versions:
    """Versions: a random per-process prefix and a counter, renewed in a forked child."""

    def __init__(self) -> None:
        self.renew()

    def renew(self) -> None:
        self.prefix = os.urandom(8).hex() + "."
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self.prefix}{next(self._counter):x}"

    def batch(self, count: int) -> list[str]:
        """``count`` versions for one batch: one counter value, then a suffix per item."""
        base = f"{self.prefix}{next(self._counter):x}-"
        return [f"{base}{i:x}" for i in range(count)]


_versions = _Versions()
os.register_at_fork(after_in_child=_versions.renew)


class RedisStore(Store):
    """A store in a Redis (or Valkey) database, shared by any number of processes.

    Layout (see ``docs/stores/redis.md``): the value of ``key`` is the
    string ``<namespace>:<key>`` (so ``get`` is one ``GET``), its metadata
    the JSON string ``<namespace>#meta:<key>``, and every key is a member of
    the sorted set ``<namespace>#index``, ranged with ``ZRANGEBYLEX`` to
    list in UTF-8 byte order. On a cluster the namespace is a hash tag
    (``{<namespace>}:<key>``), so a store lives in one slot and its scripts
    and transactions see all of its keys.

    Guarantees: ``put``, ``delete``, ``copy`` and ``incr`` are each one Lua
    script, ``put_many`` and ``delete_many`` one ``MULTI``/``EXEC``
    transaction; so value, metadata and index change together, and other
    clients see the old state or the new one. Conditional writes and
    ``incr`` are decided on the server. A connection error raises
    :class:`StoreUnavailable` (retryable); reads are sent once more on a new
    connection first, writes are not (a write whose reply was lost may or
    may not have happened) unless the ``retries`` option asks for it, which
    makes writes at-least-once (an ``incr`` could then count twice).

    ``put(..., ttl=seconds)`` sets a native expiry on the value and its
    metadata together; the index entry of an expired key is removed by the
    next listing that walks past it, so listings never show it.

    The etag is the hex MD5 of the value, computed by the client on ``put``;
    after a native ``incr`` (Redis ``INCRBY``) it is computed from the value
    when asked for. ``open`` reads the whole value in one ``GET``.
    """

    capabilities = (
        Capability.CONDITIONAL_WRITES
        | Capability.NATIVE_COUNTERS
        | Capability.TRANSACTIONS
        | Capability.MULTI_PROCESS
        | Capability.SERVER_SIDE_COPY
        | Capability.NATIVE_TTL
    )

    #: Redis refuses strings above 512 MB (``proto-max-bulk-len`` by default).
    max_value_size = 512 * 1024 * 1024

    def __init__(
        self,
        client: Client,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        retries: int = 0,
        where: str | None = None,
        owns_client: bool = False,
    ) -> None:
        """A store over ``client`` (``redis.Redis`` or ``redis.cluster.RedisCluster``).

        The client must not decode responses. ``retries``: how many times a
        write is sent again after a connection error (reads: at least once).
        ``where`` names the server in errors and ``repr`` (default: its host
        and port; never a password). ``owns_client``: :meth:`close` closes
        the client too.
        """
        check_client("RedisStore", client, retries)
        if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
            raise InvalidValue(
                "namespace is 1 to 128 characters of A-Z a-z 0-9 _ . - "
                f"(no ':', '#' or braces), not {namespace!r}"
            )
        self._client = client
        self._namespace = namespace
        self._cluster = isinstance(client, RedisCluster)
        base = f"{{{namespace}}}" if self._cluster else namespace
        self._value_prefix = base + ":"
        self._meta_prefix = base + "#meta:"
        self._index = base + "#index"
        self._where = where or describe(client)
        self._errors = RedisErrors(self._where)
        self._caller = Caller(client, retries)
        self._call = self._caller.call
        self._owns_client = owns_client
        self._closed = False

    @classmethod
    def from_url(cls, url: StoreURL, **options: Any) -> RedisStore:
        """Open ``redis://``, ``rediss://`` or ``redis+cluster://``; see ``docs/stores/redis.md``.

        Options: ``namespace``; ``timeout`` and ``connect_timeout`` (seconds);
        ``retries`` (re-sends of a write after a connection error, default 0);
        ``max_connections``; ``ssl`` (TLS on ``redis+cluster://``),
        ``ssl_ca_certs``, ``ssl_verify``. Raises :class:`InvalidURL` for any
        other option; the password comes from the URL's user info only.
        """
        reject_unknown(url, options, URL_OPTIONS)
        namespace = str(options.get("namespace", DEFAULT_NAMESPACE))
        client, retries = client_from_url(url, options)
        where = url.redacted()
        return cls(client, namespace=namespace, retries=retries, where=where, owns_client=True)

    @property
    def namespace(self) -> str:
        """The namespace: the prefix of every Redis key this store uses."""
        return self._namespace

    @property
    def client(self) -> Client:
        """The redis-py client, for what the store does not cover (use with care)."""
        return self._client

    def redis_keys(self, key: str) -> tuple[str, str]:
        """The Redis keys of the value and the metadata of ``key``, as ``redis-cli`` shows them."""
        check_key(key)
        return self._value_prefix + key, self._meta_prefix + key

    @property
    def index_key(self) -> str:
        """The Redis key of the sorted set that lists this store's keys."""
        return self._index

    def __repr__(self) -> str:
        return f"RedisStore({self._where!r}, namespace={self._namespace!r})"

    def close(self) -> None:
        """Release the connections (where the store made its client). Closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            self._caller.close()

    # -- primitives ---------------------------------------------------------

    def _get(self, key: str) -> bytes:
        with self._errors:
            value: bytes | None = self._call("GET", self._value_prefix + key, retry=True)
        if value is None:
            raise KeyNotFound(key)
        return value

    def _put(self, key: str, data: bytes, options: PutOptions, ttl: float | None = None) -> Meta:
        now = _now()
        version = _versions.next()
        size = len(data)
        etag = _md5(data, usedforsecurity=False).hexdigest()
        content_type, metadata = options.content_type, options.metadata
        meta_json = f'{{"size":{size},"etag":"{etag}","modified":{now!r},"version":"{version}"'
        if content_type != DEFAULT_CONTENT_TYPE:
            meta_json += ',"content_type":' + _dumps(content_type)
        if metadata:
            meta_json += ',"metadata":' + _dumps(dict(metadata))
        meta_json += "}"
        keys = (self._value_prefix + key, self._meta_prefix + key, self._index)
        # ARGV: member, data, meta[, ttl_ms[, condition, expected]]
        args: list[Any] = [key, data, meta_json]
        ttl_ms = "" if ttl is None else str(max(1, round(ttl * 1000)))
        if options.if_none_match is not None:
            args += [ttl_ms, "*", ""]
        elif options.if_match is not None:
            args += [ttl_ms, "m", options.if_match]
        elif ttl is not None:
            args.append(ttl_ms)
        while True:
            with self._errors:
                result = PUT(self._caller, keys, *args)
            if result == 1:
                break
            if result == 0 or not isinstance(result, list):
                raise PreconditionFailed(_precondition_message(key, options))
            # A counter written by INCRBY has no stored etag: compare it here,
            # then write only if the value is still the one compared.
            current: bytes = result[0]
            if etag_of(current) != options.if_match:
                raise PreconditionFailed(_precondition_message(key, options))
            args[4:] = ["v", current]
        meta: Meta = _new_meta(Meta, (key, size, etag, now, content_type, metadata, version))
        return meta

    def _delete(self, key: str) -> None:
        keys = (self._value_prefix + key, self._meta_prefix + key, self._index)
        with self._errors:
            DELETE(self._caller, keys, key)

    def _delete_if(self, key: str, etag: str) -> None:
        """Remove ``key`` in one script if its etag is ``etag`` (see ``DELETE_IF``)."""
        keys = (self._value_prefix + key, self._meta_prefix + key, self._index)
        args: list[Any] = [key, "m", etag]
        while True:
            with self._errors:
                result = DELETE_IF(self._caller, keys, *args)
            if result == 1:
                return
            if result == 0 or not isinstance(result, list) or not result or result[0] is None:
                raise PreconditionFailed(f"{key!r} does not have etag {etag!r}")
            # A counter written by INCRBY has no stored etag: compare it here,
            # then delete only if the value is still the one compared.
            current: bytes = result[0]
            if etag_of(current) != etag:
                raise PreconditionFailed(f"{key!r} does not have etag {etag!r}")
            args[1:] = ["v", current]

    def _fetch(self, key: str, with_value: bool) -> list[Any]:
        keys = (self._value_prefix + key, self._meta_prefix + key)
        with self._errors:
            reply: list[Any] | None = HEAD(
                self._caller, keys, "1" if with_value else "0", retry=True
            )
        if reply is None:
            raise KeyNotFound(key)
        return reply

    def _head(self, key: str) -> Meta:
        reply = self._fetch(key, False)
        return _make_meta(key, reply[0], reply[1] if len(reply) > 1 else None)

    def _get_with_meta(self, key: str) -> tuple[bytes, Meta]:
        meta_json, value = self._fetch(key, True)
        return value, _make_meta(key, meta_json, value)

    def _pages(self, prefix: str, start_after: str | None, with_meta: bool) -> Iterator[list[Any]]:
        """Script replies in key order, page by page (each page one atomic script)."""
        if start_after is not None and start_after >= prefix:
            lower = b"(" + start_after.encode()
        elif prefix:
            lower = b"[" + prefix.encode()
        else:
            lower = b"-"
        bound = prefix_upper_bound(prefix) if prefix else None
        upper = b"+" if bound is None else b"(" + bound.encode()
        count = _FIRST_PAGE
        flag = "1" if with_meta else "0"
        head = (self._value_prefix, self._meta_prefix, flag)
        while True:
            with self._errors:
                reply: list[Any] = LIST(
                    self._caller, (self._index,), lower, upper, count, *head, retry=True
                )
            yield reply
            if reply[0] < count:
                return
            lower = b"(" + reply[1]
            count = min(count * 4, _LAST_PAGE)

    def _list(self, prefix: str, start_after: str | None) -> Iterator[Meta]:
        for reply in self._pages(prefix, start_after, True):
            for i in range(2, len(reply), 3):
                yield _make_meta(reply[i].decode(), reply[i + 1], reply[i + 2])

    def _keys(self, prefix: str, start_after: str | None) -> Iterator[str]:
        for reply in self._pages(prefix, start_after, False):
            for member in itertools.islice(reply, 2, None):
                yield member.decode()

    # -- the public API, made faster or native --------------------------------

    def put(
        self,
        key: str,
        data: bytes | bytearray | memoryview,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        if_match: str | None = None,
        if_none_match: str | None = None,
        ttl: float | None = None,
    ) -> Meta:
        """Store ``data`` under ``key``; see :meth:`Store.put`.

        ``ttl``: seconds (> 0, millisecond precision) after which Redis removes
        the value and its metadata; listings stop showing the key then too. A
        later write without ``ttl`` makes the key permanent again; ``incr``
        keeps the expiry it finds; ``copy`` makes a permanent copy.
        """
        if (
            content_type is None
            and metadata is None
            and if_match is None
            and if_none_match is None
            and ttl is None
            and data.__class__ is bytes
        ):
            return self._put(check_key(key), self._checked_size(data), DEFAULT_PUT_OPTIONS)
        check_key(key)
        if ttl is not None and (
            isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl < _MAX_TTL
        ):
            raise InvalidValue(f"ttl is a (finite) number of seconds > 0, not {ttl!r}")
        options = make_options(content_type, metadata, if_match, if_none_match)
        return self._put(key, self._checked_size(to_bytes(data)), options, ttl)

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        """The values of the keys that exist: ``MGET`` in one round trip (one transaction)."""
        given = keys if isinstance(keys, list) else list(keys)
        check_keys(given)
        wanted = list(dict.fromkeys(given))
        if not wanted:
            return {}
        names = _encoded(self._value_prefix, wanted)
        with self._errors:
            if len(names) <= _BATCH_KEYS:
                values = self._caller.call_bytes([b"MGET", *names], retry=True)
            else:
                commands = [
                    [b"MGET", *names[start : start + _BATCH_KEYS]]
                    for start in range(0, len(names), _BATCH_KEYS)
                ]
                values = list(itertools.chain.from_iterable(self._caller.transaction(commands)))
        return {key: value for key, value in zip(wanted, values, strict=True) if value is not None}

    def _put_many(
        self, keys: builtins.list[str], values: builtins.list[bytes]
    ) -> builtins.list[Meta]:
        # Where a key repeats, its last value wins: keep the last of each.
        if len(set(keys)) != len(keys):
            last = dict(zip(keys, values, strict=True))
            keys, values = list(last), list(last.values())
        now = _now()
        versions = _versions.batch(len(keys))
        sizes = list(map(len, values))
        etags = [_md5(data, usedforsecurity=False).hexdigest() for data in values]
        modified = f',"modified":{now!r},"version":"'
        metas = _encoded(
            "",
            [
                f'{{"size":{size},"etag":"{etag}"{modified}{version}"}}'
                for size, etag, version in zip(sizes, etags, versions, strict=True)
            ],
        )
        value_names = _encoded(self._value_prefix, keys)
        meta_names = _encoded(self._meta_prefix, keys)
        members = _encoded("", keys)
        index = self._index.encode()
        commands: builtins.list[builtins.list[bytes]] = []
        for start, stop in _chunks(sizes):
            commands.append([b"MSET", *_pairs(value_names[start:stop], values[start:stop])])
            commands.append([b"MSET", *_pairs(meta_names[start:stop], metas[start:stop])])
            zeros = [b"0"] * (stop - start)
            commands.append([b"ZADD", index, *_pairs(zeros, members[start:stop])])
        with self._errors:
            self._caller.transaction(commands)
        fields = zip(
            keys, sizes, etags, repeat(now), repeat(DEFAULT_CONTENT_TYPE), repeat(NO_METADATA),
            versions,
        )  # fmt: skip
        return list(map(_make_from_fields, fields))

    def _delete_many(self, keys: builtins.list[str]) -> None:
        if not keys:
            return
        value_names = _encoded(self._value_prefix, keys)
        meta_names = _encoded(self._meta_prefix, keys)
        members = _encoded("", keys)
        index = self._index.encode()
        commands: builtins.list[builtins.list[bytes]] = []
        for start in range(0, len(keys), _BATCH_KEYS):
            stop = start + _BATCH_KEYS
            commands.append([b"DEL", *value_names[start:stop], *meta_names[start:stop]])
            commands.append([b"ZREM", index, *members[start:stop]])
        with self._errors:
            self._caller.transaction(commands)

    def copy(self, source: str, target: str) -> Meta:
        """Copy a value with its content type and metadata inside Redis (one script)."""
        check_key(source)
        check_key(target)
        keys = (
            self._value_prefix + source,
            self._meta_prefix + source,
            self._value_prefix + target,
            self._meta_prefix + target,
            self._index,
        )
        with self._errors:
            reply: list[Any] | None = COPY(
                self._caller, keys, target, repr(_now()), _versions.next()
            )
        if reply is None:
            raise KeyNotFound(source)
        return _make_meta(target, reply[0], reply[1] if len(reply) > 1 else None)

    def incr(self, key: str, delta: int = 1, *, initial: int = 0) -> int:
        """Add ``delta`` atomically with Redis ``INCRBY``; see :meth:`Store.incr`.

        A counter beyond Redis' 64-bit range, or written with leading zeros,
        is updated by a compare-and-swap loop instead (same result).
        """
        check_key(key)
        check_counter_arguments(delta, initial)
        if _INT64_MIN <= delta <= _INT64_MAX:
            keys = (self._value_prefix + key, self._meta_prefix + key, self._index)
            created = b"%d" % (initial + delta)
            with self._errors:
                value: bytes | None = INCR(
                    self._caller, keys, key, delta, created, repr(_now()), _versions.next()
                )
            if value is not None:
                return int(value)
        return super().incr(key, delta, initial=initial)

    def clear(self) -> None:
        """Remove every key of this namespace (and nothing of any other namespace)."""
        while keys := list(itertools.islice(self._keys("", None), _BATCH_KEYS)):
            self._delete_many(keys)
        with self._errors:
            self._call("DEL", self._index)


def _make_meta(key: str, meta_json: bytes, value: bytes | None) -> Meta:
    """A Meta from the stored JSON (and the value, where the etag is not stored)."""
    fields: dict[str, Any] = _loads(meta_json)
    etag: str | bytes | None = fields.get("etag", value)
    metadata = fields.get("metadata")
    meta: Meta = _new_meta(
        Meta,
        (
            key,
            fields["size"],
            b"" if etag is None else etag,
            fields["modified"],
            fields.get("content_type", DEFAULT_CONTENT_TYPE),
            MappingProxyType(metadata) if metadata else NO_METADATA,
            fields["version"],
        ),
    )
    return meta


def _encoded(prefix: str, keys: builtins.list[str]) -> builtins.list[bytes]:
    """``prefix + key`` as UTF-8 for every key, in C-level passes (keys hold no NUL)."""
    joined = prefix + ("\0" + prefix).join(keys)
    return joined.encode().split(b"\0")


def _pairs(first: builtins.list[Any], second: builtins.list[Any]) -> builtins.list[Any]:
    """``[first[0], second[0], first[1], second[1], ...]``."""
    flat: builtins.list[Any] = [None] * (2 * len(first))
    flat[0::2] = first
    flat[1::2] = second
    return flat


def _chunks(sizes: builtins.list[int]) -> Iterator[tuple[int, int]]:
    """(start, stop) slices of at most ``_BATCH_KEYS`` keys and about ``_BATCH_BYTES`` bytes."""
    if sum(sizes) < _BATCH_BYTES:
        for start in range(0, len(sizes), _BATCH_KEYS):
            yield start, min(start + _BATCH_KEYS, len(sizes))
        return
    start, total = 0, 0
    for i, size in enumerate(sizes):
        total += size
        if i + 1 - start >= _BATCH_KEYS or total >= _BATCH_BYTES:
            yield start, i + 1
            start, total = i + 1, 0
    if start < len(sizes):
        yield start, len(sizes)


def _precondition_message(key: str, options: PutOptions) -> str:
    if options.if_none_match is not None:
        return f"{key!r} exists (if_none_match='*')"
    return f"{key!r} does not have etag {options.if_match!r}"
