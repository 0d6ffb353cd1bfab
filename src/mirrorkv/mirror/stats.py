"""What a mirror asked its remote, what it answered itself, and what that saved.

Requests are counted as S3 would bill them: a write is one PUT (or COPY, or
DELETE; a batch delete one request per 1,000 keys), a read one GET, a
metadata read one HEAD, a listing one LIST per 1,000 keys it returns (at
least one). A question the index answered counts the requests the remote
would have needed for it: one HEAD for ``head``/``in``, one LIST per 1,000
keys for a listing, a ``find`` or a ``du`` (of the keys it covered).
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["MirrorStats", "RequestCounter", "RequestPrices", "list_requests", "page_sizes"]

#: Keys per page of a remote listing (S3's ``MaxKeys`` default and maximum).
PAGE = 1000


def list_requests(keys: int, first: int = PAGE, rest: int = PAGE) -> int:
    """The LIST requests a listing of ``keys`` keys takes (at least one).

    ``first`` keys come on the first page and ``rest`` on each later one
    (see :func:`page_sizes`).
    """
    if keys <= first:
        return 1
    return 1 + -(-(keys - first) // rest)


def page_sizes(store: object) -> tuple[int, int]:
    """The keys on the first and on each later page of ``store.list()``'s requests.

    A store that pages differently from S3's default (1,000 and 1,000) says
    so with a ``list_page_sizes`` attribute, as ``S3Store`` (a short first
    page) and ``GCSStore`` (its ``page_size``) do.
    """
    sizes = getattr(store, "list_page_sizes", None)
    if (
        isinstance(sizes, tuple)
        and len(sizes) == 2
        and all(isinstance(size, int) and size > 0 for size in sizes)
    ):
        return sizes
    return PAGE, PAGE


@dataclass(frozen=True, slots=True)
class RequestPrices:
    """US dollars per 1,000 requests of each kind (S3 Standard, us-east-1, in 2026).

    ``LIST``, ``PUT``, ``COPY`` and ``POST`` cost the first figure; ``GET``,
    ``HEAD`` and the rest the second. ``DELETE`` is free.
    """

    list_put_per_1000: float = 0.005
    get_head_per_1000: float = 0.0004

    def cost(self, requests: Counter[str]) -> float:
        """What ``requests`` (counts by kind) cost, in US dollars."""
        dollars = 0.0
        for kind, count in requests.items():
            if kind in ("LIST", "PUT", "COPY", "POST"):
                dollars += count * self.list_put_per_1000 / 1000
            elif kind != "DELETE":
                dollars += count * self.get_head_per_1000 / 1000
        return dollars


@dataclass(frozen=True, slots=True)
class MirrorStats:
    """A snapshot of a mirror's request counts (see the module docstring).

    ``remote`` counts requests made to the remote by kind; ``local`` counts
    questions the index answered, by method; ``saved`` the remote requests
    those answers spared, by kind; ``saved_dollars`` what they would have
    cost at ``prices``.
    """

    remote: dict[str, int] = field(default_factory=dict)
    local: dict[str, int] = field(default_factory=dict)
    saved: dict[str, int] = field(default_factory=dict)
    saved_dollars: float = 0.0
    prices: RequestPrices = field(default_factory=RequestPrices)

    @property
    def remote_requests(self) -> int:
        """All requests made to the remote."""
        return sum(self.remote.values())

    @property
    def local_answers(self) -> int:
        """All questions answered from the index."""
        return sum(self.local.values())


class RequestCounter:
    """Thread-safe counts behind :class:`MirrorStats`."""

    __slots__ = ("_local", "_lock", "_remote", "_saved", "prices")

    def __init__(self, prices: RequestPrices | None = None) -> None:
        self.prices = prices or RequestPrices()
        self._lock = threading.Lock()
        self._remote: Counter[str] = Counter()
        self._local: Counter[str] = Counter()
        self._saved: Counter[str] = Counter()

    def remote(self, kind: str, count: int = 1) -> None:
        """Count ``count`` requests of ``kind`` (``"GET"``, ``"LIST"``...) made to the remote."""
        with self._lock:
            self._remote[kind] += count

    def local(self, method: str, kind: str, saved: int = 1) -> None:
        """Count one answer of ``method`` from the index, sparing ``saved`` requests of ``kind``."""
        with self._lock:
            self._local[method] += 1
            self._saved[kind] += saved

    def snapshot(self) -> MirrorStats:
        """The counts so far."""
        with self._lock:
            saved = Counter(self._saved)
            return MirrorStats(
                dict(self._remote),
                dict(self._local),
                dict(saved),
                self.prices.cost(saved),
                self.prices,
            )
