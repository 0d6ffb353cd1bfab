"""Layers: stores that wrap a store and are a store (see ``docs/layers.md``).

Each layer is one module here and subclasses :class:`Layer`.
"""

from __future__ import annotations

from .base import Layer
from .cached import Cached
from .compressed import Compressed
from .encrypted import Encrypted
from .expiring import Expiring
from .keygen import KeyGen
from .prefixed import Prefixed
from .readonly import ReadOnly
from .writebehind import WriteBehind

__all__ = [
    "Cached",
    "Compressed",
    "Encrypted",
    "Expiring",
    "KeyGen",
    "Layer",
    "Prefixed",
    "ReadOnly",
    "WriteBehind",
]
