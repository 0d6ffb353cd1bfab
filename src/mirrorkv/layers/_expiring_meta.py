"""How `Expiring` keeps an expiry time in a value's metadata, and hides it again."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from types import MappingProxyType

from ..errors import InvalidValue
from ..meta import Meta
from ..store import Capability, Store

__all__ = [
    "EXPIRES",
    "check_ttl",
    "deadline_in",
    "deadline_of",
    "expired",
    "refuse_reserved",
    "stamp",
    "takes_ttl",
    "visible",
]

#: The metadata name holding a value's expiry time (POSIX seconds, 3 decimals).
EXPIRES = "mkv-expires"

_now = time.time


def check_ttl(ttl: object) -> float:
    """``ttl`` as float seconds; :class:`InvalidValue` unless it is a finite number > 0."""
    if (
        isinstance(ttl, bool)
        or not isinstance(ttl, int | float)
        or not math.isfinite(ttl)
        or ttl <= 0
    ):
        raise InvalidValue(f"ttl is a finite number of seconds > 0, not {ttl!r}")
    return float(ttl)


def refuse_reserved(metadata: Mapping[str, str] | None) -> None:
    """:class:`InvalidValue` where user metadata uses the reserved name (in any case)."""
    if isinstance(metadata, Mapping) and any(
        isinstance(name, str) and name.lower() == EXPIRES for name in metadata
    ):
        raise InvalidValue(f"the metadata name {EXPIRES!r} is reserved by Expiring")


def stamp(metadata: Mapping[str, str], deadline: float | None) -> Mapping[str, str]:
    """``metadata`` with the expiry time added (unchanged where there is none)."""
    if deadline is None:
        return metadata
    return MappingProxyType({**metadata, EXPIRES: f"{deadline:.3f}"})


def deadline_of(meta: Meta) -> float | None:
    """When the value ``meta`` describes expires (POSIX seconds); ``None``: never."""
    return deadline_in(meta.metadata)


def deadline_in(metadata: Mapping[str, str]) -> float | None:
    """The expiry time recorded in ``metadata``; ``None``: none.

    A malformed expiry (written by something other than this layer) counts as none.
    """
    raw = metadata.get(EXPIRES)
    if raw is None:
        return None
    try:
        deadline = float(raw)
    except ValueError:
        return None
    return deadline if math.isfinite(deadline) else None


def expired(meta: Meta) -> bool:
    """Whether the value ``meta`` describes has expired now."""
    deadline = deadline_of(meta)
    return deadline is not None and deadline <= _now()


def visible(meta: Meta) -> Meta:
    """``meta`` as callers see it: without the expiry in its metadata."""
    metadata = meta.metadata
    if EXPIRES not in metadata:
        return meta
    shown = MappingProxyType({name: value for name, value in metadata.items() if name != EXPIRES})
    key, size, etag, modified, content_type, _, version = meta
    return Meta(key, size, etag, modified, content_type, shown, version)


def takes_ttl(store: Store) -> bool:
    """Whether ``store.put`` takes ``ttl=`` seconds (:attr:`Capability.NATIVE_TTL`, as Redis)."""
    return Capability.NATIVE_TTL in store.capabilities
