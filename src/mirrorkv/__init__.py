"""mirrorkv: one minimal API over many key-value and object stores.

Everything is a :class:`Store`: open one by URL with :func:`open`, then
``get``/``put``/``delete``/``list`` with metadata. See the README for a tour.
"""

from __future__ import annotations

from typing import Any

from .errors import (
    AccessDenied,
    CorruptValue,
    InvalidKey,
    InvalidURL,
    InvalidValue,
    KeyNotFound,
    MirrorKVError,
    NotSupported,
    PreconditionFailed,
    ReadOnlyError,
    StoreUnavailable,
)
from .keys import MAX_KEY_BYTES, check_key
from .meta import Listing, Meta
from .store import Capability, Store
from .stores.memory import MemoryStore
from .urls import register, registered_schemes

__all__ = [
    "AccessDenied",
    "Capability",
    "CorruptValue",
    "FileStore",
    "InvalidKey",
    "InvalidURL",
    "InvalidValue",
    "KeyNotFound",
    "Listing",
    "MAX_KEY_BYTES",
    "MemoryStore",
    "Meta",
    "MirrorKVError",
    "NotSupported",
    "PreconditionFailed",
    "ReadOnlyError",
    "SQLiteStore",
    "Store",
    "StoreUnavailable",
    "__version__",
    "check_key",
    "open",
    "register",
    "registered_schemes",
]

__version__ = "0.1.0"


def open(url: str | None = None, **options: Any) -> Store:
    """Open the store that ``url`` names, e.g. ``sqlite:///srv/app.db`` or ``memory://``.

    Without a URL: ``$MIRRORKV_URL``, else the embedded default, the SQLite
    file ``./mirrorkv.db``. Options come from the URL's query string and from
    keyword arguments (which win); an unknown option, an unknown scheme or a
    malformed URL raises :class:`InvalidURL` naming what is accepted.

    Options may also name layers, which wrap the store (innermost first:
    ``mirror_index``, ``prefix``, encryption, ``compress``, ``cache_bytes``,
    ``write_behind``, ``ttl``, ``read_only``, ``keygen``), e.g.
    ``sqlite:///app.db?prefix=tenant-a/&compress=zstd&cache_bytes=64MiB``;
    see ``docs/layers.md``. An encryption key is never read from a URL.
    """
    from .layers.stack import open_stack

    return open_stack(url, **options)


def __getattr__(name: str) -> Any:
    # The file and SQLite stores import lazily so that `import mirrorkv` stays light.
    if name == "FileStore":
        from .stores.file import FileStore

        return FileStore
    if name == "SQLiteStore":
        from .stores.sqlite import SQLiteStore

        return SQLiteStore
    raise AttributeError(f"module 'mirrorkv' has no attribute {name!r}")
