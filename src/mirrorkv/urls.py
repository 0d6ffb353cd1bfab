"""Configuration by URL: the scheme registry behind :func:`mirrorkv.open`.

Built-in backends are registered lazily as ``"module:Class"`` strings, with
the extra that provides their driver; third-party packages add schemes
through the ``mirrorkv.stores`` entry-point group (name: the scheme, value:
``"package.module:StoreClass"``). A store class opened by URL provides a
classmethod ``from_url(url: StoreURL, **options) -> Store``.

Paths follow the ``file:`` URL convention: ``sqlite:///srv/app.db`` is the
absolute path ``/srv/app.db``; ``sqlite:app.db`` (no slashes) is relative to
the working directory.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .errors import InvalidURL, NotSupported

if TYPE_CHECKING:
    from .store import Store

__all__ = [
    "DEFAULT_URL",
    "StoreURL",
    "open_store",
    "parse_bool",
    "parse_size",
    "parse_url",
    "register",
    "registered_schemes",
    "reject_unknown",
    "unregister",
]

#: The store :func:`mirrorkv.open` opens without a URL and without ``$MIRRORKV_URL``.
DEFAULT_URL = "sqlite:mirrorkv.db"

#: The environment variable that names the default store.
URL_ENV = "MIRRORKV_URL"

ENTRY_POINT_GROUP = "mirrorkv.stores"


@dataclass(frozen=True)
class _Registration:
    target: str | Callable[..., Store]
    extra: str | None


_BUILTIN: dict[str, _Registration] = {
    "memory": _Registration("mirrorkv.stores.memory:MemoryStore", None),
    "file": _Registration("mirrorkv.stores.file:FileStore", None),
    "sqlite": _Registration("mirrorkv.stores.sqlite:SQLiteStore", None),
    "redis": _Registration("mirrorkv.stores.redis:RedisStore", "redis"),
    "rediss": _Registration("mirrorkv.stores.redis:RedisStore", "redis"),
    "redis+cluster": _Registration("mirrorkv.stores.redis:RedisStore", "redis"),
    "s3": _Registration("mirrorkv.stores.s3:S3Store", "s3"),
    "postgresql": _Registration("mirrorkv.stores.sql:SQLStore", "sql"),
    "postgres": _Registration("mirrorkv.stores.sql:SQLStore", "sql"),
    "mysql": _Registration("mirrorkv.stores.sql:SQLStore", "sql"),
    "mariadb": _Registration("mirrorkv.stores.sql:SQLStore", "sql"),
    "azure": _Registration("mirrorkv.stores.azure:AzureBlobStore", "azure"),
    "gs": _Registration("mirrorkv.stores.gcs:GCSStore", "gcs"),
}

_registry: dict[str, _Registration] = dict(_BUILTIN)
_entry_points_loaded = False


@dataclass(frozen=True)
class StoreURL:
    """A parsed store URL. ``password`` is kept out of ``repr`` and :meth:`redacted`."""

    scheme: str
    host: str
    port: int | None
    username: str | None
    password: str | None = field(repr=False)
    path: str
    query: Mapping[str, str]
    raw_netloc: str = field(repr=False)

    def redacted(self) -> str:
        """The URL with any password replaced by ``***``, safe for logs and errors."""
        netloc = self.raw_netloc
        if self.password is not None:
            userinfo, _, host = netloc.rpartition("@")
            netloc = f"{userinfo.partition(':')[0]}:***@{host}"
        if not netloc and self.path and not self.path.startswith("/"):
            return f"{self.scheme}:{self.path}"  # the opaque form, e.g. sqlite:rel.db
        return f"{self.scheme}://{netloc}{self.path}"

    def local_path(self) -> str:
        """The filesystem path a ``file:``/``sqlite:`` URL names (``~`` expanded)."""
        if self.host not in ("", "localhost"):
            raise InvalidURL(f"{self.scheme}: URLs name a local path; got host {self.host!r}")
        if not self.path:
            raise InvalidURL(f"a {self.scheme}: URL needs a path, e.g. {self.scheme}:///srv/data")
        return os.path.expanduser(self.path)


def parse_url(url: str) -> StoreURL:
    """Split a store URL into its parts; :class:`InvalidURL` if it is malformed."""
    if not isinstance(url, str) or not url:
        raise InvalidURL("a store URL must be a non-empty str")
    if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", url):
        raise InvalidURL(f"not a store URL (no scheme): {url!r}; e.g. sqlite:///srv/app.db")
    try:
        parts = urlsplit(url)
        port = parts.port
        query = dict(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False))
    except ValueError as error:
        raise InvalidURL(f"malformed store URL: {error}") from None
    if parts.fragment:
        raise InvalidURL("store URLs take no #fragment")
    return StoreURL(
        scheme=parts.scheme.lower(),
        host=unquote(parts.hostname or ""),
        port=port,
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
        path=unquote(parts.path),
        query=query,
        raw_netloc=parts.netloc,
    )


def register(scheme: str, target: str | Callable[..., Store], *, extra: str | None = None) -> None:
    """Make ``scheme`` open with ``target``: a class with ``from_url``, or ``"module:Class"``.

    ``extra`` names the ``mirrorkv[...]`` extra that provides the driver, for
    the error shown when it is missing. A later registration replaces an
    earlier one.
    """
    if not re.fullmatch(r"[a-z][a-z0-9+.-]*", scheme):
        raise InvalidURL(f"not a valid URL scheme: {scheme!r}")
    _registry[scheme] = _Registration(target, extra)


def unregister(scheme: str) -> None:
    """Forget ``scheme`` (a no-op where it is unknown); built-in schemes come back on reload."""
    _registry.pop(scheme, None)


def registered_schemes() -> list[str]:
    """Every scheme :func:`mirrorkv.open` knows, built-in and from entry points, sorted."""
    _load_entry_points()
    return sorted(_registry)


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for point in entry_points(group=ENTRY_POINT_GROUP):
        _registry.setdefault(point.name, _Registration(point.value, None))


def _resolve(scheme: str, url: StoreURL) -> Callable[..., Store]:
    registration = _registry.get(scheme)
    if registration is None:
        _load_entry_points()
        registration = _registry.get(scheme)
    if registration is None:
        known = ", ".join(f"{name}://" for name in registered_schemes())
        raise InvalidURL(f"unknown store scheme {scheme!r} in {url.redacted()!r}; known: {known}")
    if not isinstance(registration.target, str):
        return registration.target
    module_name, _, attribute = registration.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        hint = ""
        if registration.extra:
            hint = f"; install it with: pip install 'mirrorkv[{registration.extra}]'"
        raise NotSupported(
            f"the {scheme}:// store needs a package that is missing ({error.name}){hint}"
        ) from error
    target: Callable[..., Store] = getattr(module, attribute)
    return target


def open_store(url: str | None = None, **options: Any) -> Store:
    """Open the store a URL names; see :func:`mirrorkv.open`."""
    if url is None:
        url = os.environ.get(URL_ENV) or DEFAULT_URL
    return open_parsed(parse_url(url), options)


def open_parsed(parsed: StoreURL, options: Mapping[str, Any]) -> Store:
    """Open the store of a parsed URL with ``options`` (which win over its query)."""
    factory = _resolve(parsed.scheme, parsed)
    merged: dict[str, Any] = {**parsed.query, **options}
    from_url = getattr(factory, "from_url", None)
    if from_url is None:
        raise InvalidURL(f"{factory!r} registered for {parsed.scheme}:// has no from_url")
    store: Store = from_url(parsed, **merged)
    return store


def reject_unknown(url: StoreURL, options: Mapping[str, Any], known: tuple[str, ...] = ()) -> None:
    """Raise :class:`InvalidURL` naming any option in ``options`` not in ``known``."""
    unknown = sorted(set(options) - set(known))
    if unknown:
        accepted = ", ".join(known) if known else "none"
        raise InvalidURL(
            f"unknown option(s) {', '.join(unknown)} for {url.scheme}:// (accepted: {accepted})"
        )


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_bool(name: str, value: object) -> bool:
    """An option's boolean value: a bool, or one of 1/0, true/false, yes/no, on/off."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidURL(f"option {name} takes true or false, not {value!r}")


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)


def parse_size(name: str, value: object) -> int:
    """A byte count: an int, or a string such as ``"512"``, ``"64MiB"``, ``"1.5GB"``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise InvalidURL(f"option {name} takes a size such as 64MiB, not {value!r}")
    number, unit = match.groups()
    unit = (unit or "").upper()
    base = 1024 if "I" in unit else 1000
    exponent = "BKMGT".index(unit[0]) if unit else 0
    return int(float(number) * base**exponent)
