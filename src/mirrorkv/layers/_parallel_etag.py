"""The MD5 etag of a large value, computed on another core while the caller works on it.

``hashlib`` releases the interpreter lock while it hashes a large buffer, as
zstandard does while it compresses one, so a layer that must both compress a
value and report its MD5 can run the two side by side: on two cores, the
put of a 1 MiB value costs the larger of the two instead of their sum.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from ..meta import etag_of

__all__ = ["PARALLEL_MIN", "etag_soon"]

#: Values at least this large are hashed on a worker thread (smaller ones inline:
#: handing them over would cost more than hashing them).
PARALLEL_MIN = 256 * 1024

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_pid = 0


def _workers() -> ThreadPoolExecutor:
    """The process's hashing threads (made again in a forked child, which has none)."""
    global _pool, _pool_pid
    with _lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(
                max_workers=os.cpu_count() or 1, thread_name_prefix="mirrorkv-etag"
            )
            _pool_pid = os.getpid()
        return _pool


def etag_soon(data: bytes) -> Callable[[], str]:
    """A function returning the etag of ``data``, hashed meanwhile where ``data`` is large.

    ``data`` must not change until the function has been called.
    """
    if len(data) < PARALLEL_MIN or (os.cpu_count() or 1) < 2:
        return lambda: etag_of(data)
    future: Future[str] = _workers().submit(etag_of, data)
    return future.result
