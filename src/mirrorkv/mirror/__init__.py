"""The mirror: what is in a remote bucket, answered from a local metadata index.

:class:`Mirror` is the layer (``docs/mirror.md``); :func:`wrap` the boto3
drop-in (``docs/mirror-boto3.md``). Underneath, :class:`MetadataIndex` is the
API every index backend implements (``docs/mirror-index.md``):
:class:`SQLiteIndex` (the default), ``RedisIndex`` and ``PostgresIndex``
(imported on first use, as they need their drivers), each opened from a URL
by :func:`open_index`.
"""

from __future__ import annotations

from typing import Any

from .boto3_client import MirroredS3Client, wrap
from .index import MetadataIndex, Usage, open_index
from .ingest import EventReport, apply_events
from .layer import Mirror
from .sqlite_index import SQLiteIndex
from .stats import MirrorStats, RequestPrices
from .sync import SyncReport

__all__ = [
    "EventReport",
    "MetadataIndex",
    "Mirror",
    "MirroredS3Client",
    "MirrorStats",
    "RequestPrices",
    "SQLiteIndex",
    "SyncReport",
    "Usage",
    "apply_events",
    "open_index",
    "wrap",
]

# Backends whose drivers are optional: imported when first named.
_LAZY = {"RedisIndex": "redis_index", "PostgresIndex": "postgres_index"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
