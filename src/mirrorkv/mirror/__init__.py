"""The mirror: what is in a remote bucket, answered from a local metadata index.

This package holds the index layer: :class:`MetadataIndex` (the API every
index backend implements), :class:`Usage`, :func:`open_index` (an index from a
URL such as ``sqlite:///var/lib/app/index.db``) and :class:`SQLiteIndex`, the
default backend. See ``docs/mirror-index.md``.
"""

from __future__ import annotations

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
    "MirrorStats",
    "RequestPrices",
    "SQLiteIndex",
    "SyncReport",
    "Usage",
    "apply_events",
    "open_index",
]
