"""Whole-store operations: copy everything under a prefix, measure what a prefix holds.

These are the library functions behind ``mirrorkv cp`` and ``mirrorkv du``;
they work on any :class:`~mirrorkv.store.Store` (backend or layer) and use
only its public API.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from .errors import InvalidValue, KeyNotFound
from .keys import check_prefix
from .meta import Meta
from .store import Store

__all__ = ["CopyReport", "SupportsUsage", "Usage", "copy_all", "usage"]


@dataclass(frozen=True, slots=True)
class CopyReport:
    """What :func:`copy_all` did.

    ``objects`` and ``bytes`` count the values written to the target;
    ``skipped`` counts keys that were listed in the source but deleted from
    it before their value could be read.
    """

    objects: int = 0
    bytes: int = 0
    skipped: int = 0


def copy_all(
    source: Store,
    target: Store,
    prefix: str = "",
    *,
    progress: Callable[[Meta], None] | None = None,
) -> CopyReport:
    """Copy every value whose key starts with ``prefix`` from ``source`` to ``target``.

    Keys are kept as they are. Each value streams through ``source.open`` and
    ``target.put_file``, so it is never held whole in memory by this function
    (the stores' own streaming decides the rest), and is written with the
    content type and user metadata the source listing reported for it. Keys
    are copied one by one in ascending order; each write is atomic, the copy
    as a whole is not: if it fails part way (the error propagates), the
    values already written stay. A key deleted from the source between the
    listing and the read is skipped and counted in :attr:`CopyReport.skipped`.
    ``progress``, if given, is called with the target's :class:`Meta` after
    each value is written.
    """
    check_prefix(prefix)
    objects = size = skipped = 0
    for meta in source.list(prefix):
        try:
            stream = source.open(meta.key)
        except KeyNotFound:
            skipped += 1
            continue
        with stream:
            written = target.put_file(
                meta.key, stream, content_type=meta.content_type, metadata=meta.metadata
            )
        objects += 1
        size += written.size
        if progress is not None:
            progress(written)
    return CopyReport(objects, size, skipped)


_NO_CHILDREN: Mapping[str, Usage] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Usage:
    """How many values, and how many bytes, a prefix holds.

    ``children`` breaks the total down by child prefix (each ending with
    ``/``, in ascending key order), as deep as asked; values that sit
    directly at a level (no ``/`` after the parent prefix) count in the
    parent's total but in no child, so the children may sum to less than
    their parent.
    """

    objects: int = 0
    bytes: int = 0
    children: Mapping[str, Usage] = field(default_factory=lambda: _NO_CHILDREN, hash=False)

    def __add__(self, other: Usage) -> Usage:
        """The objects and bytes of both together (without a breakdown by child)."""
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(self.objects + other.objects, self.bytes + other.bytes)

    def __sub__(self, other: Usage) -> Usage:
        """What is left of these objects and bytes without ``other``'s (no breakdown by child)."""
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(self.objects - other.objects, self.bytes - other.bytes)

    def as_dict(self) -> dict[str, Any]:
        """The record as plain dicts and ints (for JSON), children included."""
        return {
            "objects": self.objects,
            "bytes": self.bytes,
            "children": {name: child.as_dict() for name, child in self.children.items()},
        }


@runtime_checkable
class SupportsUsage(Protocol):
    """A store that answers usage questions itself (a mirror does, from its index)."""

    def du(self, prefix: str = "", *, depth: int = 0) -> Usage:
        """The usage under ``prefix``, broken down ``depth`` levels; see :func:`usage`."""
        ...


class _Tally:
    """A mutable :class:`Usage` while it is being counted."""

    __slots__ = ("bytes", "children", "objects")

    def __init__(self) -> None:
        self.objects = 0
        self.bytes = 0
        self.children: dict[str, _Tally] = {}

    def add(self, size: int) -> None:
        """Count one value of ``size`` bytes."""
        self.objects += 1
        self.bytes += size

    def freeze(self) -> Usage:
        """The immutable :class:`Usage` this tally has counted."""
        if not self.children:
            return Usage(self.objects, self.bytes)
        children = {name: child.freeze() for name, child in self.children.items()}
        return Usage(self.objects, self.bytes, MappingProxyType(children))


def usage(store: Store, prefix: str = "", *, depth: int = 0) -> Usage:
    """Count the values and bytes under ``prefix``, broken down ``depth`` levels of ``/``.

    ``depth=0`` gives the total only; ``depth=1`` adds one :class:`Usage` per
    child prefix one level below ``prefix`` (``photos/`` -> ``photos/2025/``,
    ``photos/2026/``), ``depth=2`` breaks each of those down too, and so on.
    Prefixes are matched as strings, as S3 does: ``photos`` also covers
    ``photos.txt``. A store that implements :class:`SupportsUsage` (a ``du``
    method) answers itself; otherwise every key under ``prefix`` is listed
    once. ``depth`` below 0 raises :class:`InvalidValue`.
    """
    check_prefix(prefix)
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 0:
        raise InvalidValue(f"depth must be a whole number of at least 0, not {depth!r}")
    if isinstance(store, SupportsUsage):
        return store.du(prefix, depth=depth)
    root = _Tally()
    for meta in store.list(prefix):
        size = meta.size
        root.add(size)
        node, key, start = root, meta.key, len(prefix)
        for _ in range(depth):
            cut = key.find("/", start)
            if cut < 0:
                break
            child = key[: cut + 1]
            below = node.children.get(child)
            if below is None:
                below = node.children[child] = _Tally()
            below.add(size)
            node = below
            start = cut + 1
    return root.freeze()
