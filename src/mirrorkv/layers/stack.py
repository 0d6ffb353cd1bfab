"""Layers named in a store URL's query: a whole stack in one configuration string.

``mirrorkv.open("sqlite:///app.db?prefix=tenant-a/&compress=zstd&cache_bytes=64MiB&ttl=3600")``
opens the SQLite store and wraps it, innermost first, in the layers the
options name (see :data:`LAYER_OPTIONS` and ``docs/layers.md``). Options
that name no layer go to the store, which rejects what it does not know.

No secret is ever taken from a URL: the encryption key comes from the
``encryption_key=`` argument of :func:`mirrorkv.open`, or from the
environment variable that ``encrypt_key_env=`` names. A URL carrying a key
is refused.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import InvalidURL, InvalidValue
from ..store import Store
from ..urls import DEFAULT_URL, URL_ENV, open_parsed, parse_bool, parse_size, parse_url

__all__ = ["LAYER_OPTIONS", "open_stack", "split_layer_options", "wrap_layers"]

#: Every option that names a layer or configures one, with what it does.
LAYER_OPTIONS: dict[str, str] = {
    "mirror_index": "Mirror: answer what exists from this metadata index URL",
    "prefix": "Prefixed: every key under this prefix",
    "encrypt_key_env": "Encrypted: the key, base64 or hex, from this environment variable",
    "encryption_key": "Encrypted: the key, as an argument of mirrorkv.open (never in a URL)",
    "encrypt_etag": "Encrypted: md5 (etags are content MD5s, the default) or tag (faster puts)",
    "compress": "Compressed: the codec (zstd)",
    "compress_level": "Compressed: the codec's level (zstd: 1-22, default 3)",
    "ttl": "Expiring: default time to live in seconds",
    "cache_bytes": "Cached: a read-through cache in memory of this size (e.g. 64MiB)",
    "cache_max_age": "Cached: revalidate cached copies older than this many seconds",
    "write_behind": "WriteBehind: writes land in memory, flushed to the store in batches",
    "flush_interval": "WriteBehind: seconds between flushes (default 1)",
    "max_pending": "WriteBehind: flush when this many writes are pending (default 1000)",
    "read_only": "ReadOnly: every write raises ReadOnlyError",
    "keygen": "KeyGen: add(data) makes keys: uuid, ulid, sha256 or blake2b",
    "keygen_template": "KeyGen: key template, e.g. {hash:2}/{hash}",
}

#: Options that hold a secret: refused in a URL.
_SECRETS = ("encryption_key",)


def split_layer_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``options`` split into those for the store and those for the layers."""
    store: dict[str, Any] = {}
    layers: dict[str, Any] = {}
    for name, value in options.items():
        (layers if name in LAYER_OPTIONS else store)[name] = value
    return store, layers


def open_stack(url: str | None = None, **options: Any) -> Store:
    """Open the store ``url`` names and wrap it in the layers its options name.

    ``url`` defaults to ``$MIRRORKV_URL``, else the embedded default. Options
    come from the URL's query and from ``options`` (which win).
    """
    parsed = parse_url(url if url is not None else os.environ.get(URL_ENV) or DEFAULT_URL)
    for name in _SECRETS:
        if name in parsed.query:
            raise InvalidURL(
                f"a URL never carries a secret: pass {name}= to mirrorkv.open, or name an"
                " environment variable holding it with encrypt_key_env="
            )
    store_query, layer_query = split_layer_options(parsed.query)
    store_options, layer_options = split_layer_options(options)
    store = open_parsed(dataclasses.replace(parsed, query=store_query), store_options)
    try:
        return wrap_layers(store, {**layer_query, **layer_options})
    except BaseException:
        store.close()
        raise


def wrap_layers(store: Store, options: Mapping[str, Any]) -> Store:
    """``store`` wrapped in the layers ``options`` name, innermost first.

    The order is fixed so that each layer sees what it should: the mirror
    indexes the objects as the remote holds them; the prefix applies to the
    stored keys; values are compressed before they are encrypted; the cache
    and the write-behind queue work on plain values; expiry comes next, so
    the stack's ``put`` takes ``ttl=``; ``read_only`` and ``keygen`` are outermost.
    """
    unknown = sorted(set(options) - set(LAYER_OPTIONS))
    if unknown:
        raise InvalidURL(f"unknown layer option(s): {', '.join(unknown)}")
    option = _Reader(options)
    for build in _LAYERS:
        try:
            store = build(store, option)
        except InvalidValue as error:
            raise InvalidURL(str(error)) from None
    return store


class _Reader:
    """Typed access to the layer options, with errors naming the option."""

    def __init__(self, options: Mapping[str, Any]) -> None:
        self._options = options

    def __contains__(self, name: str) -> bool:
        return name in self._options

    def text(self, name: str) -> str | None:
        value = self._options.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise InvalidURL(f"option {name} takes a non-empty string, not {value!r}")
        return value

    def number(self, name: str) -> float | None:
        value = self._options.get(name)
        if value is None:
            return None
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InvalidURL(f"option {name} takes a number, not {value!r}") from None
        if not number > 0:
            raise InvalidURL(f"option {name} takes a number > 0, not {value!r}")
        return number

    def integer(self, name: str) -> int | None:
        number = self.number(name)
        if number is None:
            return None
        if number != int(number):
            raise InvalidURL(f"option {name} takes a whole number, not {number!r}")
        return int(number)

    def flag(self, name: str) -> bool:
        value = self._options.get(name)
        return value is not None and parse_bool(name, value)

    def size(self, name: str) -> int | None:
        value = self._options.get(name)
        return None if value is None else parse_size(name, value)

    def raw(self, name: str) -> Any:
        return self._options.get(name)


def _mirror(store: Store, option: _Reader) -> Store:
    index = option.text("mirror_index")
    if index is None:
        return store
    from ..mirror import Mirror

    return Mirror(store, index)


def _prefixed(store: Store, option: _Reader) -> Store:
    prefix = option.text("prefix")
    if prefix is None:
        return store
    from .prefixed import Prefixed

    return Prefixed(store, prefix)


def _encrypted(store: Store, option: _Reader) -> Store:
    key = option.raw("encryption_key")
    variable = option.text("encrypt_key_env")
    etag = option.text("encrypt_etag")
    if key is None and variable is None:
        if etag is not None:
            raise InvalidURL("encrypt_etag configures Encrypted: give encrypt_key_env= too")
        return store
    if key is not None and variable is not None:
        raise InvalidURL("give encryption_key= or encrypt_key_env=, not both")
    if variable is not None:
        text = os.environ.get(variable)
        if not text:
            raise InvalidURL(f"encrypt_key_env names {variable}, which is not set")
        key = _decode_key(variable, text)
    from .encrypted import Encrypted

    if etag is not None and etag not in ("md5", "tag"):
        raise InvalidURL(f"encrypt_etag takes md5 or tag, not {etag!r}")
    return Encrypted(store, key, etag="tag" if etag == "tag" else "md5")


def _decode_key(variable: str, text: str) -> bytes:
    """A key from an environment variable: 64 hex digits or base64 of 32 bytes."""
    text = text.strip()
    try:
        if len(text) == 64:
            return bytes.fromhex(text)
        return base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        raise InvalidURL(
            f"{variable} holds no key: give 32 bytes as 64 hex digits or base64"
        ) from None


def _compressed(store: Store, option: _Reader) -> Store:
    codec = option.text("compress")
    level = option.integer("compress_level")
    if codec is None:
        if level is not None:
            raise InvalidURL("compress_level needs compress=")
        return store
    from .compressed import Compressed

    return Compressed(store, codec=codec, level=level)


def _expiring(store: Store, option: _Reader) -> Store:
    ttl = option.number("ttl")
    if ttl is None:
        return store
    from .expiring import Expiring

    return Expiring(store, default_ttl=ttl)


def _cached(store: Store, option: _Reader) -> Store:
    size = option.size("cache_bytes")
    max_age = option.number("cache_max_age")
    if size is None:
        if max_age is not None:
            raise InvalidURL("cache_max_age needs cache_bytes=")
        return store
    from ..stores.memory import MemoryStore
    from .cached import Cached

    return Cached(store, MemoryStore(max_bytes=size), max_age=max_age)


def _write_behind(store: Store, option: _Reader) -> Store:
    interval = option.number("flush_interval")
    pending = option.integer("max_pending")
    if not option.flag("write_behind"):
        if interval is not None or pending is not None:
            raise InvalidURL("flush_interval and max_pending need write_behind=true")
        return store
    from ..stores.memory import MemoryStore
    from .writebehind import WriteBehind

    settings: dict[str, Any] = {}
    if interval is not None:
        settings["interval"] = interval
    if pending is not None:
        settings["max_pending"] = pending
    return WriteBehind(front=MemoryStore(), back=store, **settings)


def _read_only(store: Store, option: _Reader) -> Store:
    if not option.flag("read_only"):
        return store
    from .readonly import ReadOnly

    return ReadOnly(store)


def _keygen(store: Store, option: _Reader) -> Store:
    scheme = option.text("keygen")
    template = option.text("keygen_template")
    if scheme is None:
        if template is not None:
            raise InvalidURL("keygen_template needs keygen=")
        return store
    from .keygen import KeyGen

    if template is None:
        return KeyGen(store, scheme=scheme)
    return KeyGen(store, scheme=scheme, template=template)


_LAYERS: tuple[Callable[[Store, _Reader], Store], ...] = (
    _mirror,
    _prefixed,
    _encrypted,
    _compressed,
    _cached,
    _write_behind,
    _expiring,
    _read_only,
    _keygen,
)
